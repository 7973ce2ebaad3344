"""Bootstrap confidence intervals and paired comparisons, resampling images, from score_captions' cache.

Nothing is re-scored: each resample reweights the per-image statistics that ``score_captions`` cached.

- BLEU-1..4: corpus BLEU recomputed from the summed per-image statistics pycocoevalcap's BleuScorer
  aggregates (clipped n-gram matches and guesses per n, hypothesis length, the "closest" reference length),
  with its smoothing constants (1e-15 / 1e-9). At the identity resample (every image once) this equals
  pycocoevalcap's corpus BLEU to ~1e-9 or better.
- CIDEr: mean of per-image CIDEr-D. The document frequencies stay those of the full test set (they are
  not recomputed per resample), so the identity resample equals pycocoevalcap's CIDEr exactly.
- ROUGE-L, SPICE: mean of per-image scores, which is exactly how pycocoevalcap defines the corpus value.
  SPICE only covers the images it was run on (``spice_images``).
- METEOR (exact): pycocoevalcap's corpus METEOR is the Java tool's score of the summed per-segment statistics,
  not the mean of per-image scores. Each resample sums the cached statistics under its weights and the Java
  tool scores that sum (``scoring.meteor``), so every resample is the corpus METEOR of the resampled images.
- METEOR (approximate, only without Java or without cached statistics): each resample takes the per-image mean
  and adds the full-sample gap (corpus minus mean), so the identity resample equals the corpus value; its width
  is that of the per-image mean (on the sample ~70% wider than the exact interval). The CI records its
  ``method`` ("exact" or "approximate") and why.
- sacreBLEU: corpus BLEU from summed sacrebleu sufficient statistics through ``BLEU.compute_bleu``, with the
  same settings as the scored run (13a tokenizer, lower-cased, exp smoothing).

Beyond n-grams (scoring.beyond): CLIP-S, RefCLIP-S, CHAIR_s, repeats, copied and length are means over captions,
resampled like ROUGE-L; CHAIR_i, colour_errors and position_errors pool counts (objects named that are not there
over objects named), so each resample sums the cached counts under its weights. distinct-n and vocabulary have no
interval: a resample repeats captions, which changes them by itself.

Intervals are percentile intervals over ``n_boot`` seeded resamples of images (with replacement). A result whose
scored items are groups of one image (the human ceiling: one item per held-out reference, ``stats["groups"]``)
resamples images, each drawn image bringing all its items, so its CI covers the choice of images like a model's.
"""

from __future__ import annotations

import shutil

import numpy as np
from sacrebleu.metrics import BLEU as SacreBLEU

from ..schema import (BLEU, CHAIR_S, CIDER, CLIP_S, COPIED, LENGTH, LOWER_IS_BETTER, METEOR, METRIC_KEYS, REFCLIP_S, REPEATS,
                      ROUGE_L, SACREBLEU, SPICE)
from .degeneration import CORPUS_ONLY, NO_INTERVAL
from .hallucination import RATIOS
from .meteor import MeteorScorer, MeteorUnavailable, borrow

_SMALL, _TINY = 1e-9, 1e-15  # pycocoevalcap's BleuScorer constants, so results match it to rounding
_CHUNK_CELLS = 2_000_000  # resamples x images per weight block, bounding memory on large test sets
_MEAN_KEYS = (METEOR, ROUGE_L, CIDER, SPICE, CLIP_S, REFCLIP_S, CHAIR_S, REPEATS, COPIED, LENGTH)
_NO_RESAMPLES = "n_boot=0: no bootstrap"
EXACT, APPROXIMATE = "exact", "approximate"  # the METEOR interval's "method"


def resample_weights(n_images: int, n_boot: int, seed: int = 0):
    """Yield blocks of bootstrap weights: row r counts how often each image is drawn in resample r."""
    rng = np.random.default_rng(seed)
    block = max(1, _CHUNK_CELLS // max(n_images, 1))
    for start in range(0, n_boot, block):
        rows = min(block, n_boot - start)
        draws = rng.integers(0, n_images, size=(rows, n_images))
        flat = (draws + n_images * np.arange(rows)[:, None]).ravel()  # one bincount for all rows
        yield np.bincount(flat, minlength=rows * n_images).reshape(rows, n_images).astype(np.float64)


def _bleu_from_stats(weights, bleu: dict, perm):
    """pycocoevalcap corpus BLEU-1..4 for each weight row, from cached per-image statistics."""
    correct, guess, testlen, reflen = (weights @ np.asarray(bleu[k], dtype=np.float64)[perm]
                                       for k in ("correct", "guess", "testlen", "reflen"))
    orders = np.arange(1, correct.shape[1] + 1)
    scores = np.cumprod((correct + _TINY) / (guess + _SMALL), axis=1) ** (1.0 / orders)
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    brevity = np.where(ratio < 1, np.exp(1 - 1 / np.minimum(ratio, 1)), 1.0)
    return scores * brevity[:, None]


def _sacrebleu_from_stats(weights, segments, perm):
    """sacreBLEU corpus score for each weight row, from per-segment sufficient statistics."""
    # Resample weights are counts, so the sums are integers again (sacrebleu formats them with :d).
    totals = np.rint(weights @ np.asarray(segments, dtype=np.float64)[perm]).astype(np.int64).tolist()
    n = (len(segments[0]) - 2) // 2
    return np.array([
        SacreBLEU.compute_bleu(
            correct=row[2:2 + n], total=row[2 + n:], sys_len=row[0], ref_len=row[1],
            smooth_method="exp", max_ngram_order=n,
        ).score
        for row in totals
    ])


def _weighted_mean(weights, values):
    """Weighted mean of per-image values per row, ignoring images without a value (None/NaN)."""
    present = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ np.where(present, values, 0.0)) / (weights @ present.astype(np.float64))


