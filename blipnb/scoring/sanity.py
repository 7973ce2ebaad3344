"""Scores implausible for the data source or far above the human ceiling (the usual signs of a leak), and
single-reference scoring, flagged.

The human ceiling (`scoring.ceiling`: references scored against each other) is the data's own yardstick. A model
may beat it, as models do on COCO (they reproduce the references' consensus phrasing, which no single human
does), but a model that closes most of the gap between the ceiling and a perfect score is copying references.
Calibrated on the sample's test split: the ceiling is BLEU-4 0.703 / METEOR 0.507 / CIDEr 3.91; an ideal model
that always gives the canonical caption of what is in the image scores 0.883 / 0.567 / 5.00; a parrot that returns
a reference scores 1.0 / 1.0 / 5.36. Three quarters of the gap (thresholds 0.93 / 0.88 / 8.5 on the sample)
separates them; on COCO (published human BLEU-4 0.22) it passes any real model (BLIP: ~0.4).
"""
from __future__ import annotations

from ..schema import BLEU, CIDER, METEOR, REPEATS

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
METRIC_MAXIMA = {BLEU[3]: 1.0, METEOR: 1.0, CIDER: 10.0}  # CIDEr-D's maximum: identical to every reference
REPEAT_LIMIT = 0.10  # share of captions with a repeated bigram or trigram above which a model is said to loop
FEW_IMAGES = 30  # fewer scored images than this: the intervals are said to mean little
CEILING_MARGIN = 0.75  # share of the gap from the human ceiling to the maximum that a model may close (see above)
LEAK_CAUSES = (
    "the reference caption fed to `generate` as a prompt (pass pixel_values only)",
    "a split by caption row instead of by image (the same image in train and test)",
    "scoring against a single reference per image instead of all of them",
)


def sanity_check(metrics: dict, source: str, plausible: dict | None = None, *,
                 refs_per_image: float | None = None, ceiling: dict | None = None) -> list[str]:
    """Warnings for scores implausible on this source or far above the human ceiling (usually a leak), for
    single-reference scoring, and for too few images to say much.

    `metrics` is a flat metrics dict or a whole score_captions result (which also gives refs_per_image).
    `plausible` overrides the source's ceilings per metric key; None values keep the source default.
    `ceiling` is the human ceiling's metrics (flat, or its score_captions result), when it was computed.
    """
    n_images = None
    if "metrics" in metrics:
        refs_per_image = refs_per_image or metrics.get("refs_per_image", {}).get("mean")
        n_images = metrics.get("n_images")
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
    warnings += above_ceiling(metrics, ceiling)
    warnings += repetition(metrics, ceiling)
    if refs_per_image is not None and refs_per_image < 2:
        warnings.append(single_reference_note(refs_per_image))
    if n_images is not None and n_images < FEW_IMAGES:
        warnings.append(f"only {n_images} image(s) scored: a bootstrap over so few images cannot show how much the "
                        "scores would move on other images (with one image the interval has no width); score a "
                        "larger split (test_fraction, or more images) before drawing conclusions")
    return warnings


def single_reference_note(refs_per_image: float) -> str:
    """What scores against (mostly) one reference per image mean, for data that has no more to give."""
    return (f"{refs_per_image:.2f} reference(s) per image on average: against a single reference, BLEU and CIDEr "
            "are noisier and lower than on multi-reference benchmarks (COCO and Flickr8k have five per image; "
            "CIDEr's document frequencies assume several), so these numbers are not comparable with published "
            "COCO or Flickr8k scores. Compare models and runs scored on this same split, with the intervals.")


def above_ceiling(metrics: dict, ceiling: dict | None, margin: float = CEILING_MARGIN) -> list[str]:
    """Warnings for metrics that close more than `margin` of the gap from the human ceiling to the maximum."""
    ceiling = (ceiling or {}).get("metrics", ceiling) or {}
    out = []
    for key, maximum in METRIC_MAXIMA.items():
        value, human = metrics.get(key), ceiling.get(key)
        if value is None or human is None:
            continue
        limit = human + margin * (maximum - human)
        if value > limit:
            out.append(f"{key} = {value:.3f} is far above the human ceiling ({human:.3f}, references scored "
                       f"against each other; flagged above {limit:.3f}): a model that nearly matches the references "
                       "word for word is usually copying them; usual causes: " + "; ".join(LEAK_CAUSES))
    return out


def repetition(metrics: dict, ceiling: dict | None, limit: float = REPEAT_LIMIT) -> list[str]:
    """A warning when more than `limit` of the captions repeat a word bigram or trigram, and more of them than of the
    references do (the human ceiling's share, when known): the model loops ("a hat on top of a hat")."""
    value = metrics.get(REPEATS)
    human = ((ceiling or {}).get("metrics", ceiling) or {}).get(REPEATS)
    if value is None or value <= limit or (human is not None and value <= human):
        return []
    than = f", against {human:.1%} of the references" if human is not None else ""
    return [f"{REPEATS} = {value:.1%} of the captions repeat a word bigram or trigram (flagged above {limit:.0%}"
            f"{than}): the model loops, as in 'a hat on top of a hat'; decode with repetition_penalty (e.g. 1.2) or "
            "no_repeat_ngram_size (e.g. 3), and see 04's gallery of repeating captions"]
