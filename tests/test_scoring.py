"""score_captions against pycocoevalcap itself, its fallbacks without Java or SPICE, the table and sanity checks."""

import json
import shutil
from pathlib import Path

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from sacrebleu.metrics import BLEU as SacreBLEU

from blipnb.schema import BLEU, CIDER, METEOR, METRIC_KEYS, NGRAM_KEYS, ROUGE_L, SACREBLEU, SCALE, SPICE
from blipnb.scoring import coco as scoring
from blipnb.scoring.ptb import python_ptb_tokenize
from blipnb.scoring import (
    METRIC_MODULE_PATH,
    quick_scores,
    sanity_check,
    score_captions,
)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")

# Ordinary captions, ragged reference counts (2-5), one near-copy, one miss, one one-word prediction.
PREDICTIONS = {
    "img1": "A dog runs across the grass.",
    "img2": "Two men are playing cards at a table",
    "img3": "a black cat sitting on a mat",
    "img4": "a red car",
    "img5": "A boy, wearing a red shirt, jumps into the lake!",
    "img6": "bicycle",
}
REFERENCES = {
    "img1": ["A brown dog is running on the grass.", "A dog runs through a field.", "The dog runs."],
    "img2": ["Two men (in hats) play poker!", "Men play cards at a table.", "Two people playing a card game"],
    "img3": ["A black cat sits on a mat.", "A cat on a rug.", "The cat's asleep on a mat", "a kitten", "cat"],
    "img4": ["A red car parked on the street.", "a car near the curb"],
    "img5": ["A boy in a red shirt jumps off a dock into the lake.", "A child leaps into the water"],
    "img6": ["A man rides his bicycle down a busy city street."],
}


@pytest.fixture(scope="module")
def scored(meteor):
    """One real scoring run (Java PTB + METEOR) on the session's JVM, shared: a JVM start dominates the time."""
    if shutil.which("java") is None:
        pytest.skip("needs Java")
    return score_captions(PREDICTIONS, REFERENCES, do_spice=False, meteor=meteor)


@pytest.fixture(scope="module")
def ptb_inputs():
    """The pycocoevalcap inputs built the standard way: PTB-tokenised gts and res."""
    if shutil.which("java") is None:
        pytest.skip("needs Java")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": v}] for k, v in PREDICTIONS.items()})
    return gts, res


def test_matches_pycocoevalcap_called_directly(scored, ptb_inputs):
    """Corpus and per-image BLEU, METEOR, ROUGE-L and CIDEr equal pycocoevalcap's own scorers."""
    gts, res = ptb_inputs
    ids = sorted(gts)
    bleu, bleu_per_image = Bleu(4).compute_score(gts, res, verbose=0)
    assert [scored["metrics"][k] for k in BLEU] == pytest.approx(bleu, rel=1e-12)
    for n, key in enumerate(BLEU):
        assert [scored["per_image"][i][key] for i in ids] == pytest.approx(bleu_per_image[n], rel=1e-12)
    for key, scorer in ((CIDER, Cider()), (ROUGE_L, Rouge()), (METEOR, Meteor())):
        corpus, per_image = scorer.compute_score(gts, res)
        assert scored["metrics"][key] == pytest.approx(corpus, rel=1e-9), key
        assert [scored["per_image"][i][key] for i in ids] == pytest.approx(list(per_image), rel=1e-9), key
    assert 0 < scored["metrics"][BLEU[3]] < scored["metrics"][BLEU[0]] < 1


def test_quick_scores_match_the_full_scoring(scored):
    """The training-time subset (no METEOR/SPICE/sacreBLEU) gives the same numbers as score_captions."""
    quick = quick_scores(PREDICTIONS, REFERENCES)
    assert set(quick) == {*BLEU, ROUGE_L, CIDER}
    for key, value in quick.items():
        assert value == pytest.approx(scored["metrics"][key], rel=1e-12), key


