"""Hyperparameter sweeps: the search space, trials as run directories, a study that goes on after a kill, the best
trial as a preset, `blipnb sweep` end to end (03 on the best trial), 02 with hp_trials, and torchrun with 2 gloo
processes. Tiny models on the sample; each trial trains for seconds."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from helpers import TINY

from blipnb import runs
from blipnb.config import build_config
from blipnb.config.search import load_space, parse_space
from blipnb.errors import ParameterError

optuna = pytest.importorskip("optuna")

SPACE = {"learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "finetune_method": ["full", "lora"],
         "lora_r": [4, 8]}
REPO = Path(__file__).resolve().parents[1]


def _files(tmp_path, space=SPACE, **params):
    """A preset of TINY parameters and a space file in tmp_path; returns their paths."""
    preset, space_file = tmp_path / "tiny.yaml", tmp_path / "space.yaml"
    preset.write_text(yaml.safe_dump({**TINY, **params}))
    space_file.write_text(yaml.safe_dump(space))
    return preset, space_file


def _blipnb(*args, timeout=600, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "BLIPNB_HEADLESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "blipnb.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _study(out):
    return optuna.load_study(study_name="blipnb", storage=f"sqlite:///{Path(out) / runs.HP_STUDY}")


@pytest.mark.parametrize("space, says", [
    ({"learning_rate": {"low": 1e-3, "high": 1e-4}}, "low < high"),
    ({"learning_rate": {"low": 0.0, "high": 1e-3, "log": True}}, "log scale needs low > 0"),
    ({"batch_size": [8, 16]}, "'batch_size' cannot be searched"),
    ({"learning_rate": {"low": 1e-4}}, "{low: ..., high: ...}"),
    ({"learning_rate": 1e-4}, "nothing to search"),
    ({"finetune_method": [], "learning_rate": [1e-4, 1e-3]}, "lists no choices"),
    ({"learning_rate": [1e-4, 1e-3], "pruner": {"patience": 2}}, "pruner takes n_startup_trials"),
])
def test_sweep_space_errors_name_the_file_and_parameter(space, says):
    with pytest.raises(ParameterError, match="space.yaml") as e:
        parse_space(space, "space.yaml")
    assert says in str(e.value)


def test_sweep_space_files_and_the_built_in_one(tmp_path):
    with pytest.raises(ParameterError, match="no search space file"):
        load_space(tmp_path / "missing.yaml")
    (tmp_path / "s.yaml").write_text("learning_rate: {low: 1e-4, high: 1e-3, log: true}\nepochs: {low: 1, high: 3}\n"
                                     "weight_decay: 0.01\n")
    space = load_space(tmp_path / "s.yaml")  # YAML 1.1 reads 1e-4 as a string: still a number here
    assert space.names == ("learning_rate", "epochs") and space.fixed == {"weight_decay": 0.01}
    assert [d.is_int for d in space.dimensions] == [False, True]
    assert set(load_space(None).names) >= {"learning_rate", "finetune_method", "lora_r"}


def test_sweep_draws_lora_rank_only_in_lora_trials(tmp_path):
    from blipnb.training.search import suggest, trial_config

    space = parse_space(SPACE, "space")
    base = build_config({**TINY, "run_dir": str(tmp_path)})
    full = suggest(optuna.trial.FixedTrial({"learning_rate": 1e-3, "finetune_method": "full"}), space, base)
    lora = suggest(optuna.trial.FixedTrial({"learning_rate": 1e-3, "finetune_method": "lora", "lora_r": 4}),
                   space, base)
    assert full == {"learning_rate": 1e-3, "finetune_method": "full"}
    assert lora == {"learning_rate": 1e-3, "finetune_method": "lora", "lora_r": 4}
    cfg = trial_config(base, space, lora, tmp_path / "trial-000")
    assert (cfg.train.finetune_method, cfg.train.lora_r, cfg.train.hp_trials) == ("lora", 4, 0)
    # A preset made for LoRA still gives full fine-tuning trials: its LoRA settings are left out of them.
    lora_base = build_config({**TINY, "run_dir": str(tmp_path), "finetune_method": "lora", "lora_r": 32})
    assert trial_config(lora_base, space, full, tmp_path / "t").train.finetune_method == "full"


def test_sweep_refuses_to_go_on_with_other_settings(tmp_path):
    from blipnb.training.study import open_study

    base = build_config({**TINY, "run_dir": str(tmp_path)})
    open_study(tmp_path, base, parse_space(SPACE, "a"))
    open_study(tmp_path, base, parse_space(SPACE, "a"))  # the same settings: goes on
    with pytest.raises(ParameterError, match="search space"):
        open_study(tmp_path, base, parse_space({**SPACE, "lora_r": [4, 16]}, "b"))
    with pytest.raises(ParameterError, match=r"parameters \(batch_size\)"):
        open_study(tmp_path, build_config({**TINY, "run_dir": str(tmp_path), "batch_size": 8}),
                   parse_space(SPACE, "a"))


KILLED = textwrap.dedent('''
    """run_sweep of 4 trials, killed (SIGKILL) as trial number `kill_at` starts; kill_at -1: never."""
    import json, os, signal, sys
    from transformers import TrainerCallback
    from blipnb.config import build_config
    from blipnb.config.search import load_space
    from blipnb.training.search import run_sweep

    params, space, out, kill_at = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

    class Kill(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.trial_name.startswith(f"trial-{kill_at:03d}"):
                os.kill(os.getpid(), signal.SIGKILL)

    print("STARTED", run_sweep(build_config(params), 4, load_space(space), out, callbacks=[Kill()]))
''')


def test_sweep_killed_after_two_of_four_trials_goes_on_with_the_rest(tmp_path):
    preset, space = _files(tmp_path)
    out = tmp_path / "sweep"
    worker = tmp_path / "worker.py"
    worker.write_text(KILLED)
    params = json.dumps({**TINY, "run_dir": str(out)})

    def sweep(kill_at):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        return subprocess.run([sys.executable, str(worker), params, str(space), str(out), str(kill_at)],
                              capture_output=True, text=True, timeout=600, env=env)

    killed = sweep(kill_at=2)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, inside trial 2
    before = {t.number: (t.state.name, t.datetime_start) for t in _study(out).trials}
    assert [before[n][0] for n in (0, 1)] != [] and before[2][0] == "RUNNING"
    assert {before[n][0] for n in (0, 1)} <= {"COMPLETE", "PRUNED"}
    again = sweep(kill_at=-1)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "STARTED 2" in again.stdout and "trial 2 was interrupted" in again.stdout
    after = {t.number: (t.state.name, t.datetime_start) for t in _study(out).trials}
    assert sorted(after) == [0, 1, 2, 3, 4]
    assert after[0] == before[0] and after[1] == before[1]  # not run again
    assert after[2][0] == "FAIL"  # the interrupted one: not counted
    assert {after[n][0] for n in (3, 4)} <= {"COMPLETE", "PRUNED"}
    for n in (3, 4):
        assert runs.read_json(out / f"trial-{n:03d}" / runs.TRAIN_RESULTS)["trial_state"] in ("finished", "pruned")
    # A third call has nothing left to do.
    assert "STARTED 0" in sweep(kill_at=-1).stdout


def test_sweep_command_writes_trials_best_preset_and_evaluates_the_best_in_mlflow(tmp_path):
    """blipnb sweep end to end: trials as run directories, the objective the best validation CIDEr each reached
    (reported to the pruner at every evaluation), the table, figure and best preset, and 03 on the best trial,
    whose scores reach that trial's MLflow child run."""
    preset, space = _files(tmp_path, epochs=2)
    out = tmp_path / "sweep"
    stdout = _blipnb("sweep", "-f", preset, "--trials", 2, "--space", space, "--out", out, "-p", "report_to", "mlflow")
    summary = runs.read_json(out / runs.HP_TRIALS)
    study = _study(out)
    finished = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert finished and len(study.trials) == 2
    for t in study.trials:
        trial = out / f"trial-{t.number:03d}"
        history = runs.read_json(trial / runs.LOG_HISTORY)
        cider = {h["step"]: h["eval_cider"] for h in history if "eval_cider" in h}
        assert t.intermediate_values == pytest.approx(cider)  # each evaluation reached the pruner
        assert runs.read_json(trial / runs.CONFIG)["train"]["learning_rate"] == t.params["learning_rate"]
    for t in finished:
        results = runs.read_json(out / f"trial-{t.number:03d}" / runs.TRAIN_RESULTS)
        assert t.value == results["best_metric"] == max(t.intermediate_values.values())
        assert runs.is_model_dir(out / f"trial-{t.number:03d}" / runs.MODEL_DIR)
        lora = t.params["finetune_method"] == "lora"  # the trial's model was built with the trial's method
        assert (out / f"trial-{t.number:03d}" / runs.ADAPTER_DIR).is_dir() == lora
        assert (results["trainable_share"] < 0.5) == lora
    best = max(finished, key=lambda t: t.value)
    assert summary["best"]["trial"] == best.number
    table = (out / runs.HP_TRIALS_TABLE).read_text()
    assert f"**{best.number}** (best)" in table and "validation CIDEr" in table and table in stdout
    assert (out / runs.HP_FIGURE).stat().st_size > 10_000
    from blipnb.presets import read_params

    params = read_params([str(out / runs.HP_BEST)])
    assert params["learning_rate"] == best.params["learning_rate"]
    assert build_config(params).train.finetune_method == best.params["finetune_method"]
    metrics = runs.read_json(out / f"trial-{best.number:03d}" / runs.METRICS)  # 03 ran on the best trial only
    assert metrics["split"] == "test" and metrics["results"]["fine-tuned"]["metrics"]["CIDEr"] is not None
    assert [p for p in out.glob(f"trial-*/{runs.METRICS}")] == [out / f"trial-{best.number:03d}" / runs.METRICS]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # beside the sweep's folder
    child = runs.read_json(out / f"trial-{best.number:03d}" / runs.MLFLOW_RUN)["run_id"]
    logged = client.get_run(child).data.metrics
    cider = metrics["results"]["fine-tuned"]
    assert logged["test/CIDEr"] == pytest.approx(cider["metrics"]["CIDEr"])
    assert logged["test/CIDEr_ci_low"] == pytest.approx(cider["ci"]["CIDEr"]["low"])


