"""COCO caption metrics against all references: pycocoevalcap + sacreBLEU, per-image scores, fallbacks."""

from __future__ import annotations

import contextlib
import io
import random
import re
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice.spice import Spice
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer
from sacrebleu.metrics import BLEU as SacreBLEU

BLEU = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
METEOR = "METEOR"
ROUGE_L = "ROUGE_L"
CIDER = "CIDEr"
SPICE = "SPICE"
SACREBLEU = "sacreBLEU"
METRIC_KEYS = (*BLEU, METEOR, ROUGE_L, CIDER, SPICE, SACREBLEU)
SCALE = "pycocoevalcap metrics on 0-1; sacreBLEU on 0-100"
METRIC_MODULE_PATH = str(Path(__file__).resolve().parent / "metrics" / "coco_caption")
SPICE_DOWNLOAD_TIMEOUT_S = 60  # bounds each socket operation of SPICE's first-use CoreNLP download

# pycocoevalcap drops these after lower-casing, so its "-lrb-" etc. survive: the mirror keeps them too.
PTB_PUNCTUATIONS = frozenset(PUNCTUATIONS)
_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_PTB_SEPARATE = re.compile(r'(\.\.\.|--|[!?]+|[()\[\]{}";$%`]|(?<!\d)[,:]|[,:](?!\d))')
_PTB_CONTRACTION = re.compile(r"^(.+?)(n't|'s|'re|'ll|'ve|'d|'m)$")
_PTB_SPECIAL = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"], "wanna": ["wan", "na"]}
_PTB_ABBREVIATION = re.compile(r"([a-z]\.)+|(mr|mrs|ms|dr|st|jr|sr|vs|etc|mt)\.")

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


def python_ptb_tokenize(caption: str) -> str:
    """Pure-Python stand-in for pycocoevalcap's PTBTokenizer + punctuation removal (common caption cases)."""
    words = []
    for token in _PTB_SEPARATE.sub(r" \1 ", caption.lower()).split():
        words.extend(_split_ptb_word(token))
    return " ".join(_PTB_BRACKETS.get(w, w) for w in words if w not in PTB_PUNCTUATIONS and w != '"')


def _split_ptb_word(token: str) -> list[str]:
    """Split one whitespace token the way PTB does: final period, edge quotes, clitics."""
    if token in _PTB_SPECIAL:
        return _PTB_SPECIAL[token]
    if len(token) > 1 and token.endswith(".") and not _PTB_ABBREVIATION.fullmatch(token):
        return [*_split_ptb_word(token[:-1]), "."]
    if len(token) > 1 and token.endswith("'"):
        return [*_split_ptb_word(token[:-1]), "'"]
    if len(token) > 1 and token.startswith("'") and not _PTB_CONTRACTION.match("x" + token):
        return ["'", *_split_ptb_word(token[1:])]
    match = _PTB_CONTRACTION.match(token)
    return [match.group(1), match.group(2)] if match else [token]


class MetricUnavailable(RuntimeError):
    """A metric cannot run here; its message is the reason shown to the user."""


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, prefixed by its type unless it is our own reason."""
    text = (str(error).strip().splitlines() or [""])[0]
    return text if isinstance(error, MetricUnavailable) else f"{type(error).__name__}: {text}".rstrip(": ")


def _check_inputs(predictions: dict, references: dict) -> list[str]:
    """Validate the two dicts and return their keys in a fixed order (sorted as strings)."""
    missing, extra = sorted(set(predictions) - set(references)), sorted(set(references) - set(predictions))
    if missing or extra:
        raise ValueError(
            f"predictions and references must have the same image ids: {len(missing)} predicted ids lack "
            f"references (e.g. {missing[:5]}), {len(extra)} referenced ids lack a prediction (e.g. {extra[:5]})"
        )
    if not predictions:
        raise ValueError("no images to score")
    bad = [k for k, refs in references.items() if isinstance(refs, str) or len(refs) == 0]
    if bad:
        raise ValueError(f"each image needs a list of >= 1 reference captions; not so for e.g. {bad[:5]}")
    if any(not isinstance(p, str) for p in predictions.values()):
        raise ValueError("each prediction must be one caption string")
    if len({str(k) for k in predictions}) < len(predictions):
        raise ValueError("image ids must stay distinct as strings (e.g. not both 1 and '1')")
    return sorted(predictions, key=str)  # string order: the order SPICE and JSON round-trips use


def _tokenize(captions: dict[str, list[str]]) -> tuple[dict[str, list[str]], str]:
    """PTB-tokenise with pycocoevalcap's Java tokenizer when it works, else with the Python mirror."""
    if shutil.which("java") is None:
        reason = "Java not found: no `java` on PATH"
    else:
        try:
            tokens = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
            # The wrapper never checks Java's exit status: a dead JVM shows up only as missing lines.
            if all(len(tokens.get(k, ())) == len(v) for k, v in captions.items()):
                return tokens, "ptb"
            reason = "Java PTB tokenizer returned too few lines"
        except Exception as error:  # noqa: BLE001 - any failure falls back, and the reason is recorded
            reason = f"Java PTB tokenizer failed: {_first_line(error)}"
    return {k: [python_ptb_tokenize(c) for c in v] for k, v in captions.items()}, f"python ({reason})"


