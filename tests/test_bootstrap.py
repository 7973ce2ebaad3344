"""Bootstrap CIs and paired comparisons: identity resample = corpus value, zero width, planted effects."""

import random

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from blipnb.scoring.bootstrap import bootstrap_cis, bootstrap_distribution, metrics_at, paired_comparison
from blipnb.schema import BLEU, CIDER, METEOR, ROUGE_L, SACREBLEU, SPICE
from blipnb.scoring import score_captions
from blipnb.scoring.ptb import python_ptb_tokenize

WORDS = ["a", "the", "dog", "cat", "man", "woman", "boy", "girl", "red", "blue", "runs", "sits", "jumps", "on", "in",
         "near", "grass", "water", "street", "ball"]
JUNK = "zebra quantum violin"  # shares no word with any reference


def _references(n: int, seed: int = 0) -> dict[str, list[str]]:
    """Seeded random references, 2 to 5 per image, 5 to 10 words each."""
    rng = random.Random(seed)
    return {f"img{k:03d}": [" ".join(rng.choices(WORDS, k=rng.randint(5, 10))) for _ in range(rng.randint(2, 5))]
            for k in range(n)}


def _noisy_copies(references: dict, seed: int = 1) -> dict[str, str]:
    """The first reference, a third of its words replaced and its last 0-2 cut: overlap, and brevity penalty."""
    rng, out = random.Random(seed), {}
    for key, refs in references.items():
        words = refs[0].split()
        words = words[: len(words) - rng.randint(0, 2)]
        out[key] = " ".join(w if rng.random() > 0.35 else rng.choice(WORDS) for w in words)
    return out


def _score(predictions, references):
    """score_captions without Java (Python tokenizer, no METEOR/SPICE): fast and deterministic."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", "/nonexistent")
        return score_captions(predictions, references, do_spice=False)


REFS = _references(80)


@pytest.fixture(scope="module")
def scored():
    """Noisy predictions for 80 images, scored once."""
    return _score(_noisy_copies(REFS), REFS)


def test_identity_resample_reproduces_corpus_scores(scored):
    """Weights of one per image give pycocoevalcap's corpus BLEU-1..4 and CIDEr, and sacreBLEU."""
    ids = sorted(REFS)
    gts = {i: [python_ptb_tokenize(r) for r in REFS[i]] for i in ids}
    res = {i: [python_ptb_tokenize(_noisy_copies(REFS)[i])] for i in ids}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    at_full = metrics_at(scored, np.ones(len(ids)))
    assert [float(at_full[k][0]) for k in BLEU] == pytest.approx(bleu, rel=1e-9)
    assert float(at_full[CIDER][0]) == pytest.approx(cider, rel=1e-12)
    assert float(at_full[ROUGE_L][0]) == pytest.approx(scored["metrics"][ROUGE_L], rel=1e-12)
    assert float(at_full[SACREBLEU][0]) == pytest.approx(scored["metrics"][SACREBLEU], rel=1e-12)
    # Non-degenerate: partial matches, and hypotheses shorter than their closest references (brevity penalty).
    assert 0.05 < bleu[3] < 0.9
    assert sum(scored["stats"]["bleu"]["testlen"]) < sum(scored["stats"]["bleu"]["reflen"])


def test_doubling_every_image_changes_nothing(scored):
    """Corpus statistics are ratios of sums, so uniform weights of 2 equal the corpus value."""
    once, twice = metrics_at(scored, np.ones(80)), metrics_at(scored, np.full(80, 2.0))
    for key in once:
        assert twice[key][0] == pytest.approx(once[key][0], rel=1e-9), key


def test_constant_predictor_has_zero_width_cis():
    """Every image predicted by the reference all images share: every resample scores the same."""
    references = {k: ["a photo of something", *refs] for k, refs in _references(40, seed=3).items()}
    result = _score(dict.fromkeys(references, "a photo of something"), references)
    cis = bootstrap_cis(result, n_boot=200)
    for key in (*BLEU, ROUGE_L, CIDER, SACREBLEU):
        assert cis[key]["high"] - cis[key]["low"] == pytest.approx(0, abs=1e-9), key
        assert cis[key]["low"] == pytest.approx(cis[key]["value"], rel=1e-9, abs=1e-12), key


def test_bootstrap_centres_on_the_corpus_value(scored):
    """Resampled means converge to the corpus value, and the 95% CI contains it with non-zero width."""
    draws, cis = bootstrap_distribution(scored, n_boot=2000, seed=5), bootstrap_cis(scored, n_boot=2000, seed=5)
    for key in (*BLEU, ROUGE_L, CIDER, SACREBLEU):
        spread = draws[key].std()
        # CIDEr and ROUGE-L are means (unbiased); BLEU is a ratio of sums, with a bias far below its spread.
        assert abs(draws[key].mean() - scored["metrics"][key]) < 0.15 * spread + 4 * spread / np.sqrt(2000), key
        assert cis[key]["low"] < scored["metrics"][key] < cis[key]["high"], key


