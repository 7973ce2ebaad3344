"""Evaluate a run on one split: each model captions every image once, scored against all references, with CIs,
a paired comparison and provenance, written into the run directory."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from functools import partial

from .. import runs
from ..config import Config, load_config
from ..data import split_hashes
from ..schema import BLEU, CIDER, HUMAN_CEILING, references
from ..scoring import sanity_check, score_captions
from ..scoring.bootstrap import bootstrap_cis, paired_comparison
from ..scoring.beyond import Grounding, add_beyond
from ..scoring.ceiling import NO_CEILING, leave_one_out, score_ceiling
from ..scoring.meteor import MeteorScorer
from ..model.generation import caption_split
from ..training.provenance import provenance
from ..training.validation import caption_and_score, score_split
from ..version import __version__
from .grounding import grounding

FINETUNED, BASELINE = "fine-tuned", "baseline"


def score_model(model, processor, split, cfg: Config, progress: bool = True, desc: str = "captioning") -> tuple:
    """Caption every image of `split` once (pixel_values only) and score it; returns (predictions, result)."""
    score = partial(score_captions, **score_settings(cfg))
    return caption_and_score(model, processor, split, cfg.generation, score=score, progress=progress)


def prediction_rows(preds: dict, result: dict, split) -> list[dict]:
    """One row per image: id, prediction, references, that image's scores, and the objects it names that are not in
    the image (when the data says what is)."""
    refs = references(split)
    objects = result["stats"].get("objects")
    invented = dict(zip(result["stats"]["image_ids"], objects["invented"])) if objects else {}
    return [{"image_id": i, "prediction": preds[i], "references": refs[i], "scores": result["per_image"].get(i, {}),
             **({"invented": invented[str(i)]} if objects else {})} for i in preds]


def score_settings(cfg: Config) -> dict:
    """score_captions' keyword arguments from the eval config: the models and the human ceiling share them."""
    return {"do_spice": cfg.eval.do_spice, "spice_subsample": cfg.eval.spice_subsample,
            "seed": cfg.eval.bootstrap_seed}


def summarise(result: dict, cfg: Config, ceiling: dict | None = None, meteor: MeteorScorer | None = None) -> dict:
    """A result without its cached statistics, plus bootstrap CIs (exact METEOR on `meteor`'s JVM when given) and
    the sanity warnings (which compare it with the human ceiling when one is given)."""
    out = {k: v for k, v in result.items() if k not in ("per_image", "stats")}
    out["ci"] = bootstrap_cis(result, n_boot=cfg.eval.n_bootstrap, seed=cfg.eval.bootstrap_seed, meteor=meteor)
    plausible = {BLEU[3]: cfg.eval.plausible_bleu4, CIDER: cfg.eval.plausible_cider}
    out["sanity"] = sanity_check(result, cfg.data.source, plausible=plausible, ceiling=ceiling)
    return out


def human_ceiling(split, cfg: Config, meteor: MeteorScorer | None = None,
                  ground: Grounding | None = None) -> dict | None:
    """The split's references scored against each other (scoring.ceiling), beyond n-grams too, or None when no image
    has two."""
    refs = references(split)
    if not any(len(r) >= 2 for r in refs.values()):
        return None
    result = score_ceiling(refs, **score_settings(cfg), meteor=meteor)
    hypotheses, held_out, images = leave_one_out(refs)
    return add_beyond(result, hypotheses, held_out, images, ground)


def score_beyond(preds: dict, result: dict, split, ground: Grounding | None) -> dict:
    """A model's n-gram result with the embedding, hallucination and degeneration metrics added."""
    refs = references(split)
    return add_beyond(result, preds, {k: refs[k] for k in preds}, None, ground)


def summarise_ceiling(ceiling: dict | None, cfg: Config, split_images: int | None = None,
                      meteor: MeteorScorer | None = None) -> dict | None:
    """The human ceiling as metrics.json keeps it: like a model's summary, with CIs from the same bootstrap, and
    `of_images`, the split's size (the ceiling covers only its images with two or more references)."""
    if ceiling is None:
        return None
    out = {k: v for k, v in ceiling.items() if k not in ("per_image", "stats")}
    out["ci"] = bootstrap_cis(ceiling, n_boot=cfg.eval.n_bootstrap, seed=cfg.eval.bootstrap_seed, meteor=meteor)
    out["method"] = "each reference scored against the other references of its image (leave one out, rotating)"
    out["of_images"] = split_images if split_images is not None else ceiling["n_images"]
    return out