def _bleu(ids, gts, res):
    """pycocoevalcap BLEU-1..4 ('closest' ref length) plus the per-image statistics it aggregates."""
    scorer = BleuScorer(n=4)
    for i in ids:
        scorer += (res[i][0], gts[i])
    corpus, per_image = scorer.compute_score(option="closest", verbose=0)  # exactly what Bleu() does
    stats = {
        "testlen": [c["testlen"] for c in scorer.ctest],
        "reflen": [scorer._single_reflen(c["reflen"], "closest", c["testlen"]) for c in scorer.ctest],
        "guess": [list(c["guess"]) for c in scorer.ctest],
        "correct": [list(c["correct"]) for c in scorer.ctest],
    }
    return corpus, per_image, stats


def _meteor(gts, res):
    """pycocoevalcap METEOR via its Java process, which is always shut down afterwards."""
    scorer = Meteor()
    process = scorer.meteor_p
    try:
        return scorer.compute_score(gts, res)
    except Exception as error:
        process.kill()
        java_says = (process.stderr.read().decode(errors="replace").strip().splitlines() or [""])[0]
        detail = f" (java: {java_says})" if java_says else ""
        raise MetricUnavailable(f"METEOR's Java process failed: {_first_line(error)}{detail}") from error
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            with contextlib.suppress(OSError):  # a dead JVM leaves unflushed input: BrokenPipeError
                stream.close()
        # A failed compute_score leaves its lock held, and Meteor.__del__ would then block forever.
        scorer.lock = threading.Lock()


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """Temporarily bound blocking socket calls (urlretrieve has no timeout argument)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _spice(ids, gts, res):
    """pycocoevalcap SPICE on the given ids; raises with a one-line reason when it cannot run."""
    try:
        with _socket_timeout(SPICE_DOWNLOAD_TIMEOUT_S):
            scorer = Spice()  # downloads Stanford CoreNLP on first use
    except Exception as error:
        raise MetricUnavailable(
            f"needs Stanford CoreNLP 3.6.0, which it downloads on first use: {_first_line(error)}"
        ) from error
    _, scores = scorer.compute_score({i: gts[i] for i in ids}, {i: res[i] for i in ids})
    by_id = dict(zip(sorted(ids), scores))  # Spice returns its scores in sorted id order
    return [by_id[i]["All"]["f"] for i in ids]


def _sacrebleu(ids, predictions, references):
    """sacreBLEU corpus score over all references, and its per-segment sufficient statistics."""
    bleu = SacreBLEU(lowercase=True)  # generated captions are lower-case; references usually are not
    hyps = [predictions[i] for i in ids]
    width = max(len(references[i]) for i in ids)
    # One stream per reference slot; None (never "") pads images with fewer references: sacrebleu drops
    # None, while "" would count as a zero-length reference and distort the closest reference length.
    streams = [[references[i][j] if j < len(references[i]) else None for i in ids] for j in range(width)]
    score = bleu.corpus_score(hyps, streams)
    try:
        segments = [list(map(int, s)) for s in bleu._extract_corpus_statistics(hyps, streams)]
    except Exception:  # noqa: BLE001 - private API: without it only the bootstrap CI is lost
        segments = None
    return score.score, {"signature": str(bleu.get_signature()), "segments": segments}


def _clean(caption: str) -> str:
    """Collapse whitespace: a newline inside a caption would shift the Java tools' line-by-line output."""
    return " ".join(caption.split())


