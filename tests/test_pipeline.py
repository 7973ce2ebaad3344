"""End to end on CPU: sample data -> tiny BLIP -> short training (the shared `trained` fixture) -> captions of
test images -> metrics."""
import torch

from blipnb import runs
from blipnb.model.collate import CaptionPairs
from blipnb.evaluation import BASELINE, FINETUNED, evaluate_run
from blipnb.model.generation import caption_image, caption_split
from blipnb.model.modeling import load_model
from blipnb.schema import CIDER, METRIC_KEYS, references
from blipnb.scoring import quick_scores
from blipnb.training import build_trainer

def test_run_dir_holds_the_export(trained):
    cfg, ds, model, processor, results = trained
    run = runs.RunDir(cfg.run_dir)
    for name in (runs.CONFIG, runs.LOG_HISTORY, runs.TRAIN_RESULTS, runs.MODEL_DIR, runs.BASE_MODEL_DIR):
        assert (run / name).exists(), name
    history = runs.read_json(run / runs.LOG_HISTORY)
    assert any("eval_cider" in h for h in history), "validation must be scored by captioning images"
    assert results["best_metric_name"] == "eval_cider" and results["global_step"] > 0


def test_learning_beats_the_untrained_model(trained):
    cfg, ds, model, processor, _ = trained
    base, _ = load_model(runs.RunDir(cfg.run_dir) / runs.BASE_MODEL_DIR, attn_implementation="eager")
    losses = {}
    for name, m in (("trained", model), ("untrained", base)):
        trainer = build_trainer(cfg, m, processor, ds)
        trainer.caption_eval = None  # the test loss alone here
        losses[name] = trainer.evaluate(CaptionPairs(ds["test"]))["eval_loss"]
    refs = references(ds["test"])
    cider = {name: quick_scores(caption_split(m, processor, ds["test"], cfg.generation, progress=False), refs)[CIDER]
             for name, m in (("trained", model), ("untrained", base))}
    assert losses["trained"] < losses["untrained"]
    assert cider["trained"] > cider["untrained"] + 0.2, cider


def test_canary_untrained_model_scores_near_zero(trained):
    """If evaluation ever leaked references into generation, an untrained model would score high."""
    cfg, ds, _, processor, _ = trained
    base, _ = load_model(runs.RunDir(cfg.run_dir) / runs.BASE_MODEL_DIR, attn_implementation="eager")
    preds = caption_split(base, processor, ds["test"], cfg.generation, progress=False)
    assert quick_scores(preds, references(ds["test"]))[CIDER] < 0.1


def test_generate_sees_pixels_only(trained, monkeypatch):
    cfg, ds, model, processor, _ = trained
    seen = []
    original = model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs.get("input_ids"))
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    caption_split(model, processor, ds["test"], cfg.generation, progress=False)
    assert seen and all(ids is None for ids in seen)


def test_prompt_is_fed_and_stripped(trained):
    cfg, ds, model, processor, _ = trained
    image = ds["test"][0]["image"]
    plain = caption_image(image, model, processor, num_beams=1, max_new_tokens=8)
    prompted = caption_image(image, model, processor, num_beams=1, max_new_tokens=8, prompt="a large")
    assert isinstance(plain, str) and not prompted.startswith("a large")
    samples = caption_image(image, model, processor, do_sample=True, num_beams=1, num_return_sequences=3)
    assert len(samples) == 3


def test_end_to_end_metrics_file_has_every_key(trained):
    cfg, ds, model, processor, _ = trained
    base = load_model(runs.RunDir(cfg.run_dir) / runs.BASE_MODEL_DIR, attn_implementation="eager")
    ids = {FINETUNED: "model", BASELINE: "base_model"}
    metrics = evaluate_run(cfg, ds["test"], {FINETUNED: (model, processor), BASELINE: base}, ids, progress=False)
    stored = runs.read_json(runs.RunDir(cfg.run_dir) / runs.METRICS)
    assert stored["n_images"] == len(ds["test"]) == metrics["n_images"]
    for name in (FINETUNED, BASELINE):
        result = stored["results"][name]
        assert set(METRIC_KEYS) <= set(result["metrics"])
        for key in METRIC_KEYS:
            assert (result["metrics"][key] is None) == (key in result["unavailable"]), key
        assert result["refs_per_image"]["min"] == 5
    assert stored["results"][FINETUNED]["metrics"][CIDER] > stored["results"][BASELINE]["metrics"][CIDER]
    assert set(stored["comparison"]) >= {CIDER, "Bleu_4"}
    rows = runs.read_jsonl(runs.RunDir(cfg.run_dir) / runs.PREDICTIONS)
    assert len(rows) == len(ds["test"]) and all(r["prediction"] for r in rows)
    assert torch.is_grad_enabled()
