"""COCO caption metrics against all references: pycocoevalcap + sacreBLEU, per-image scores, fallbacks."""

from __future__ import annotations

import contextlib
import io
import random
import shutil
import socket
import subprocess
import types
from pathlib import Path

import numpy as np
from pycocoevalcap.bleu.bleu_scorer import BleuScorer
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.spice.spice import Spice
from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from sacrebleu.metrics import BLEU as SacreBLEU

from ..schema import BLEU, CIDER, METEOR, NGRAM_KEYS, ROUGE_L, SACREBLEU, SCALE, SPICE
from .meteor import MeteorScorer, MeteorUnavailable, borrow
from .ptb import python_ptb_tokenize

METRIC_MODULE_PATH = str(Path(__file__).resolve().parent / "evaluate_module" / "coco_caption")
SPICE_DOWNLOAD_TIMEOUT_S = 60  # bounds each socket operation of SPICE's first-use CoreNLP download

class MetricUnavailable(RuntimeError):
    """A metric cannot run here; its message is the reason shown to the user."""


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, prefixed by its type unless it is our own reason."""
    text = (str(error).strip().splitlines() or [""])[0]
    own = isinstance(error, (MetricUnavailable, MeteorUnavailable))
    return text if own else f"{type(error).__name__}: {text}".rstrip(": ")


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


@contextlib.contextmanager
def _ptb_java_stderr(said: list[str]):
    """pycocoevalcap starts the PTB tokenizer's JVM on our stderr, which then prints "PTBTokenizer tokenized N tokens
    at M tokens per second." on every call: red text in a notebook. Pipe it into `said` instead (kept for the
    reason when tokenizing fails), for that one module only."""

    class Popen(subprocess.Popen):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "stderr": subprocess.PIPE})

        def communicate(self, *args, **kwargs):
            out, err = super().communicate(*args, **kwargs)
            said.extend((err or b"").decode(errors="replace").splitlines())
            return out, err

    original = ptbtokenizer.subprocess
    ptbtokenizer.subprocess = types.SimpleNamespace(Popen=Popen, PIPE=subprocess.PIPE)
    try:
        yield
    finally:
        ptbtokenizer.subprocess = original


def _tokenize(captions: dict[str, list[str]]) -> tuple[dict[str, list[str]], str]:
    """PTB-tokenise with pycocoevalcap's Java tokenizer when it works, else with the Python mirror."""
    if shutil.which("java") is None:
        reason = "Java not found: no `java` on PATH"
    else:
        said: list[str] = []
        try:
            with _ptb_java_stderr(said):
                tokens = PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})
            # The wrapper never checks Java's exit status: a dead JVM shows up only as missing lines.
            if all(len(tokens.get(k, ())) == len(v) for k, v in captions.items()):
                return tokens, "ptb"
            reason = "Java PTB tokenizer returned too few lines" + (f" (java: {said[0]})" if said else "")
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


def _meteor(ids, gts, res, meteor: MeteorScorer | None = None):
    """pycocoevalcap METEOR (its jar and arguments): corpus, per-image scores, and each image's statistics,
    which the bootstrap sums per resample for exact intervals (see scoring.meteor). On `meteor`'s JVM when given,
    else on one started and stopped here."""
    with borrow(meteor) as scorer:
        stats = scorer.segment_stats([res[i][0] for i in ids], [gts[i] for i in ids])
        per_image, corpus = scorer.evaluate(stats)
    return corpus, per_image, stats


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


def score_captions(predictions, references, *, do_spice=True, spice_subsample=1500, seed=0,
                   meteor: MeteorScorer | None = None) -> dict:
    """Score one caption per image against all its references; every metric present or null with a reason.
    METEOR runs on `meteor`'s JVM when given (its owner closes it), else on one started and stopped here."""
    keys = _check_inputs(predictions, references)
    ids = [str(k) for k in keys]
    preds = {str(k): _clean(predictions[k]) for k in keys}
    refs = {str(k): [_clean(r) for r in references[k]] for k in keys}
    metrics: dict = dict.fromkeys(NGRAM_KEYS)
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
        elif (meteor := _attempt(unavailable, [METEOR], lambda: _meteor(ids, gts, res, meteor))) is not None:
            record(METEOR, ids, meteor[0], meteor[1])
            stats["meteor"] = meteor[2]
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
        "sacrebleu_signature": stats.get("sacrebleu", {}).get("signature"),
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