def test_sweep_trials_are_mlflow_child_runs_of_the_sweep(tmp_path):
    from mlflow import MlflowClient

    from blipnb.training.search import run_sweep

    _, space = _files(tmp_path)
    out = tmp_path / "sweep"
    cfg = build_config({**TINY, "run_dir": str(out), "report_to": "mlflow"})
    assert run_sweep(cfg, 2, load_space(space), out) == 2
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.get_run(runs.read_json(out / runs.MLFLOW_RUN)["run_id"])
    study = _study(out)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "sweep"
    assert parent.data.tags["blipnb.best_trial"] == f"trial-{study.best_trial.number:03d}"
    assert parent.data.metrics["best_validation_cider"] == pytest.approx(study.best_trial.value)
    for t in study.trials:
        child = client.get_run(runs.read_json(out / f"trial-{t.number:03d}" / runs.MLFLOW_RUN)["run_id"])
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.run_name == f"trial-{t.number:03d}"
        assert float(child.data.params["learning_rate"]) == pytest.approx(t.params["learning_rate"])
        curve = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "eval_cider")}
        assert curve == pytest.approx(t.intermediate_values)
        assert child.info.status == ("FINISHED" if t.state.name == "COMPLETE" else "KILLED")


def test_sweep_under_torchrun_with_two_gloo_processes(tmp_path):
    """-p num_processes 2: rank 0 draws each trial, the Trainer hands its values to rank 1, only rank 0 writes;
    pruning is off (a pruned rank 0 would leave rank 1 training)."""
    preset, space = _files(tmp_path, epochs=2)
    out = tmp_path / "sweep"
    stdout = _blipnb("sweep", "-f", preset, "--trials", 2, "--space", space, "--out", out, "-p", "num_processes", 2,
                     "--no-evaluate")
    assert "$ torchrun" in stdout
    study = _study(out)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        trial = out / f"trial-{t.number:03d}"
        assert runs.read_json(trial / runs.PROVENANCE)["num_processes"] == 2
        assert runs.read_json(trial / runs.CONFIG)["train"]["learning_rate"] == t.params["learning_rate"]
        assert runs.is_model_dir(trial / runs.MODEL_DIR)
        results = runs.read_json(trial / runs.TRAIN_RESULTS)
        assert t.value == results["best_metric"]
        assert (results["trainable_share"] < 0.5) == (t.params["finetune_method"] == "lora")  # rank 1 built the same