def test_result_is_strict_json_and_self_describing(scored):
    """Result round-trips through strict JSON and records tokenizer, scale, sizes and missing metrics."""
    assert json.loads(json.dumps(scored, allow_nan=False)) == scored
    assert set(scored["metrics"]) == set(NGRAM_KEYS)
    assert scored["tokenizer"] == "ptb" and scored["scale"] == SCALE
    assert scored["n_images"] == 6 and sorted(scored["per_image"]) == sorted(PREDICTIONS)
    assert scored["refs_per_image"] == {"min": 1, "mean": pytest.approx(16 / 6), "max": 5}
    assert scored["metrics"][SPICE] is None and scored["spice_images"] is None
    assert scored["unavailable"] == {SPICE: "disabled (do_spice=False)"}


def test_sacrebleu_uses_all_ragged_references(scored):
    """sacreBLEU equals the sum of per-image statistics over each image's own references ('' padding would not)."""
    bleu, ids = SacreBLEU(lowercase=True), sorted(PREDICTIONS)
    sentences = [bleu.sentence_score(PREDICTIONS[i], REFERENCES[i]) for i in ids]
    expected = SacreBLEU.compute_bleu(
        correct=[sum(s.counts[n] for s in sentences) for n in range(4)],
        total=[sum(s.totals[n] for s in sentences) for n in range(4)],
        sys_len=sum(s.sys_len for s in sentences), ref_len=sum(s.ref_len for s in sentences),
        smooth_method="exp",
    ).score
    assert scored["metrics"][SACREBLEU] == pytest.approx(expected, rel=1e-12)
    padded = [[REFERENCES[i][j] if j < len(REFERENCES[i]) else "" for i in ids] for j in range(5)]
    wrong = SacreBLEU(lowercase=True).corpus_score([PREDICTIONS[i] for i in ids], padded).score
    assert abs(wrong - expected) > 0.1  # the fixture really has a case where the padding matters


def test_rejects_mismatched_or_malformed_inputs():
    """Different id sets name the ids; a bare string as references is refused."""
    with pytest.raises(ValueError, match="img9"):
        score_captions({**PREDICTIONS, "img9": "x"}, REFERENCES, do_spice=False)
    with pytest.raises(ValueError, match="img6"):
        score_captions({k: v for k, v in PREDICTIONS.items() if k != "img6"}, REFERENCES, do_spice=False)
    with pytest.raises(ValueError, match="list of >= 1"):
        score_captions({"a": "a dog"}, {"a": "a dog runs"}, do_spice=False)


def test_without_java_falls_back_and_keeps_other_metrics(scored, monkeypatch, tmp_path):
    """No java on PATH: METEOR and SPICE null with reasons, Python tokenizer, the rest as with Java."""
    monkeypatch.setenv("PATH", str(tmp_path))
    result = score_captions(PREDICTIONS, REFERENCES)
    assert result["tokenizer"].startswith("python (Java not found")
    assert result["metrics"][METEOR] is None and "Java" in result["unavailable"][METEOR]
    assert result["metrics"][SPICE] is None and "Java" in result["unavailable"][SPICE]
    # The Python tokenizer agrees with PTB on these captions, so the scores are the same ones.
    for key in (*BLEU, ROUGE_L, CIDER, SACREBLEU):
        assert result["metrics"][key] == pytest.approx(scored["metrics"][key], rel=1e-12), key


@needs_java
def test_python_tokenizer_matches_ptb():
    """The pure-Python tokenizer reproduces PTB + punctuation removal on ordinary captions."""
    captions = [
        "A dog's ball.", "Two men (in hats) play -- poker!", "black-and-white dog runs; fast...",
        "dogs' toys aren't cheap, I'd say", "She'll be there; we're going? can't won't",
        '"Hello," she said: it\'s 3.5 m/s & $5 50%', "a man on 1,000 bikes at 3:30", "a cat!!",
        "A child in a pink dress is climbing up a set of stairs in an entry way .", "",
        "e.g. the U.S. flag at St. Mary's", "The dog is 'happy' and it's running.", "cannot gonna wanna",
    ]
    ptb = PTBTokenizer().tokenize({str(n): [{"caption": c}] for n, c in enumerate(captions)})
    assert [python_ptb_tokenize(c) for c in captions] == [ptb[str(n)][0] for n in range(len(captions))]


