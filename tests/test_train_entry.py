"""The training entry point: `python -m blipnb.train` / `blipnb train` with -f/-p, and SageMaker's SM_* variables."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY

from blipnb import runs

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "notebooks" / "params" / "smoke.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.mark.slow
def test_train_entry_trains_the_smoke_preset_and_exports(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "blipnb.train", "-f", str(SMOKE), "-p", "run_dir", str(run_dir),
                           "-p", "epochs", "1", "-p", "report_to", "none"],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.json", "model.safetensors", "processor_config.json"):
        assert (run_dir / runs.MODEL_DIR / name).exists(), name
    printed = re.search(r"(?m)^\{$", proc.stdout)  # the results, printed last (after the Trainer's log lines)
    results = json.loads(proc.stdout[printed.start():])
    assert results == runs.read_json(run_dir / runs.TRAIN_RESULTS) and results["global_step"] == 20  # 320 pairs / 16
    assert runs.read_json(run_dir / runs.PROVENANCE)["num_processes"] == 1
    assert runs.read_json(run_dir / runs.CONFIG)["train"]["epochs"] == 1


def test_train_entry_mistyped_parameter_fails_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "blipnb.train", "-f", str(SMOKE), "-p", "epoch", "2"],
                          capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("blipnb train: unknown parameter(s)")
    assert "did you mean 'epochs'" in proc.stderr
    assert not (tmp_path / "runs").exists()  # failed before any work


def test_train_entry_is_also_the_blipnb_train_command():
    from blipnb.cli import main

    with pytest.raises(SystemExit, match="^blipnb train: epochs must be > 0"):
        main(["train", "-f", str(SMOKE), "-p", "epochs", "0"])
    with pytest.raises(SystemExit):  # argparse: an option train does not have
        main(["train", "--out", "x"])


def _args(*argv):
    from blipnb.train import build_parser

    return build_parser().parse_known_args(list(argv))[0]


def test_train_entry_reads_sagemaker_hyperparameters_and_channel():
    from blipnb.train import resolve

    env = {"SM_HPS": json.dumps({"epochs": 2, "learning_rate": "0.0002", "source": "folder"}),
           "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train", "SM_MODEL_DIR": "/opt/ml/model"}
    cfg = resolve(_args("-f", str(SMOKE)), env)
    assert (cfg.train.epochs, cfg.train.learning_rate) == (2, 2e-4)  # string values parse like -p values
    assert cfg.data.source == "folder" and cfg.data.data_dir == "/opt/ml/input/data/train"
    cfg = resolve(_args("-f", str(SMOKE), "-p", "epochs", "3", "-p", "data_dir", "/elsewhere"), env)
    assert (cfg.train.epochs, cfg.data.data_dir) == (3, "/elsewhere")  # -p wins over SageMaker's variables
    channel_only = resolve(_args("-f", str(SMOKE)), {"SM_CHANNEL_DATA": "/data"})
    assert channel_only.data.data_dir == "/data"
    assert resolve(_args("-f", str(SMOKE)), {}).data.data_dir is None


def test_train_entry_rejects_a_mistyped_sagemaker_hyperparameter(monkeypatch):
    from blipnb.train import main

    monkeypatch.setenv("SM_HPS", json.dumps({"epoch": 2}))
    with pytest.raises(SystemExit, match="'epoch' .*did you mean 'epochs'"):
        main(["-f", str(SMOKE), "--epoch", "2"])


@pytest.mark.slow
def test_train_entry_runs_as_a_sagemaker_job(tmp_path, monkeypatch):
    """Faked SageMaker variables: hyperparameters from SM_HPS (and its `--name value` arguments), the sample
    generated into the train channel, the export copied to SM_MODEL_DIR."""
    from blipnb.train import main

    hps = {k: v for k, v in TINY.items() if k not in ("do_spice", "n_bootstrap", "num_beams", "max_new_tokens")}
    hps.update(run_dir=str(tmp_path / "run"), max_steps=2, eval_strategy="no")
    channel, model_dir = tmp_path / "input" / "data" / "train", tmp_path / "model"
    monkeypatch.setenv("SM_HPS", json.dumps(hps))
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(channel))
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    assert main(["--max_steps", "2", "--eval_strategy", "no"]) == 0
    assert (model_dir / "model.safetensors").exists() and (model_dir / "processor_config.json").exists()
    assert (channel / "metadata.jsonl").exists()  # the sample source wrote into the channel it was given
    cfg = runs.read_json(tmp_path / "run" / runs.CONFIG)
    assert cfg["data"]["data_dir"] == str(channel) and cfg["train"]["max_steps"] == 2
