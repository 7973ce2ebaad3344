"""Scores implausible for the data source (the usual signs of a leak) and single-reference scoring, flagged."""
from __future__ import annotations

from ..schema import BLEU, CIDER

# Source -> ceilings above which a score is implausible on real captions (pycocoevalcap 0-1 scale).
_REAL_DATA_CEILING = {BLEU[3]: 0.5, CIDER: 2.0}
PLAUSIBLE = {
    "flickr8k": _REAL_DATA_CEILING,
    "flickr8k_rows": _REAL_DATA_CEILING,
    "coco_karpathy": _REAL_DATA_CEILING,
    "coco_json": _REAL_DATA_CEILING,
    "sample": {BLEU[3]: 1.0, CIDER: 10.0},  # the maxima: a tiny model can learn the synthetic set perfectly
    "folder": {},  # unknown data: no default ceiling
}
LEAK_CAUSES = (
    "the reference caption fed to `generate` as a prompt (pass pixel_values only)",
    "a split by caption row instead of by image (the same image in train and test)",
    "scoring against a single reference per image instead of all of them",
)


def sanity_check(metrics: dict, source: str, plausible: dict | None = None, *,
                 refs_per_image: float | None = None) -> list[str]:
    """Warnings for scores implausible on this source (usually a leak) and for single-reference scoring.

    `metrics` is a flat metrics dict or a whole score_captions result (which also gives refs_per_image).
    `plausible` overrides the source's ceilings per metric key; None values keep the source default.
    """
    if "metrics" in metrics:
        refs_per_image = refs_per_image or metrics.get("refs_per_image", {}).get("mean")
        metrics = metrics["metrics"]
    if source not in PLAUSIBLE and not plausible:
        raise ValueError(f"unknown source {source!r}; known: {sorted(PLAUSIBLE)} (or pass plausible=)")
    ceilings = PLAUSIBLE.get(source, {}) | {k: v for k, v in (plausible or {}).items() if v is not None}
    warnings = [
        f"{key} = {metrics[key]:.3f} is implausibly high for {source!r} (ceiling {ceiling}); usual causes: "
        + "; ".join(LEAK_CAUSES)
        for key, ceiling in ceilings.items()
        if metrics.get(key) is not None and metrics[key] > ceiling
    ]
    if refs_per_image is not None and refs_per_image < 2:
        warnings.append(
            f"only {refs_per_image:.2f} reference(s) per image on average: single-reference scoring inflates "
            "variance and skews CIDEr (its document frequencies assume several references); score against all"
        )
    return warnings
