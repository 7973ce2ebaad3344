"""Same seed, same data: identical splits, identical training and identical metrics on CPU."""
import dataclasses

from blipnb import runs
from blipnb.data import load_captions, split_hashes
from blipnb.evaluation import FINETUNED, evaluate_run
from blipnb.model.modeling import start_model
from blipnb.training import train_model


def evaluate(cfg, ds, model, processor, run_dir):
    """Evaluate into `run_dir` (not the shared run's directory, which other tests read)."""
    cfg = dataclasses.replace(cfg, run_dir=str(run_dir))
    metrics = evaluate_run(cfg, ds["test"], {FINETUNED: (model, processor)}, {FINETUNED: "model"}, progress=False)
    return metrics, runs.read_jsonl(runs.RunDir(run_dir) / runs.PREDICTIONS)


def test_two_runs_give_identical_splits_and_metrics(trained, tmp_path, no_java):
    """Java's tools are deterministic and tested on their own; without them the run is the same Python path."""
    cfg, ds_a, model_a, processor_a, _ = trained  # run a: the session's shared training run
    metrics_a, preds_a = evaluate(cfg, ds_a, model_a, processor_a, tmp_path / "eval_a")
    cfg_b = dataclasses.replace(cfg, run_dir=str(tmp_path / "b"))  # run b: the same config, trained again
    ds_b = load_captions(cfg_b.data)
    model_b, processor_b = start_model(cfg_b, ds_b)
    train_model(cfg_b, model_b, processor_b, ds_b)
    metrics_b, preds_b = evaluate(cfg_b, ds_b, model_b, processor_b, tmp_path / "eval_b")
    assert split_hashes(ds_a) == split_hashes(ds_b)
    assert [r["prediction"] for r in preds_a] == [r["prediction"] for r in preds_b]
    a, b = metrics_a["results"][FINETUNED], metrics_b["results"][FINETUNED]
    assert a["metrics"] == b["metrics"]
    assert a["ci"] == b["ci"]
    assert len({r["prediction"] for r in preds_a}) >= 1
