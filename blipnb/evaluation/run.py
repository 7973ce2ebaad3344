"""Evaluate a run on one split: each model captions every image once, scored against all references, with CIs,
a paired comparison and provenance, written into the run directory."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from functools import partial

from .. import runs
from ..config import Config
from ..data import split_hashes
from ..schema import BLEU, CIDER, references
from ..scoring import sanity_check, score_captions
from ..scoring.bootstrap import bootstrap_cis, paired_comparison
from ..training.provenance import provenance
from ..training.validation import caption_and_score
from ..version import __version__

FINETUNED, BASELINE = "fine-tuned", "baseline"


def score_model(model, processor, split, cfg: Config, progress: bool = True, desc: str = "captioning") -> tuple:
    """Caption every image of `split` once (pixel_values only) and score it; returns (predictions, result)."""
    score = partial(score_captions, do_spice=cfg.eval.do_spice, spice_subsample=cfg.eval.spice_subsample,
                    seed=cfg.eval.bootstrap_seed)
    return caption_and_score(model, processor, split, cfg.generation, score=score, progress=progress)


def prediction_rows(preds: dict, result: dict, split) -> list[dict]:
    """One row per image: id, prediction, references and that image's scores."""
    refs = references(split)
    return [{"image_id": i, "prediction": preds[i], "references": refs[i], "scores": result["per_image"].get(i, {})}
            for i in preds]


def summarise(result: dict, cfg: Config) -> dict:
    """A result without its cached statistics, plus bootstrap CIs and the sanity warnings."""
    out = {k: v for k, v in result.items() if k not in ("per_image", "stats")}
    out["ci"] = bootstrap_cis(result, n_boot=cfg.eval.n_bootstrap, seed=cfg.eval.bootstrap_seed)
    plausible = {BLEU[3]: cfg.eval.plausible_bleu4, CIDER: cfg.eval.plausible_cider}
    out["sanity"] = sanity_check(result, cfg.data.source, plausible=plausible)
    return out


def evaluate_run(cfg: Config, split, models: dict[str, tuple], model_ids: dict[str, str], progress=True) -> dict:
    """Score each (model, processor) in `models` on `split`, write predictions and metrics into the run dir."""
    run = runs.RunDir(cfg.run_dir).ensure()
    results, summaries = {}, {}
    for name, (model, processor) in models.items():
        preds, result = score_model(model, processor, split, cfg, progress=progress, desc=f"captioning ({name})")
        results[name] = result
        summaries[name] = summarise(result, cfg)
        out = runs.PREDICTIONS if name == FINETUNED else runs.BASELINE_PREDICTIONS
        runs.write_jsonl(run / out, prediction_rows(preds, result, split))
    metrics = {
        "blipnb_version": __version__,
        "split": cfg.eval.eval_split, "source": cfg.data.source, "n_images": len(split),
        "split_hash": split_hashes({cfg.eval.eval_split: split})[cfg.eval.eval_split],
        "models": model_ids, "decoding": dataclasses.asdict(cfg.generation),
        "results": summaries,
        "provenance": provenance(cfg),
    }
    if FINETUNED in results and BASELINE in results:
        metrics["comparison"] = paired_comparison(results[FINETUNED], results[BASELINE],
                                                  n_boot=cfg.eval.n_bootstrap, seed=cfg.eval.bootstrap_seed)
    runs.write_json(run / runs.METRICS, metrics)
    return metrics


def model_paths(cfg: Config) -> dict[str, str]:
    """{FINETUNED: the run's export, BASELINE: the model it started from}; a clear error if 02 has not run."""
    run = runs.RunDir(cfg.run_dir)
    return {FINETUNED: str(run.require(runs.MODEL_DIR, "02_finetune")), BASELINE: baseline_id(cfg)}


def load_models(cfg: Config, paths: dict[str, str]) -> dict[str, tuple]:
    """{name: (model, processor)} for each of `paths`, with the run's attention implementation."""
    from ..model.modeling import load_model

    return {name: load_model(path, attn_implementation=cfg.model.attn_implementation) for name, path in paths.items()}


def baseline_id(cfg: Config) -> str:
    """The starting model: the untrained tiny model saved in the run dir, or the hub/local model_id."""
    base = Path(cfg.run_dir) / runs.BASE_MODEL_DIR
    return str(base) if cfg.model.from_scratch else cfg.model.model_id
