"""Same seed, same data: identical splits, identical training and identical metrics on CPU."""
from helpers import tiny_config

from blipnb import runs
from blipnb.data import load_captions, split_hashes
from blipnb.evaluation import FINETUNED, evaluate_run
from blipnb.modeling import start_model
from blipnb.training import train_model


def run_once(run_dir):
    cfg = tiny_config(run_dir, epochs=2, n_bootstrap=200)
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    train_model(cfg, model, processor, ds)
    metrics = evaluate_run(cfg, ds["test"], {FINETUNED: (model, processor)}, {FINETUNED: "model"}, progress=False)
    return ds, metrics, runs.read_jsonl(runs.RunDir(run_dir) / runs.PREDICTIONS)


def test_two_runs_give_identical_splits_and_metrics(tmp_path):
    ds_a, metrics_a, preds_a = run_once(tmp_path / "a")
    ds_b, metrics_b, preds_b = run_once(tmp_path / "b")
    assert split_hashes(ds_a) == split_hashes(ds_b)
    assert [r["prediction"] for r in preds_a] == [r["prediction"] for r in preds_b]
    a, b = metrics_a["results"][FINETUNED], metrics_b["results"][FINETUNED]
    assert a["metrics"] == b["metrics"]
    assert a["ci"] == b["ci"]
    assert len({r["prediction"] for r in preds_a}) >= 1