def _per_image(result: dict, key: str, order: list[str]):
    """Per-image scores of one metric as a float array in the given id order (NaN where missing)."""
    rows = result["per_image"]
    return np.array([np.nan if rows[i].get(key) is None else rows[i][key] for i in order], dtype=np.float64)


def scored_keys(*results: dict) -> list[str]:
    """The metric keys any of the results was scored on (with a value or a reason), in METRIC_KEYS order."""
    return [k for k in METRIC_KEYS if any(k in r["metrics"] for r in results)]


def _reasons(result: dict) -> dict[str, str]:
    """Why each metric has no interval in this result (empty for metrics that can be resampled)."""
    why = {k: f"metric unavailable: {result['unavailable'].get(k, 'not scored')}"
           for k in METRIC_KEYS if result["metrics"].get(k) is None}
    why |= {k: NO_INTERVAL for k in CORPUS_ONLY if k not in why}
    why |= {k: "the per-caption object counts were not cached" for k in RATIOS
            if k not in why and "objects" not in result["stats"]}
    if SACREBLEU not in why and not (result["stats"].get("sacrebleu") or {}).get("segments"):
        why[SACREBLEU] = "sacrebleu's per-segment statistics were not cached"
    return why


def units(result: dict) -> list[str]:
    """The ids a bootstrap resamples: images (for a grouped result, its groups' images in sorted order)."""
    stats = result["stats"]
    return sorted(set(stats["groups"]), key=str) if "groups" in stats else stats["image_ids"]


def metrics_at(result: dict, weights, order: list[str] | None = None, exact_meteor: bool = True,
               meteor: MeteorScorer | None = None) -> dict:
    """Every resamplable metric under integer image weights (rows x images); all-ones give the corpus value.

    METEOR is exact (Java scores the weighted sum of the cached statistics, on `meteor`'s JVM when given) when
    `exact_meteor` and the result has them; a MeteorUnavailable then says Java failed. Otherwise it is the shifted
    per-image mean."""
    stats, order = result["stats"], order or units(result)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    # Cached arrays follow stats["image_ids"]; bring them into `order`, so that two results on the same
    # images sum in the same order and identical predictions give bit-identical resampled values.
    if "groups" in stats:  # each item takes its image's weight; the arrays keep their own order
        column = {unit: j for j, unit in enumerate(order)}
        weights = weights[:, [column[g] for g in stats["groups"]]]
        order = stats["image_ids"]
    position = {image_id: j for j, image_id in enumerate(stats["image_ids"])}
    perm = np.array([position[i] for i in order], dtype=np.int64)
    skip, out = _reasons(result), {}
    if BLEU[0] not in skip:
        bleu = _bleu_from_stats(weights, stats["bleu"], perm)
        out.update({key: bleu[:, n] for n, key in enumerate(BLEU)})
    out.update({key: _weighted_mean(weights, _per_image(result, key, order)) for key in _MEAN_KEYS
                if key not in skip})
    if METEOR in out and exact_meteor and stats.get("meteor"):
        with borrow(meteor) as scorer:
            out[METEOR] = scorer.score_weighted(weights, np.asarray(stats["meteor"], dtype=np.float64)[perm])
    elif METEOR in out:  # shift onto the Java corpus value (see the module docstring)
        out[METEOR] = out[METEOR] + (result["metrics"][METEOR] - np.nanmean(_per_image(result, METEOR, order)))
    if SACREBLEU not in skip:
        out[SACREBLEU] = _sacrebleu_from_stats(weights, stats["sacrebleu"]["segments"], perm)
    for key, (top, bottom) in RATIOS.items():
        if key not in skip:
            counts = stats["objects"]
            num = weights @ np.asarray(counts[top], dtype=np.float64)[perm]
            den = weights @ np.asarray(counts[bottom], dtype=np.float64)[perm]
            out[key] = np.divide(num, den, out=np.zeros_like(num), where=den > 0)  # nothing named: nothing invented
    return out


def bootstrap_distribution(result: dict, n_boot: int = 1000, seed: int = 0, order: list[str] | None = None,
                           meteor: MeteorScorer | None = None) -> dict:
    """Each resamplable metric over n_boot seeded image resamples: {key: array of n_boot values}. Exact METEOR
    runs on `meteor`'s JVM when given, else on one started and stopped here."""
    return _distribution(result, n_boot, seed, order, meteor)[0]