def evaluate_run(cfg: Config, split, models: dict[str, tuple], model_ids: dict[str, str], progress=True,
                 meteor: MeteorScorer | None = None, train=None) -> dict:
    """Score each (model, processor) in `models` on `split`, and the references against each other (the human
    ceiling); write predictions and metrics into the run dir. With the `train` split, `copied` says how many
    captions are a training caption verbatim.

    One METEOR JVM serves every score and interval: `meteor` when given (prestart_meteor(), launched earlier),
    which this evaluation takes over and closes when done, else one it starts and closes itself."""
    # Started now, so the JVM's ~10 s start overlaps the captioning, which comes first and does not need it.
    with (meteor if meteor is not None else MeteorScorer()).start() as scorer:
        return _evaluate(cfg, split, models, model_ids, progress, scorer, train=train)


def _evaluate(cfg: Config, split, models: dict[str, tuple], model_ids: dict[str, str], progress,
              meteor: MeteorScorer, train=None) -> dict:
    run = runs.RunDir(cfg.run_dir).ensure()
    results, summaries = {}, {}
    # Every model captions first, while METEOR's JVM starts; then all scoring, which needs it.
    captions = {name: caption_split(model, processor, split, cfg.generation, progress=progress)
                for name, (model, processor) in models.items()}
    ground = grounding(cfg, split, train, progress)
    ceiling = human_ceiling(split, cfg, meteor, ground)
    for name, preds in captions.items():
        result = score_split(preds, split, partial(score_captions, **score_settings(cfg), meteor=meteor))
        results[name] = score_beyond(preds, result, split, ground)
        summaries[name] = summarise(result, cfg, ceiling, meteor)
        out = runs.PREDICTIONS if name == FINETUNED else runs.BASELINE_PREDICTIONS
        runs.write_jsonl(run / out, prediction_rows(preds, result, split))
    metrics = {
        "blipnb_version": __version__,
        "split": cfg.eval.eval_split, "source": cfg.data.source, "n_images": len(split),
        "split_hash": split_hashes({cfg.eval.eval_split: split})[cfg.eval.eval_split],
        "models": model_ids, "decoding": dataclasses.asdict(cfg.generation),
        # Validation in 02 decoded with the run's stored settings; anything else here is said, not silent.
        "decoding_differs_from_validation": decoding_differences(cfg),
        "results": summaries,
        HUMAN_CEILING: summarise_ceiling(ceiling, cfg, len(split), meteor),
        # Like a metric that cannot run: null above, and the reason here.
        "unavailable": {HUMAN_CEILING: NO_CEILING} if ceiling is None else {},
        "provenance": provenance(cfg),
    }
    if FINETUNED in results and BASELINE in results:
        metrics["comparison"] = paired_comparison(results[FINETUNED], results[BASELINE], n_boot=cfg.eval.n_bootstrap,
                                                  seed=cfg.eval.bootstrap_seed, meteor=meteor)
    runs.write_json(run / runs.METRICS, metrics)
    return metrics


def track(cfg: Config, metrics: dict) -> str | None:
    """Log 03's scores, with their CIs, metrics.json, the figures and the model card, into the MLflow run 02 tracked
    this run in (report_to=mlflow); returns its id. None, silently, for a run 02 did not track."""
    from ..training.tracking import log_evaluation

    return log_evaluation(cfg, metrics, main=FINETUNED)


def decoding_differences(cfg: Config) -> list[str]:
    """How cfg's decoding differs from the run's stored one (its config.json: what 02 validated with), as
    "num_beams 3 -> 5"; empty when they agree or the run has no stored config."""
    stored = runs.RunDir(cfg.run_dir) / runs.CONFIG
    return cfg.generation.differences(load_config(stored).generation) if stored.exists() else []


def model_paths(cfg: Config) -> dict[str, str]:
    """{FINETUNED: the run's export, BASELINE: the model it started from}; a MissingRunFile saying "run 02_finetune
    first" if either folder is not there (or holds no model), before anything tries to load it."""
    run = runs.RunDir(cfg.run_dir)
    finetuned = run.require_model(runs.MODEL_DIR, "02_finetune", "fine-tuned model")
    if cfg.model.from_scratch:
        run.require_model(runs.BASE_MODEL_DIR, "02_finetune", "base model (the untrained tiny BLIP, the baseline)")
    return {FINETUNED: str(finetuned), BASELINE: baseline_id(cfg)}


def load_models(cfg: Config, paths: dict[str, str]) -> dict[str, tuple]:
    """{name: (model, processor)} for each of `paths`, with the run's attention implementation."""
    from ..model.modeling import load_model

    return {name: load_model(path, attn_implementation=cfg.model.attn_implementation) for name, path in paths.items()}


def baseline_id(cfg: Config) -> str:
    """The starting model: the untrained tiny model saved in the run dir, or the hub/local model_id."""
    base = Path(cfg.run_dir) / runs.BASE_MODEL_DIR
    return str(base) if cfg.model.from_scratch else cfg.model.model_id
