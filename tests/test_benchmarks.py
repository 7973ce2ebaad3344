"""The benchmark scripts run (tiny BLIP, CPU, one step) and write the JSON the GPU run will be read from."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("train_throughput", "generate_throughput", "data_throughput")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run the three scripts at once (each is mostly import time) and load what they wrote."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    procs = {}
    for name in SCRIPTS:
        cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--tiny", "--steps", "1",
               "--out", str(out / f"{name}.json")]
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT)
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} failed:\n{log[-3000:]}"
    return {name: json.loads((out / f"{name}.json").read_text()) for name in SCRIPTS}


def check_header(data, benchmark):
    assert data["benchmark"] == benchmark and data["tiny"] is True and data["device"] == "cpu"
    for key in ("name", "torch", "transformers", "date_utc"):
        assert data[key], key
    assert data["configs"], "no measurements"


def positive(row, *keys):
    for key in keys:
        assert isinstance(row[key], (int, float)) and row[key] > 0, (row["name"], key, row[key])


def test_train_throughput_json(results):
    data = results["train_throughput"]
    check_header(data, "train_throughput")
    assert data["peak"]["flops_per_s"] > 0
    rows = {r["name"]: r for r in data["configs"]}
    assert set(rows) >= {"seed_fp32_ckpt_b8", "hf_fp32_b32", "fast_sdpa_fp32_b32", "shared_sdpa_fp32_8x4",
                         "frozen_cached_fp32_b32"}
    for row in rows.values():
        positive(row, "pairs_per_s", "step_s", "flops_per_pair", "mfu", "peak_mem_gb", "ratio_to_seed")
        assert row["pairs_per_s"] == pytest.approx(row["pairs_per_step"] / row["step_s"])
    assert rows["seed_fp32_ckpt_b8"]["ratio_to_seed"] == 1.0
    shared = rows["shared_sdpa_fp32_8x4"]
    assert shared["pairs_per_step"] == 32 and shared["images_per_step"] == 8
    # Frozen vision skips the vision tower's forward and backward: fewer FLOPs per pair.
    assert rows["frozen_cached_fp32_b32"]["flops_per_pair"] < rows["fast_sdpa_fp32_b32"]["flops_per_pair"]
    compiled = {"fast_sdpa_fp32_b32_compile", "shared_sdpa_fp32_8x4_compile"}
    assert {s["name"] for s in data["skipped"]} == compiled  # compile is opt-in on CPU
    check = data["precision_check"]
    assert len(check["bf16_losses"]) == check["steps"] and check["max_rel_diff"] < 0.05


def test_generate_throughput_json(results):
    data = results["generate_throughput"]
    check_header(data, "generate_throughput")
    rows = data["configs"]
    hf = {(r["batch"], r["num_beams"]) for r in rows if r["name"].startswith("hf_")}
    assert hf == {(1, 3), (1, 5), (16, 3), (16, 5)}
    assert any(r["name"].startswith("blipnb_sdpa") and r["batch"] == 32 for r in rows)
    for row in rows:
        positive(row, "images_per_s", "seconds", "images", "ratio_to_hf_b1")
        assert 1 <= row["new_tokens"] <= data["max_new_tokens"] == 20


def test_data_throughput_json(results):
    data = results["data_throughput"]
    check_header(data, "data_throughput")
    rows = {r["name"]: r for r in data["configs"]}
    assert set(rows) >= {"decode_preprocess_per_core", "cache_build_once_per_core", "cached_read_per_core",
                         "cached_read_normalise_cpu_per_core"}
    for row in rows.values():
        positive(row, "images_per_s", "seconds", "cores")
    assert rows["cache_build_once_per_core"]["cache_mb"] > 0