def test_sweep_in_02_with_hp_trials_keeps_the_best_trial_as_the_run(tmp_path):
    """Notebook 02's cells with hp_trials 2: the sweep in run_dir/sweep, its table and figure, the best trial's
    model, config and results as the run."""
    from inprocess import run_notebook

    _, space = _files(tmp_path)
    run_dir = tmp_path / "run"
    done = run_notebook("02_finetune", {**TINY, "run_dir": str(run_dir), "hp_trials": 2, "hp_space": str(space)})
    results = done["results"]
    best = _study(run_dir / runs.HP_SWEEP_DIR).best_trial
    assert results["best_metric"] == best.value and results["trial_params"] == best.params
    saved = runs.read_json(run_dir / runs.CONFIG)
    assert saved["run_dir"] == str(run_dir) and saved["train"]["learning_rate"] == best.params["learning_rate"]
    assert runs.is_model_dir(run_dir / runs.MODEL_DIR) and (run_dir / runs.PROVENANCE).is_file()
    trial_model = run_dir / runs.HP_SWEEP_DIR / f"trial-{best.number:03d}" / runs.MODEL_DIR / "model.safetensors"
    assert (run_dir / runs.MODEL_DIR / "model.safetensors").read_bytes() == trial_model.read_bytes()
    assert (run_dir / runs.FIGURES_DIR / runs.HP_FIGURE).is_file()
    assert (run_dir / runs.HP_SWEEP_DIR / runs.HP_BEST).is_file()