def _distribution(result: dict, n_boot: int, seed: int, order: list[str] | None = None,
                  meteor: MeteorScorer | None = None) -> tuple[dict, dict]:
    """bootstrap_distribution plus how METEOR's draws were made: {"method", "note"} (empty without METEOR)."""
    order = order or units(result)
    method = _meteor_method(result)
    try:
        with borrow(meteor) as scorer:  # one JVM for every block of resamples
            blocks = [metrics_at(result, w, order, exact_meteor=method.get("method") == EXACT, meteor=scorer)
                      for w in resample_weights(len(order), n_boot, seed)]
    except MeteorUnavailable as error:  # Java died since scoring: fall back (same seed, same resamples), say so
        method = _approximate(result, f"{error}")
        blocks = [metrics_at(result, w, order, exact_meteor=False) for w in resample_weights(len(order), n_boot, seed)]
    draws = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]} if blocks else {}
    return draws, method if METEOR in draws else {}


def _meteor_method(result: dict) -> dict:
    """Exact when the statistics are cached and Java is found; else the approximation, with the reason."""
    if result["metrics"].get(METEOR) is None:
        return {}
    if not result["stats"].get("meteor"):
        return _approximate(result, "the per-segment METEOR statistics were not cached")
    if shutil.which("java") is None:
        return _approximate(result, "Java not found on PATH")
    return {"method": EXACT, "note": "Java METEOR of each resample's summed per-segment statistics"}


def _approximate(result: dict, why: str) -> dict:
    mean = float(np.nanmean(_per_image(result, METEOR, result["stats"]["image_ids"])))
    return {"method": APPROXIMATE,
            "note": f"interval of the per-image mean ({mean:.4f}) shifted onto the Java tool's corpus METEOR "
                    f"(exact interval unavailable: {why})"}


def _interval(values, level: float) -> tuple[float | None, float | None]:
    """Percentile interval, ignoring resamples where the metric is undefined (e.g. no SPICE image drawn)."""
    values = values[~np.isnan(values)]
    if not values.size:
        return None, None
    alpha = 100 * (1 - level) / 2
    low, high = np.percentile(values, [alpha, 100 - alpha])
    return float(low), float(high)


def bootstrap_cis(result: dict, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                  meteor: MeteorScorer | None = None) -> dict:
    """Percentile CIs per metric: {key: {"value", "low", "high"}}, plus "note" where there is none. Exact METEOR
    runs on `meteor`'s JVM when given, else on one started and stopped here."""
    (draws, method), reasons = _distribution(result, n_boot, seed, meteor=meteor), _reasons(result)
    cis = {}
    for key in scored_keys(result):
        value = result["metrics"].get(key)
        if key in draws:
            low, high = _interval(draws[key], level)
            cis[key] = {"value": value, "low": low, "high": high} | (method if key == METEOR else {})
        else:
            cis[key] = {"value": value, "low": None, "high": None, "note": reasons.get(key, _NO_RESAMPLES)}
    return cis


def paired_comparison(result_a: dict, result_b: dict, n_boot: int = 1000, seed: int = 0,
                      level: float = 0.95, meteor: MeteorScorer | None = None) -> dict:
    """A minus B per metric with a paired-bootstrap CI and the share of resamples where A scores better (higher;
    lower for LOWER_IS_BETTER metrics such as CHAIR). Exact
    METEOR runs on `meteor`'s JVM when given, else on one started and stopped here."""
    order = units(result_a)
    only_a = sorted(set(order) - set(units(result_b)))
    only_b = sorted(set(units(result_b)) - set(order))
    if only_a or only_b:
        raise ValueError(
            f"paired comparison needs the same images: {len(only_a)} only in A (e.g. {only_a[:5]}), "
            f"{len(only_b)} only in B (e.g. {only_b[:5]})"
        )
    with borrow(meteor) as scorer:  # one JVM for both; the same seed and order give the same resamples
        draws_a, meteor_a = _distribution(result_a, n_boot, seed, order, scorer)
        draws_b, meteor_b = _distribution(result_b, n_boot, seed, order, scorer)
    reasons = _reasons(result_a) | _reasons(result_b)
    out = {}
    for key in scored_keys(result_a, result_b):
        a, b = result_a["metrics"].get(key), result_b["metrics"].get(key)
        row = {"a": a, "b": b, "diff": None if a is None or b is None else a - b}
        if key in draws_a and key in draws_b:
            diffs = draws_a[key] - draws_b[key]
            low, high = _interval(diffs, level)
            kept = diffs[~np.isnan(diffs)]
            wins = kept < 0 if key in LOWER_IS_BETTER else kept > 0  # a lower CHAIR or repeat share is the win
            row |= {"low": low, "high": high, "p_a_wins": float(wins.mean()) if wins.size else None}
            if key == METEOR:
                row["method"] = EXACT if meteor_a.get("method") == meteor_b.get("method") == EXACT else APPROXIMATE
        else:
            row |= {"low": None, "high": None, "p_a_wins": None, "note": reasons.get(key, _NO_RESAMPLES)}
        out[key] = row
    return out