def _attempt(unavailable: dict, keys, fn):
    """Run one scorer; on failure record its one-line reason under each of its metric keys."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001 - a failing metric is reported, never fatal to the others
        unavailable.update(dict.fromkeys(keys, _first_line(error)))
        return None


def score_captions(predictions, references, *, do_spice=True, spice_subsample=1500, seed=0) -> dict:
    """Score one caption per image against all its references; every metric present or null with a reason."""
    keys = _check_inputs(predictions, references)
    ids = [str(k) for k in keys]
    preds = {str(k): _clean(predictions[k]) for k in keys}
    refs = {str(k): [_clean(r) for r in references[k]] for k in keys}
    metrics: dict = dict.fromkeys(METRIC_KEYS)
    unavailable: dict = {}
    per_image: dict = {i: {} for i in ids}
    stats: dict = {"image_ids": ids}
    java = shutil.which("java") is not None
    no_java = "needs Java, which was not found on PATH"
    spice_images = None

    def record(key, subset, corpus, values):
        metrics[key] = float(corpus)
        for i, value in zip(subset, values):
            per_image[i][key] = None if np.isnan(float(value)) else float(value)  # NaN is not strict JSON

    with contextlib.redirect_stdout(io.StringIO()):  # pycocoevalcap prints progress; errors still raise
        tokens, tokenizer = _tokenize({i: [preds[i], *refs[i]] for i in ids})
        res, gts = {i: tokens[i][:1] for i in ids}, {i: tokens[i][1:] for i in ids}
        if (bleu := _attempt(unavailable, BLEU, lambda: _bleu(ids, gts, res))) is not None:
            stats["bleu"] = bleu[2]
            for n, key in enumerate(BLEU):
                record(key, ids, bleu[0][n], bleu[1][n])
        if not java:
            unavailable[METEOR] = no_java
        elif (meteor := _attempt(unavailable, [METEOR], lambda: _meteor(gts, res))) is not None:
            record(METEOR, ids, *meteor)
        for key, scorer in ((ROUGE_L, Rouge), (CIDER, Cider)):
            if (out := _attempt(unavailable, [key], lambda s=scorer: s().compute_score(gts, res))) is not None:
                record(key, ids, *out)
        if not do_spice or not java:
            unavailable[SPICE] = "disabled (do_spice=False)" if not do_spice else no_java
        else:
            subset = _spice_subset(ids, spice_subsample, seed)
            spice = _attempt(unavailable, [SPICE], lambda: np.asarray(_spice(subset, gts, res), dtype=float))
            if spice is not None and np.isnan(spice).all():
                unavailable[SPICE] = "SPICE returned no per-image scores"
            elif spice is not None:
                spice_images = len(subset)
                record(SPICE, subset, np.nanmean(spice), spice)  # nanmean: one unparsable image is not fatal
        if (sacre := _attempt(unavailable, [SACREBLEU], lambda: _sacrebleu(ids, preds, refs))) is not None:
            metrics[SACREBLEU] = float(sacre[0])
            stats["sacrebleu"] = sacre[1]
    counts = [len(refs[i]) for i in ids]
    return {
        "metrics": metrics,
        "unavailable": unavailable,
        "per_image": per_image,
        "scale": SCALE,
        "tokenizer": tokenizer,
        "n_images": len(ids),
        "refs_per_image": {"min": min(counts), "mean": float(np.mean(counts)), "max": max(counts)},
        "spice_images": spice_images,
        "stats": stats,
    }


def quick_scores(predictions: dict, references: dict) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr only (no METEOR/SPICE JVM): cheap enough for every validation pass."""
    keys = _check_inputs(predictions, references)
    ids = [str(k) for k in keys]
    tokens, _ = _tokenize({str(k): [_clean(predictions[k]), *map(_clean, references[k])] for k in keys})
    res, gts = {i: tokens[i][:1] for i in ids}, {i: tokens[i][1:] for i in ids}
    scores = dict(zip(BLEU, map(float, _bleu(ids, gts, res)[0])))
    return scores | {ROUGE_L: float(Rouge().compute_score(gts, res)[0]), CIDER: float(Cider().compute_score(gts, res)[0])}


def _spice_subset(ids: list[str], size: int | None, seed: int) -> list[str]:
    """A seeded subsample of images for SPICE, which is slow (all images when size is None or larger)."""
    if size is None or size >= len(ids):
        return list(ids)
    return sorted(random.Random(seed).sample(ids, size))


def metrics_rows(results: dict[str, dict]) -> list[dict]:
    """One row per named result: images, mean references per image and every metric (None if unavailable)."""
    return [
        {"model": name, "n_images": r["n_images"], "refs_per_image": r["refs_per_image"]["mean"]}
        | {key: r["metrics"].get(key) for key in METRIC_KEYS}
        for name, r in results.items()
    ]


def format_metrics_table(results: dict[str, dict]) -> str:
    """Plain-text table of several results side by side, with the scale and why metrics are missing."""
    rows = metrics_rows(results)
    columns = ["model", "n_images", "refs_per_image", *METRIC_KEYS]
    cells = [columns] + [[_format_cell(column, row[column]) for column in columns] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) if j else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.append(f"scale: {SCALE}")
    for name, result in results.items():
        lines += [f"{key} unavailable for {name}: {why}" for key, why in result.get("unavailable", {}).items()]
    return "\n".join(lines)


def _format_cell(column: str, value) -> str:
    """Format one table cell; missing metrics read n/a."""
    if value is None:
        return "n/a"
    if column in ("model", "n_images"):
        return str(value)
    return f"{value:.2f}" if column in (SACREBLEU, "refs_per_image") else f"{value:.4f}"


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
