"""Evaluate models on one split: caption once per image, score against all references, CIs, paired comparison."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from . import runs
from .bootstrap import bootstrap_cis, paired_comparison
from .config import Config
from .data import CAPTIONS, IMAGE_ID
from .generation import caption_split
from .scoring import CIDER, score_captions, sanity_check
from .version import __version__

FINETUNED, BASELINE = "fine-tuned", "baseline"


def references(split) -> dict[str, list[str]]:
    """{image_id: all reference captions} of a canonical split."""
    return dict(zip(split[IMAGE_ID], split[CAPTIONS]))


def score_model(model, processor, split, cfg: Config, progress: bool = True, desc: str = "captioning") -> tuple:
    """Caption every image of `split` once (pixel_values only) and score it; returns (predictions, result)."""
    preds = caption_split(model, processor, split, cfg.generation, progress=progress)
    refs = references(split)
    result = score_captions(preds, {k: refs[k] for k in preds}, do_spice=cfg.eval.do_spice,
                            spice_subsample=cfg.eval.spice_subsample, seed=cfg.eval.bootstrap_seed)
    return preds, result


def prediction_rows(preds: dict, result: dict, split) -> list[dict]:
    """One row per image: id, prediction, references and that image's scores."""
    refs = references(split)
    return [{"image_id": i, "prediction": preds[i], "references": refs[i], "scores": result["per_image"].get(i, {})}
            for i in preds]


def summarise(result: dict, cfg: Config) -> dict:
    """A result without its cached statistics, plus bootstrap CIs and the sanity warnings."""
    out = {k: v for k, v in result.items() if k not in ("per_image", "stats")}
    out["ci"] = bootstrap_cis(result, n_boot=cfg.eval.n_bootstrap, seed=cfg.eval.bootstrap_seed)
    plausible = {"Bleu_4": cfg.eval.plausible_bleu4, CIDER: cfg.eval.plausible_cider}
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
    from .data import split_hashes
    from .provenance import provenance

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


def decoding_sweep(model, processor, validation, cfg: Config, progress: bool = True) -> dict:
    """Score each decoding setting of the sweep grid on VALIDATION (CIDEr); test is never used to choose.

    Returns {"grid": [{setting..., "CIDEr", "Bleu_4"}], "best": {setting...}, "n_images"}; writes runs.SWEEP.
    """
    import itertools

    from tqdm.auto import tqdm

    from .scoring import quick_scores

    axes = cfg.eval.sweep_grid()
    if not axes:
        raise ValueError("no decoding sweep requested: set sweep_num_beams, sweep_length_penalty or "
                         "sweep_max_new_tokens")
    if cfg.eval.sweep_max_images is not None:
        validation = validation.select(range(min(cfg.eval.sweep_max_images, len(validation))))
    refs = references(validation)
    grid = []
    settings = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    for setting in tqdm(settings, desc="decoding sweep (validation)", disable=not progress):
        gen = dataclasses.replace(cfg.generation, decoding_preset=None, **setting)
        gen.min_new_tokens = min(gen.min_new_tokens, gen.max_new_tokens)
        preds = caption_split(model, processor, validation, gen, progress=False)
        scores = quick_scores(preds, refs)
        grid.append({**setting, CIDER: scores[CIDER], "Bleu_4": scores["Bleu_4"]})
    best = max(grid, key=lambda row: row[CIDER])
    sweep = {"split": "validation", "n_images": len(validation), "grid": grid,
             "best": {k: best[k] for k in axes}, "chosen_by": CIDER}
    runs.write_json(runs.RunDir(cfg.run_dir) / runs.SWEEP, sweep)
    return sweep


def apply_decoding(cfg: Config, setting: dict) -> Config:
    """A copy of `cfg` whose decoding uses `setting` (e.g. the sweep's best on validation)."""
    gen = dataclasses.replace(cfg.generation, decoding_preset=None, **setting)
    return dataclasses.replace(cfg, generation=gen)


def baseline_id(cfg: Config) -> str:
    """The starting model: the untrained tiny model saved in the run dir, or the hub/local model_id."""
    base = Path(cfg.run_dir) / runs.BASE_MODEL_DIR
    return str(base) if cfg.model.from_scratch else cfg.model.model_id


def report_rows(metrics: dict) -> list[dict]:
    """One row per metric: each model's value with its 95% CI, and the paired difference when there is one."""
    from .scoring import METRIC_KEYS

    results, comparison = metrics["results"], metrics.get("comparison", {})
    rows = []
    for key in METRIC_KEYS:
        row = {"metric": key}
        for name, r in results.items():
            ci = r.get("ci", {}).get(key) or {}
            row[name] = _with_ci(key, r["metrics"].get(key), ci.get("low"), ci.get("high"))
        if key in comparison:
            c = comparison[key]
            row["difference"] = _with_ci(key, c.get("diff"), c.get("low"), c.get("high"))
            row["P(fine-tuned wins)"] = "n/a" if c.get("p_a_wins") is None else f"{c['p_a_wins']:.3f}"
        rows.append(row)
    rows.append({"metric": "n images"} | {n: str(r["n_images"]) for n, r in results.items()})
    rows.append({"metric": "refs per image"} | {n: f"{r['refs_per_image']['mean']:.2f}" for n, r in results.items()})
    return rows


def format_report(metrics: dict) -> str:
    """Plain-text metrics table (95% CIs in brackets), the scale, missing metrics with reasons, sanity warnings."""
    rows = report_rows(metrics)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [columns] + [[row.get(c, "") for c in columns] for row in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    first = next(iter(metrics["results"].values()))
    lines.append(f"{metrics['split']} split of {metrics['source']}; scale: {first['scale']}; "
                 f"tokenizer: {first['tokenizer']}")
    for name, r in metrics["results"].items():
        lines += [f"{key} unavailable ({name}): {why}" for key, why in r.get("unavailable", {}).items()]
        lines += [f"WARNING ({name}): {w}" for w in r.get("sanity", [])]
    return "\n".join(lines)


def format_value(key: str, value) -> str:
    """A metric as reports show it: 4 decimals on the 0-1 scale and for CIDEr, 2 for sacreBLEU (0-100)."""
    from .scoring import SACREBLEU

    if value is None:
        return "n/a"
    return f"{value:.2f}" if key == SACREBLEU else f"{value:.4f}"


def _with_ci(key: str, value, low, high) -> str:
    if value is None or low is None or high is None:
        return format_value(key, value)
    return f"{format_value(key, value)} [{format_value(key, low)}, {format_value(key, high)}]"