class _OfflineSpice:
    """Stands in for pycocoevalcap's Spice, whose first use downloads CoreNLP and fails offline."""

    def __init__(self):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")


class _FakeSpice:
    """A SPICE stand-in scoring each image by its hypothesis length, to check the subsample plumbing."""

    def compute_score(self, gts, res):
        return None, [{"All": {"f": len(res[i][0].split()) / 10}} for i in sorted(gts)]


def _fail(*args):
    """Stand-in scorer that fails, instead of starting METEOR's JVM again."""
    raise RuntimeError("METEOR jar crashed\nsecond line")


@needs_java
def test_spice_failure_is_reported_and_others_still_run(monkeypatch):
    """A SPICE that cannot download CoreNLP is null with a one-line reason; a crashed METEOR too."""
    monkeypatch.setattr(scoring, "Spice", _OfflineSpice)
    monkeypatch.setattr(scoring, "_meteor", _fail)
    result = score_captions(PREDICTIONS, REFERENCES)
    assert result["metrics"][SPICE] is None and result["spice_images"] is None
    assert result["unavailable"][SPICE].startswith("needs Stanford CoreNLP 3.6.0, which it downloads")
    assert "Name or service not known" in result["unavailable"][SPICE]
    assert result["unavailable"][METEOR] == "RuntimeError: METEOR jar crashed"
    assert all(result["metrics"][k] is not None for k in (*BLEU, ROUGE_L, CIDER, SACREBLEU))


@needs_java
def test_spice_runs_on_a_seeded_subsample(monkeypatch):
    """SPICE scores only spice_subsample images, the same ones for the same seed, and averages them."""
    monkeypatch.setattr(scoring, "Spice", _FakeSpice)
    monkeypatch.setattr(scoring, "_meteor", _fail)
    first = score_captions(PREDICTIONS, REFERENCES, spice_subsample=3, seed=1)
    again = score_captions(PREDICTIONS, REFERENCES, spice_subsample=3, seed=1)
    subset = [i for i, row in first["per_image"].items() if SPICE in row]
    assert first["spice_images"] == len(subset) == 3
    assert subset == [i for i, row in again["per_image"].items() if SPICE in row]
    assert first["metrics"][SPICE] == pytest.approx(sum(first["per_image"][i][SPICE] for i in subset) / 3)
    for i in subset:  # each score lands on its own image
        assert first["per_image"][i][SPICE] == len(python_ptb_tokenize(PREDICTIONS[i]).split()) / 10


@pytest.mark.slow
@needs_java
def test_real_spice_offline_is_null_with_reason(monkeypatch):
    """The real SPICE fails fast offline, where it cannot download CoreNLP."""
    import pycocoevalcap.spice.spice as spice_module

    if (Path(spice_module.__file__).parent / "lib" / "stanford-corenlp-3.6.0.jar").exists():
        pytest.skip("CoreNLP is already downloaded here, so SPICE would really run")
    monkeypatch.setattr(scoring, "_meteor", _fail)  # METEOR's JVM is not what this test is about
    result = score_captions({"a": "a dog"}, {"a": ["a dog runs", "a brown dog"]}, spice_subsample=None)
    assert result["metrics"][SPICE] is None
    assert "Stanford CoreNLP" in result["unavailable"][SPICE] and "\n" not in result["unavailable"][SPICE]


def test_sanity_check_flags_leaks_for_real_data_only():
    """Near-perfect scores warn on flickr8k, naming the three usual causes, but never on the synthetic set."""
    leaky = {BLEU[3]: 0.97, CIDER: 9.3}
    warnings = sanity_check(leaky, "flickr8k")
    assert len(warnings) == 2
    for warning in warnings:
        assert "prompt" in warning and "caption row" in warning and "single reference" in warning
    assert sanity_check(leaky, "sample") == []
    assert sanity_check(leaky, "folder") == []
    assert len(sanity_check(leaky, "folder", plausible={CIDER: 3.0})) == 1
    (only_bleu,) = sanity_check(leaky, "flickr8k", plausible={CIDER: 20.0, BLEU[3]: None})  # per-key override
    assert only_bleu.startswith("Bleu_4 = 0.970")
    assert sanity_check({BLEU[3]: 0.3, CIDER: 0.9}, "coco_karpathy") == []
    with pytest.raises(ValueError, match="unknown source"):
        sanity_check(leaky, "flikr8k")


