"""Error-analysis tables for notebook 04: rankings, lengths, word usage, copying, slices, sample attributes.

Everything takes prediction rows as written by evaluation ({"image_id", "prediction", "references", "scores"})
and returns plain lists and dicts, so the tables go straight into error_analysis.json.
"""
from __future__ import annotations

import statistics
from collections import Counter

import numpy as np

from .. import runs
from ..data.sample import ATTRIBUTES, parse_attributes, sample_attributes  # noqa: F401 - 04 uses them
from ..schema import STOP_WORDS, words
from ..scoring.objects import OBJECT_KEYS, match_objects
from ..scoring.degeneration import copy_rate, normalise_caption, repeated_ngrams  # noqa: F401 - 04 calls them here
from ..scoring.hallucination import most_hallucinated

MADE_BY = "03_evaluate"
ATTRIBUTE_KEYS = ("count", "shape", "colour", "size", "position")


def load_predictions(run) -> tuple[list[dict], list[dict] | None]:
    """(fine-tuned rows, baseline rows or None) from a run directory's prediction files."""
    run = run if isinstance(run, runs.RunDir) else runs.RunDir(run)
    rows = runs.read_jsonl(run.require(runs.PREDICTIONS, MADE_BY, "predictions of the fine-tuned model"))
    baseline = run / runs.BASELINE_PREDICTIONS
    return rows, (runs.read_jsonl(baseline) if baseline.exists() else None)


def scored(rows: list[dict], key: str = "CIDEr") -> list[dict]:
    """The rows that have a per-image `key` score; KeyError naming the available keys if none has one."""
    out = [r for r in rows if r.get("scores", {}).get(key) is not None]
    if rows and not out:
        available = sorted({k for r in rows for k in r.get("scores", {})})
        raise KeyError(f"no row has a per-image {key!r} score; available: {available}")
    return out


def rank_by_score(rows: list[dict], key: str = "CIDEr") -> list[dict]:
    """Rows with a `key` score, worst first (ties by image id, so the order is stable)."""
    return sorted(scored(rows, key), key=lambda r: (r["scores"][key], str(r["image_id"])))


def worst_best(rows: list[dict], k: int, key: str = "CIDEr") -> tuple[list[dict], list[dict]]:
    """(the k lowest-scoring rows, worst first; the k highest, best first)."""
    ranked = rank_by_score(rows, key)
    return ranked[:k], ranked[::-1][:k]


def score_summary(rows: list[dict], key: str = "CIDEr") -> dict:
    """Mean, quartiles and the share of zero scores of the per-image `key` scores."""
    values = np.array([r["scores"][key] for r in scored(rows, key)], dtype=float)
    if not values.size:
        return {"key": key, "n": 0}
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"key": key, "n": int(values.size), "mean": float(values.mean()), "q1": float(q1),
            "median": float(median), "q3": float(q3), "min": float(values.min()), "max": float(values.max()),
            "share_zero": float((values == 0).mean())}


def length_table(rows: list[dict]) -> dict:
    """Predicted vs reference caption lengths in words, and how often a prediction is shorter than every reference."""
    pred = [len(words(r["prediction"])) for r in rows]
    refs = [[len(words(c)) for c in r["references"]] for r in rows]
    n = max(1, len(rows))

    def describe(values):
        if not values:
            return {"mean": None, "median": None, "min": None, "max": None}
        return {"mean": statistics.fmean(values), "median": statistics.median(values),
                "min": min(values), "max": max(values)}

    return {"n_images": len(rows), "prediction_words": describe(pred),
            "reference_words": describe([x for r in refs for x in r]),
            "shorter_than_shortest_reference": sum(p < min(r) for p, r in zip(pred, refs)) / n,
            "longer_than_longest_reference": sum(p > max(r) for p, r in zip(pred, refs)) / n}