def test_cis_are_seeded_and_null_with_a_note_when_unavailable(scored):
    """Same seed, same CIs; another seed differs; METEOR/SPICE (not scored here) carry a reason."""
    assert bootstrap_cis(scored, n_boot=100, seed=1) == bootstrap_cis(scored, n_boot=100, seed=1)
    assert bootstrap_cis(scored, n_boot=100, seed=2)[CIDER] != bootstrap_cis(scored, n_boot=100, seed=1)[CIDER]
    off = bootstrap_cis(scored, n_boot=0)[CIDER]
    assert off["value"] == scored["metrics"][CIDER] and off["low"] is None and "n_boot=0" in off["note"]
    cis = bootstrap_cis(scored, n_boot=100)
    assert cis[SPICE]["low"] is None and "do_spice=False" in cis[SPICE]["note"]
    assert cis[METEOR]["value"] is None and "Java" in cis[METEOR]["note"]


def test_meteor_and_spice_resample_per_image_means(scored):
    """Per-image metrics resample as means; SPICE only over the images it scored."""
    result = {**scored, "per_image": {i: dict(row) for i, row in scored["per_image"].items()},
              "metrics": dict(scored["metrics"])}
    ids = result["stats"]["image_ids"]
    for n, i in enumerate(ids):
        result["per_image"][i][METEOR] = n / len(ids)
        if n % 2:
            result["per_image"][i][SPICE] = 0.3
    result["metrics"][METEOR], result["metrics"][SPICE] = float(np.mean(np.arange(80) / 80)), 0.3
    at_full = metrics_at(result, np.ones(80))
    assert at_full[METEOR][0] == pytest.approx(result["metrics"][METEOR]) and at_full[SPICE][0] == pytest.approx(0.3)
    cis = bootstrap_cis(result, n_boot=300)
    # Images without SPICE never dilute it: every resample averages only 0.3s.
    assert cis[SPICE]["low"] == pytest.approx(0.3) and cis[SPICE]["high"] == pytest.approx(0.3)
    assert cis[METEOR]["low"] < result["metrics"][METEOR] < cis[METEOR]["high"]
    assert "per-image mean (0.4938)" in cis[METEOR]["note"]


def test_meteor_interval_brackets_the_java_corpus_value_when_it_differs_from_the_mean(scored):
    """Java's corpus METEOR is not the per-image mean; the interval must still bracket the reported value."""
    result = {**scored, "per_image": {i: dict(row) for i, row in scored["per_image"].items()},
              "metrics": dict(scored["metrics"])}
    ids = result["stats"]["image_ids"]
    for n, i in enumerate(ids):
        result["per_image"][i][METEOR] = n / len(ids)
    corpus = float(np.mean(np.arange(len(ids)) / len(ids))) - 0.05  # as on the sample: corpus below the mean
    result["metrics"][METEOR] = corpus
    assert metrics_at(result, np.ones(len(ids)))[METEOR][0] == pytest.approx(corpus)
    cis = bootstrap_cis(result, n_boot=300)
    assert cis[METEOR]["low"] < corpus < cis[METEOR]["high"]
    other = {**result, "metrics": {**result["metrics"], METEOR: corpus - 0.1}}
    row = paired_comparison(result, other, n_boot=300)[METEOR]
    assert row["diff"] == pytest.approx(0.1) and row["low"] == pytest.approx(0.1) == row["high"]


def test_paired_comparison_detects_a_planted_improvement():
    """A copies a reference for 80% of images, B is junk everywhere: A wins with a CI above zero."""
    ids = sorted(REFS)
    good = {i: REFS[i][0] if n % 5 else JUNK for n, i in enumerate(ids)}
    a, b = _score(good, REFS), _score(dict.fromkeys(ids, JUNK), REFS)
    comparison = paired_comparison(a, b, n_boot=500)
    for key in (*BLEU, ROUGE_L, CIDER, SACREBLEU):
        row = comparison[key]
        assert row["diff"] == pytest.approx(a["metrics"][key] - b["metrics"][key]), key
        assert row["low"] > 0 and row["p_a_wins"] > 0.95, key
    assert paired_comparison(b, a, n_boot=500)[CIDER]["high"] < 0


def _reordered(result: dict) -> dict:
    """The same result with its cached arrays in reverse image order, as another run might store them."""
    stats = result["stats"]
    bleu = {k: v[::-1] for k, v in stats["bleu"].items()}
    sacre = {**stats["sacrebleu"], "segments": stats["sacrebleu"]["segments"][::-1]}
    return {**result, "stats": {**stats, "image_ids": stats["image_ids"][::-1], "bleu": bleu, "sacrebleu": sacre}}


def test_identical_predictions_give_a_zero_difference(scored):
    """The same predictions compared with themselves (even stored in another order): diff 0, CI [0, 0]."""
    comparison = paired_comparison(scored, _reordered(scored), n_boot=300)
    for key in (*BLEU, ROUGE_L, CIDER, SACREBLEU):
        row = comparison[key]
        assert row["diff"] == 0 and row["low"] == pytest.approx(0, abs=1e-12), key
        assert row["high"] == pytest.approx(0, abs=1e-12) and row["p_a_wins"] == 0, key
    assert comparison[METEOR]["low"] is None and comparison[METEOR]["note"]


def test_paired_comparison_needs_the_same_images(scored):
    """Results on different images cannot be paired; the error names the odd ids."""
    other = _score({"img999": "a dog"}, {"img999": ["a dog runs", "a red dog"]})
    with pytest.raises(ValueError, match="img999"):
        paired_comparison(scored, other, n_boot=10)
