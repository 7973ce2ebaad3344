"""`blipnb run-all --seeds`: one run per training seed into sibling directories, compared as mean ± sd beside each CI."""
from __future__ import annotations

import statistics

import pytest

from blipnb import cli, runs, suite
from blipnb.errors import ParameterError
from blipnb.evaluation.seeds import (SEEDS_JSON, SEEDS_TABLE, comparison_dir, compare_seeds, parse_seeds,
                                     seed_rows, seed_run_dirs)

CIDER_BY_SEED = {0: 3.1, 1: 3.5, 7: 3.3}


def _write_metrics(run_dir, cider, bleu4):
    result = {"metrics": {"CIDEr": cider, "Bleu_4": bleu4, "SPICE": None},
              "ci": {"CIDEr": {"low": cider - 0.2, "high": cider + 0.2}, "Bleu_4": {"low": bleu4 - 0.02,
                                                                                     "high": bleu4 + 0.02}}}
    runs.write_json(run_dir / runs.METRICS, {"results": {"fine-tuned": result}})


def test_seeds_parse_and_sibling_dirs(tmp_path):
    assert parse_seeds("0, 1,2") == [0, 1, 2]
    for bad in ("0", "0,0", "a,b", ""):
        with pytest.raises(ParameterError, match="--seeds"):
            parse_seeds(bad)
    dirs = seed_run_dirs(tmp_path / "runs" / "sample", [0, 3])
    assert dirs == {0: tmp_path / "runs" / "sample-seed0", 3: tmp_path / "runs" / "sample-seed3"}
    assert comparison_dir(tmp_path / "runs" / "sample") == tmp_path / "runs" / "sample-seeds"


def test_seeds_comparison_is_mean_and_sd_across_runs(tmp_path):
    dirs = {}
    for seed, cider in CIDER_BY_SEED.items():
        dirs[seed] = tmp_path / f"r{seed}"
        dirs[seed].mkdir()
        _write_metrics(dirs[seed], cider, cider / 10)
    comp = compare_seeds(dirs)
    values = list(CIDER_BY_SEED.values())
    assert comp["metrics"]["CIDEr"]["mean"] == pytest.approx(statistics.fmean(values))
    assert comp["metrics"]["CIDEr"]["sd"] == pytest.approx(statistics.stdev(values))
    assert comp["metrics"]["CIDEr"]["seeds"][1] == {"value": 3.5, "low": pytest.approx(3.3), "high": pytest.approx(3.7)}
    assert "SPICE" not in comp["metrics"]  # unscored for every seed: no spread is invented
    row = next(r for r in seed_rows(comp) if r["metric"] == "CIDEr")
    assert row["seed 7"] == "3.3000 [3.1000, 3.5000]" and row["mean ± sd"].startswith("3.3000 ± 0.2000")


def test_seeds_missing_run_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="seed 4.*did not finish"):
        compare_seeds({4: tmp_path})


def test_run_all_seeds_runs_each_seed_then_compares(tmp_path, monkeypatch):
    calls = []

    def fake_run_all(params, out, notebook_dir, only=None, prepare_only=False):
        calls.append((params["seed"], out))
        out.mkdir(parents=True, exist_ok=True)
        _write_metrics(out, CIDER_BY_SEED[params["seed"]], 0.5)
        return 0

    monkeypatch.setattr(suite, "run_all", fake_run_all)
    out = tmp_path / "sample"
    assert cli.main(["run-all", "-p", "epochs", "1", "--out", str(out), "--seeds", "0,1,7"]) == 0
    assert calls == [(s, tmp_path / f"sample-seed{s}") for s in CIDER_BY_SEED]
    folder = tmp_path / "sample-seeds"
    assert (folder / SEEDS_TABLE).read_text().count("seed 7") == 1
    assert runs.read_json(folder / SEEDS_JSON)["seeds"] == [0, 1, 7]
    assert (folder / "seeds.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="--seeds, not -p seed"):
        cli.main(["run-all", "-p", "seed", "3", "--out", str(out), "--seeds", "0,1"])


def test_run_all_seeds_checks_every_seed_dir_before_training(tmp_path, monkeypatch):
    from blipnb.config import build_config

    ran = []
    monkeypatch.setattr(suite, "run_all", lambda params, out, *a, **k: ran.append(out) or 0)
    taken = tmp_path / "sample-seed1"  # seed 1's directory already holds a run of another config
    taken.mkdir()
    runs.write_json(taken / runs.CONFIG, build_config({"run_dir": str(taken), "epochs": 7, "seed": 1}).to_dict())
    with pytest.raises(SystemExit, match="seed 1: .*another config"):
        cli.main(["run-all", "-p", "epochs", "1", "--out", str(tmp_path / "sample"), "--seeds", "0,1"])
    assert ran == []  # seed 0 did not train only for seed 1 to be refused afterwards