def word_usage(rows: list[dict], top: int = 15) -> dict:
    """Content words the model over- and under-uses: share of predictions vs share of references containing each.

    Rates are per caption (a word counted once per caption); counts are the numbers of captions containing it.
    """
    preds = Counter(w for r in rows for w in set(words(r["prediction"])) - STOP_WORDS)
    refs = Counter(w for r in rows for c in r["references"] for w in set(words(c)) - STOP_WORDS)
    n_pred = max(1, len(rows))
    n_ref = max(1, sum(len(r["references"]) for r in rows))
    table = [{"word": w, "prediction_rate": preds[w] / n_pred, "reference_rate": refs[w] / n_ref,
              "difference": preds[w] / n_pred - refs[w] / n_ref,
              "prediction_count": preds[w], "reference_count": refs[w]} for w in sorted(preds.keys() | refs.keys())]
    table.sort(key=lambda t: (-t["difference"], t["word"]))
    return {"overused": [t for t in table if t["difference"] > 0][:top],
            "underused": [t for t in reversed(table) if t["difference"] < 0][:top]}


def hallucinated(rows: list[dict], k: int) -> list[dict]:
    """The k captions naming the most objects that are not in the image (03 records them where the data says what
    is there), each with a `flag` line naming them."""
    return [{**r, "flag": "not there: " + ", ".join(r["invented"])} for r in most_hallucinated(rows, k)]


def repeating(rows: list[dict], k: int) -> list[dict]:
    """The k captions repeating the most word bigrams or trigrams ("a hat on top of a hat"), each with a `flag` line
    naming them; ties by image id."""
    found = [(r, repeated_ngrams(r["prediction"])) for r in rows]
    found = sorted((x for x in found if x[1]), key=lambda x: (-len(x[1]), str(x[0]["image_id"])))
    return [{**r, "flag": "repeats: " + ", ".join(f"'{g}'" for g in grams)} for r, grams in found[:k]]


def bootstrap_mean_ci(values, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple:
    """Percentile CI of the mean over n_boot seeded resamples (one vectorised draw); (None, None) if n_boot=0."""
    values = np.asarray(values, dtype=float)
    if n_boot <= 0 or not values.size:
        return None, None
    draws = values[np.random.default_rng(seed).integers(0, values.size, (n_boot, values.size))].mean(axis=1)
    alpha = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [alpha, 100 - alpha])
    return float(low), float(high)


def slice_scores(rows: list[dict], min_size: int = 20, key: str = "CIDEr", vocabulary=None,
                 n_boot: int = 1000, seed: int = 0, examples: int = 3) -> list[dict]:
    """Mean per-image score of each slice "images whose references mention <word>", worst first.

    Slices are the content words (not STOP_WORDS, at least two letters) of the references that occur in at least
    min_size images, or only the words of `vocabulary`. Each slice has its size n, its mean with a seeded bootstrap
    95% CI over its images, the gap to the mean over all scored images, and its lowest-scoring image ids.
    """
    rows = scored(rows, key)
    if not rows:
        return []
    overall = statistics.fmean(r["scores"][key] for r in rows)
    members: dict[str, list[dict]] = {}
    for r in rows:
        for w in {w for c in r["references"] for w in words(c)}:
            members.setdefault(w, []).append(r)
    wanted = {w.lower() for w in vocabulary} if vocabulary is not None else None
    out = []
    for word, group in members.items():
        if len(group) < min_size or (wanted is not None and word not in wanted):
            continue
        if wanted is None and (word in STOP_WORDS or len(word) < 2 or not word.isalpha()):
            continue
        values = [r["scores"][key] for r in group]
        low, high = bootstrap_mean_ci(values, n_boot, seed)
        mean = statistics.fmean(values)
        worst = sorted(group, key=lambda r: (r["scores"][key], str(r["image_id"])))[:examples]
        out.append({"slice": word, "n": len(group), "mean": mean, "low": low, "high": high, "gap": mean - overall,
                    "examples": [r["image_id"] for r in worst]})
    return sorted(out, key=lambda s: (s["mean"], s["slice"]))


def worst_slices(slices: list[dict], k: int = 5) -> list[dict]:
    """The k slices with the lowest mean score (each carries its example image ids)."""
    return sorted(slices, key=lambda s: (s["mean"], s["slice"]))[:k]


