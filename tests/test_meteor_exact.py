"""Exact METEOR intervals: each resample scored by the Java tool from summed per-segment statistics."""

import shutil

import numpy as np
import pytest

from blipnb.schema import METEOR
from blipnb.scoring import score_captions
from blipnb.scoring.bootstrap import APPROXIMATE, EXACT, bootstrap_cis, metrics_at, paired_comparison
from blipnb.scoring.meteor import MeteorScorer, summable

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")

# Ragged references; img1 is an exact copy of a reference (the jar aggregates such a segment's chunk specially),
# img4 a miss, img5 a word-order scramble (several chunks).
PREDICTIONS = {
    "img1": "a dog runs on the grass",
    "img2": "two men playing cards at a table",
    "img3": "a black cat sitting on a mat",
    "img4": "a red car",
    "img5": "lake the into jumps boy a",
    "img6": "a man on a bicycle",
}
REFERENCES = {
    "img1": ["a dog runs on the grass", "A dog runs through a field.", "The dog runs."],
    "img2": ["Two men play poker!", "Men play cards at a table.", "Two people playing a card game"],
    "img3": ["A black cat sits on a mat.", "A cat on a rug.", "a kitten", "cat"],
    "img4": ["A blue boat on the river.", "a boat"],
    "img5": ["A boy jumps into the lake.", "A child leaps into the water"],
    "img6": ["A man rides his bicycle down a busy city street.", "a cyclist in traffic", "a man on a bike"],
}


@pytest.fixture(scope="module")
def java():
    """One METEOR JVM for the whole module (it takes ~10 s to start)."""
    with MeteorScorer() as scorer:
        yield scorer


@pytest.fixture(scope="module")
def scored(java):
    return score_captions(PREDICTIONS, REFERENCES, do_spice=False, meteor=java)


def test_weighted_sums_equal_the_jars_own_aggregation(scored, java):
    """Summed statistics (one EVAL line) score exactly as the jar's multi-segment EVAL, exact copies included."""
    stats = scored["stats"]["meteor"]
    weights = np.array([[1, 1, 1, 1, 1, 1], [2, 0, 1, 0, 0, 3], [3, 0, 0, 0, 0, 0], [0, 1, 0, 2, 1, 0]])
    ours = java.score_weighted(weights, stats)
    theirs = [java.evaluate([stats[j] for j, w in enumerate(row) for _ in range(w)])[1] for row in weights]
    assert ours.tolist() == pytest.approx(theirs, rel=1e-12)
    assert ours[0] == pytest.approx(scored["metrics"][METEOR], rel=1e-12)  # EVAL on the full set = corpus score
    assert ours[2] == pytest.approx(1.0)  # three copies of an exact match are still a perfect score
    # The chunk exception matters here: a plain sum of img1's three copies would count three chunks.
    assert summable(stats)[0][20] == 0 and stats[0][20] == 1


def test_exact_interval_contains_the_corpus_score_and_differs_from_the_approximation(scored, java):
    cis = bootstrap_cis(scored, n_boot=300, seed=0, meteor=java)[METEOR]
    assert cis["method"] == EXACT
    assert cis["low"] < scored["metrics"][METEOR] < cis["high"]
    without_stats = {**scored, "stats": {k: v for k, v in scored["stats"].items() if k != "meteor"}}
    approximate = bootstrap_cis(without_stats, n_boot=300, seed=0)[METEOR]
    assert approximate["method"] == APPROXIMATE and "not cached" in approximate["note"]
    assert (approximate["low"], approximate["high"]) != pytest.approx((cis["low"], cis["high"]), abs=1e-3)
    # Identity resample: exact equals the corpus value (the approximation does so by construction only).
    assert metrics_at(scored, np.ones(6), meteor=java)[METEOR][0] == pytest.approx(scored["metrics"][METEOR], rel=1e-12)


def test_paired_comparison_uses_exact_meteor(scored, java):
    """Identical predictions: every resampled difference is exactly zero, and the row says it was exact."""
    row = paired_comparison(scored, scored, n_boot=100, meteor=java)[METEOR]
    assert row["method"] == EXACT and row["low"] == row["high"] == 0.0


def test_without_java_at_bootstrap_time_falls_back_and_says_why(scored, java, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    cis = bootstrap_cis(scored, n_boot=100, meteor=java)[METEOR]
    assert cis["method"] == APPROXIMATE and "Java not found" in cis["note"]
    assert cis["low"] < scored["metrics"][METEOR] < cis["high"]


def test_java_dying_during_the_bootstrap_falls_back_with_its_reason(scored, java, monkeypatch):
    from blipnb.scoring import meteor

    def dies(self, weights, stats):
        raise meteor.MeteorUnavailable("METEOR's Java process failed: EOFError: the process closed its output")

    monkeypatch.setattr(meteor.MeteorProcess, "score_weighted", dies)
    cis = bootstrap_cis(scored, n_boot=100, meteor=java)[METEOR]
    assert cis["method"] == APPROXIMATE and "closed its output" in cis["note"]
    assert cis["low"] < scored["metrics"][METEOR] < cis["high"]
