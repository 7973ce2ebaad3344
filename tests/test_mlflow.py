"""report_to=mlflow: 02 and 03 in one MLflow run of a local SQLite store, read back through MlflowClient; the store
override, resuming and retraining, the runs that are not tracked, trackio's message and a sweep's child runs."""
import importlib.util
import json
import os

import pytest

from helpers import tiny_config
from inprocess import run_notebook, SMOKE

from blipnb import runs
from blipnb.errors import ParameterError
from blipnb.training.tracking import (PARENT_TAG, REPLACED_BY_TAG, RESUMED_AT_TAG, RESUMED_WITH_TAG, TrialRuns,
                                      client_for, start_parent, tracking_uri)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs blipnb[mlflow]")


def _only_run(uri):
    client = client_for(uri)
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(found) == 1, [r.info.run_name for r in found]
    return client, found[0]


@pytest.fixture(scope="module")
def tracked_smoke(tmp_path_factory):
    """02 and 03 on the smoke preset with report_to=mlflow, run in this process: (run dir, 03's namespace, whether
    mlflow's global state (tracking URI, its environment variable, the active run) is as it was)."""
    import mlflow

    run_dir = tmp_path_factory.mktemp("tracked") / "runs" / "smoke"
    params = {**SMOKE, "run_dir": str(run_dir), "report_to": "mlflow", "clip_model": ""}  # CLIP off: null, a reason
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), mlflow.active_run())
    run_notebook("02_finetune", params)
    evaluated = run_notebook("03_evaluate", params)
    after = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"), mlflow.active_run())
    return runs.RunDir(run_dir), evaluated, before == after


def test_mlflow_smoke_run_is_one_run_with_params_curves_scores_and_artifacts(tracked_smoke):
    run_dir, evaluated, global_state_kept = tracked_smoke
    assert global_state_kept
    stored = runs.read_json(run_dir / runs.MLFLOW_RUN)
    assert stored["tracking_uri"] == f"sqlite:///{run_dir.path.parent.resolve() / runs.MLFLOW_DB}"
    client, run = _only_run(stored["tracking_uri"])
    assert run.info.run_id == stored["run_id"] == evaluated["tracked"] and run.info.status == "FINISHED"
    assert run.info.run_name == "smoke" and stored["experiment"] == "runs"
    params = run.data.params
    assert params["learning_rate"] == str(SMOKE["learning_rate"]) and params["report_to"] == "mlflow"
    assert params["trainer/per_device_train_batch_size"] == str(SMOKE["batch_size"])
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert len({m.step for m in losses}) >= 3  # logging_steps=1: a point per step
    assert client.get_metric_history(run.info.run_id, "eval_cider")
    metrics = evaluated["metrics"]
    logged = run.data.metrics
    cider = metrics["results"]["fine-tuned"]["ci"]["CIDEr"]
    assert logged["test/CIDEr"] == pytest.approx(cider["value"])
    assert logged["test/CIDEr_ci_low"] == pytest.approx(cider["low"])
    assert logged["test/CIDEr_ci_high"] == pytest.approx(cider["high"])
    assert logged["test/baseline/CIDEr"] == pytest.approx(metrics["results"]["baseline"]["metrics"]["CIDEr"])
    assert logged["test/human_ceiling/CIDEr"] == pytest.approx(metrics["human_ceiling"]["metrics"]["CIDEr"])
    assert "test/human_ceiling/CIDEr_ci_high" in logged and "test/gain/CIDEr_ci_low" in logged
    # Null metrics are no numbers; their reasons are tags
    assert "test/SPICE" not in logged and run.data.tags["unavailable/test/SPICE"]
    assert "test/CLIP-S" not in logged and "unavailable/test/CLIP-S" in run.data.tags
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    artifacts |= {a.path for folder in ("figures", "model") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {runs.METRICS, "model/README.md", "figures/metric_comparison.png",
            "figures/paired_differences.png"} <= artifacts
    local = client.download_artifacts(run.info.run_id, runs.METRICS, str(run_dir / "downloaded"))
    assert json.loads(open(local).read())["split_hash"] == metrics["split_hash"]
    # the artifacts sit beside the store, not under the notebook's working folder
    assert (run_dir.path.parent / runs.MLFLOW_ARTIFACTS).is_dir()


def _train(run_dir, callbacks=(), **overrides):
    from blipnb.data import load_captions
    from blipnb.model.modeling import start_model
    from blipnb.training import train_model

    cfg = tiny_config(run_dir, **{"report_to": "mlflow", "max_steps": 2, **overrides})
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    train_model(cfg, model, processor, ds, callbacks=callbacks)
    return cfg


def test_mlflow_run_of_a_training_that_raises_ends_failed(tmp_path):
    from transformers import TrainerCallback

    class Boom(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _train(tmp_path / "runs" / "b", callbacks=[Boom()], eval_strategy="no")
    _, run = _only_run(tracking_uri(tmp_path / "runs" / "b"))
    assert run.info.status == "FAILED" and run.data.params["report_to"] == "mlflow"


def test_mlflow_tracking_uri_override_resume_continues_and_retraining_replaces(tmp_path):
    other = tmp_path / "elsewhere" / "team.db"
    other.parent.mkdir()
    uri = f"sqlite:///{other}"
    run_dir = tmp_path / "runs" / "a"
    _train(run_dir, tracking_uri=uri, tracking_experiment="captioning", eval_strategy="no")
    assert not (tmp_path / "runs" / runs.MLFLOW_DB).exists()
    client, first = _only_run(uri)
    assert client.get_experiment(first.info.experiment_id).name == "captioning"
    assert runs.read_json(run_dir / runs.MLFLOW_RUN)["run_id"] == first.info.run_id
    # resumed from its last checkpoint: the same MLflow run, the changed parameter a tag
    _train(run_dir, tracking_uri=uri, tracking_experiment="captioning", eval_strategy="no", max_steps=3,
           resume_from_checkpoint="auto")
    client, resumed = _only_run(uri)
    assert resumed.info.run_id == first.info.run_id and resumed.info.status == "FINISHED"
    assert "resume_from_checkpoint: False -> auto" in resumed.data.tags[RESUMED_WITH_TAG]
    assert resumed.data.tags[RESUMED_AT_TAG] == "2"
    assert max(m.step for m in client.get_metric_history(first.info.run_id, "loss")) == 3
    # trained again from step 0: a new run, the old one says which replaced it (and, left RUNNING by a process
    # that died, ends KILLED)
    client.update_run(first.info.run_id, status="RUNNING")
    _train(run_dir, tracking_uri=uri, tracking_experiment="captioning", eval_strategy="no")
    found = client.search_runs([first.info.experiment_id])
    assert len(found) == 2
    new = runs.read_json(run_dir / runs.MLFLOW_RUN)["run_id"]
    assert new != first.info.run_id
    old = client.get_run(first.info.run_id)
    assert old.data.tags[REPLACED_BY_TAG] == new and old.info.status == "KILLED"


@pytest.mark.parametrize("report_to", ["none", "tensorboard"])
def test_mlflow_gets_nothing_from_a_run_not_tracked_in_it(tmp_path, report_to, capsys):
    from blipnb.evaluation import track

    cfg = _train(tmp_path / "runs" / "plain", report_to=report_to, eval_strategy="no")
    capsys.readouterr()
    assert track(cfg, {"split": "test", "results": {}}) is None
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "runs" / runs.MLFLOW_DB).exists()
    assert not (tmp_path / "runs" / "plain" / runs.MLFLOW_RUN).exists()


def test_mlflow_trackio_missing_says_how_to_install(tmp_path):
    from blipnb.training import build_trainer

    if importlib.util.find_spec("trackio") is not None:
        pytest.skip("trackio is installed here")
    cfg = tiny_config(tmp_path, report_to="trackio")  # valid as a config: the package is needed to train
    with pytest.raises(ParameterError, match=r"report_to='trackio'.*pip install trackio"):
        build_trainer(cfg, None, None, None)


def test_mlflow_missing_says_how_to_install(tmp_path, monkeypatch):
    from blipnb.training import build_trainer

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ParameterError, match=r"report_to='mlflow'.*pip install"):
        build_trainer(tiny_config(tmp_path, report_to="mlflow"), None, None, None)