def attribute_accuracy(rows: list[dict], split) -> list[dict] | None:
    """Per-attribute accuracy of predicted captions on the synthetic sample, overall and for clean vs hard images.

    Ground truth comes from the split's `attributes` column; predictions are parsed with sample.parse_attributes.
    Each image's true objects are matched one-to-one to the objects its prediction describes, choosing the
    matching that agrees on the most attribute values (shape, colour, size, position); an object the caption
    leaves out matches nothing. Then:
      - shape / colour / size / position: share of true objects whose matched predicted object has the same value;
        the matching binds attributes to objects, so colours swapped between two shapes count as wrong;
      - count: share of images whose predicted count (the number word, else the shapes named) is right;
      - all: share of images with the count and every attribute of every object right, and no other shape
        described (so these images name nothing that is not there: their CHAIR_s is 0).
    Returns None when the split has no `attributes` column in the sample's form (only the sample has one; a
    user's own column of that name, in another form, is not mistaken for it).
    """
    truth = sample_attributes(split)
    if truth is None:
        return None
    missing = [r["image_id"] for r in rows if str(r["image_id"]) not in truth]
    if missing:
        raise ValueError(f"{len(missing)} predicted image id(s) are not in the split, e.g. {missing[:5]}")
    groups = {"overall": [], "clean": [], "hard": []}
    for r in rows:
        gt = truth[str(r["image_id"])]
        result = _judge(gt, parse_attributes(r["prediction"]))
        groups["overall"].append(result)
        groups["hard" if gt.get("hard") else "clean"].append(result)
    return [{"images": name, **_accuracy(results)} for name, results in groups.items()]


def fully_right(rows: list[dict], split) -> set[str] | None:
    """The image ids whose caption has the count and every attribute of every object right and describes no other
    shape (attribute_accuracy's "all"); None without the sample's attributes."""
    truth = sample_attributes(split)
    if truth is None:
        return None
    out = set()
    for r in rows:
        if _all_right(_judge(truth[str(r["image_id"])], parse_attributes(r["prediction"]))):
            out.add(str(r["image_id"]))
    return out


def _judge(gt: dict, pred: dict) -> dict:
    """Per-object attribute hits of one caption under the best one-to-one matching (shared with the sample's
    CHAIR), whether the count is right, and how many described shapes matched nothing."""
    truth, said = gt["objects"], pred["objects"]
    best = match_objects(truth, said)
    hits = {k: [j is not None and said[j].get(k) == t[k] for t, j in zip(truth, best)] for k in OBJECT_KEYS}
    return {"count": pred["count"] == gt["count"], "extra": len(said) - sum(j is not None for j in best), **hits}


def _all_right(judged: dict) -> bool:
    """The count and every attribute of every object right, and no other shape described."""
    return bool(judged["count"] and not judged["extra"] and all(all(judged[k]) for k in OBJECT_KEYS))


def _accuracy(results: list[dict]) -> dict:
    out = {"n_images": len(results)}
    if not results:
        return out | dict.fromkeys((*ATTRIBUTE_KEYS, "all"))
    out["count"] = statistics.fmean(r["count"] for r in results)
    for k in OBJECT_KEYS:
        hits = [h for r in results for h in r[k]]
        out[k] = statistics.fmean(hits) if hits else None
    out["all"] = statistics.fmean(_all_right(r) for r in results)
    return out


def disagreements(run, other_run, k: int, key: str = "CIDEr") -> list[dict]:
    """The k test images where two evaluated runs' captions score most differently on `key`, largest gap first:
    this run's row with `compared` ({label, prediction, score} of the other run). Runs on other test images or
    references are refused in one line (RunsNotComparable), as blipnb compare refuses them."""
    from ..evaluation.compare import check_comparable, read_run, run_labels

    labels = run_labels([run, other_run])
    check_comparable([read_run(path, label) for path, label in zip((run, other_run), labels)])
    rows, _ = load_predictions(run)
    theirs = {str(r["image_id"]): r for r in load_predictions(other_run)[0]}
    out = []
    for r in scored(rows, key):
        other = theirs[str(r["image_id"])]
        score = other.get("scores", {}).get(key)
        if score is not None:
            out.append({**r, "compared": {"label": labels[1], "prediction": other["prediction"], "score": score}})
    out.sort(key=lambda r: -abs(r["scores"][key] - r["compared"]["score"]))
    return out[:k]