def test_sanity_check_flags_single_reference_scoring():
    """A whole result with one reference per image warns, even when the scores look fine."""
    result = {"metrics": {BLEU[3]: 0.2, CIDER: 0.5}, "refs_per_image": {"min": 1, "mean": 1.0, "max": 1}}
    (warning,) = sanity_check(result, "flickr8k")
    assert "1.00 reference(s) per image" in warning and "not comparable with published" in warning
    assert sanity_check({**result, "refs_per_image": {"min": 5, "mean": 5.0, "max": 5}}, "flickr8k") == []
    assert len(sanity_check(result["metrics"], "sample", refs_per_image=1.2)) == 1


def test_report_puts_models_side_by_side():
    """The run report (03, the CLI, the card) has a column per model; n/a and the reason for missing metrics."""
    from blipnb.evaluation.report import format_report, report_rows

    base = {"metrics": dict.fromkeys(METRIC_KEYS, 0.25) | {SPICE: None, SACREBLEU: 25.0},
            "unavailable": {SPICE: "disabled (do_spice=False)"}, "n_images": 7, "scale": SCALE, "tokenizer": "ptb",
            "refs_per_image": {"min": 5, "mean": 5.0, "max": 5}}
    tuned = base | {"metrics": base["metrics"] | {CIDER: 0.75}}
    metrics = {"results": {"fine-tuned": tuned, "baseline": base}, "split": "test", "source": "sample"}
    rows = {row["metric"]: row for row in report_rows(metrics)}
    assert rows[CIDER]["fine-tuned"] == "0.7500" and rows[CIDER]["baseline"] == "0.2500"
    assert rows["n images"] == {"group": "counts", "metric": "n images", "fine-tuned": "7", "baseline": "7"}
    table = format_report(metrics)
    assert "0.7500" in table and "25.00" in table and "n/a" in table
    assert "SPICE unavailable (fine-tuned, baseline): disabled (do_spice=False)" in table and "0-100" in table


@needs_java
def test_evaluate_module_loads_offline_and_matches(scored, monkeypatch):
    """evaluate.load on the local module works offline and returns score_captions' metrics."""
    import evaluate

    # A third METEOR JVM would double this test's time; its plumbing is the same as the other metrics'.
    monkeypatch.setattr(scoring, "_meteor", lambda ids, *_: (0.5, [0.5] * len(ids), [[1.0]] * len(ids)))
    metric = evaluate.load(METRIC_MODULE_PATH)
    ids = sorted(PREDICTIONS)
    out = metric.compute(predictions=[PREDICTIONS[i] for i in ids], references=[REFERENCES[i] for i in ids],
                         do_spice=False)
    assert out[SPICE] is None and out[METEOR] == 0.5
    for key in (*BLEU, ROUGE_L, CIDER, SACREBLEU):
        assert out[key] == pytest.approx(scored["metrics"][key], rel=1e-9), key
    assert out["unavailable"] == scored["unavailable"] and out["tokenizer"] == "ptb"


def test_broken_java_falls_back_like_missing_java(scored, monkeypatch, tmp_path):
    """A `java` that exits at once (broken JRE): Python tokenizer, METEOR null with a reason, the rest intact."""
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\nexit 1\n")
    java.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = score_captions(PREDICTIONS, REFERENCES, do_spice=False)
    assert result["tokenizer"] == "python (Java PTB tokenizer returned too few lines)"
    assert result["metrics"][METEOR] is None
    assert result["unavailable"][METEOR].startswith("METEOR's Java process failed")
    for key in (*BLEU, ROUGE_L, CIDER, SACREBLEU):
        assert result["metrics"][key] == pytest.approx(scored["metrics"][key], rel=1e-12), key