def test_mlflow_trials_are_child_runs_of_the_sweep_parent(tmp_path):
    """Two train() calls on one Trainer (two trials) give two children with their own curves; a trial stopped
    before its last step, as optuna's pruning does (on_train_end, then TrialPruned), ends KILLED."""
    from blipnb.data import load_captions
    from blipnb.model.modeling import start_model
    from blipnb.training import build_trainer
    from transformers import TrainerCallback

    class Pruned(Exception):
        pass

    class PruneAtStep(TrainerCallback):
        """What the Trainer does when optuna prunes a trial after a report at `step` (after that step's log)."""

        def __init__(self):
            self.trainer, self.step = None, None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.global_step == self.step:
                self.trainer.callback_handler.on_train_end(args, state, control)
                raise Pruned()

    sweep = tmp_path / "runs" / "sweep"
    cfg = tiny_config(sweep / "base", report_to="none", max_steps=3, eval_strategy="no")
    parent = start_parent(sweep, cfg)
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    prune = PruneAtStep()
    trials = iter([{"learning_rate": 1e-3}, {"learning_rate": 1e-2}, {"learning_rate": 3e-3}])
    children = TrialRuns(parent, params=lambda state: next(trials))
    trainer = build_trainer(cfg, model, processor, ds, callbacks=[children, prune])
    prune.trainer = trainer
    trainer.train()
    trainer.train()
    prune.step = 1
    with pytest.raises(Pruned):
        trainer.train()
    parent.end()

    client = client_for(tracking_uri(sweep))
    found = client.search_runs([client.get_run(parent.run_id).info.experiment_id],
                               filter_string=f"tags.`{PARENT_TAG}` = '{parent.run_id}'", order_by=["start_time"])
    assert [r.info.run_name for r in found] == ["trial-0", "trial-1", "trial-2"]
    assert [r.data.params["learning_rate"] for r in found] == ["0.001", "0.01", "0.003"]
    assert [r.info.status for r in found] == ["FINISHED", "FINISHED", "KILLED"]
    for run, steps in zip(found, (3, 3, 1)):
        assert max(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == steps
        assert runs.read_json(sweep / run.info.run_name / runs.MLFLOW_RUN)["run_id"] == run.info.run_id
    assert client.get_run(parent.run_id).info.status == "FINISHED"
    assert runs.read_json(sweep / runs.MLFLOW_RUN)["run_id"] == parent.run_id
