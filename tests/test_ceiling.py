"""The human ceiling: references scored against each other (leave one out), its CIs, the table, the leak check."""

import numpy as np
import pytest
from helpers import tiny_config
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

from blipnb.data.sample import _captions, _draw_scene
from blipnb.evaluation import BASELINE, FINETUNED, format_report, summarise
from blipnb.evaluation.card import model_card
from blipnb.evaluation.report import report_rows
from blipnb.evaluation.run import summarise_ceiling
from blipnb.schema import BLEU, CIDER, HUMAN_CEILING, SACREBLEU
from blipnb.scoring import sanity_check, score_captions
from blipnb.scoring.bootstrap import metrics_at
from blipnb.scoring.ceiling import CEILING_LABEL, leave_one_out, score_ceiling
from blipnb.scoring.ptb import python_ptb_tokenize

# Three images, ragged (3, 2 and 4 references), plus one with a single reference (no ceiling item).
REFS = {
    "a": ["A dog runs on the grass.", "a dog running across a field", "the brown dog runs"],
    "b": ["Two men play cards.", "two men playing a card game"],
    "c": ["a red car parked on the street", "a red car by the curb", "a parked car", "red car on a street"],
    "d": ["only one caption here"],
}


@pytest.fixture(autouse=True)
def no_java(monkeypatch, tmp_path):
    """Python tokenizer, no METEOR/SPICE: fast and deterministic; Java's own paths are tested elsewhere."""
    monkeypatch.setenv("PATH", str(tmp_path))


def sample_references(n: int, seed: int = 0) -> tuple[dict, dict]:
    """References like the sample's (five paraphrases of the scene) and a sixth, unseen paraphrase per image."""
    rng = np.random.default_rng(seed)
    refs, fresh = {}, {}
    for k in range(n):
        objects, _ = _draw_scene(rng, max_shapes=2, hard_fraction=0.0)
        refs[f"s{k:03d}"], fresh[f"s{k:03d}"] = _captions(objects, rng), _captions(objects, rng, n=1)[0]
    return refs, fresh


def test_leave_one_out_rotates_every_reference_once():
    hypotheses, refs, groups = leave_one_out(REFS)
    assert len(hypotheses) == 3 + 2 + 4 and "d" not in set(groups.values())
    assert sorted(hypotheses[f"c#{j}"] for j in range(4)) == sorted(REFS["c"])
    for item, hyp in hypotheses.items():
        image = groups[item]
        assert hyp not in refs[item] and sorted([hyp, *refs[item]]) == sorted(REFS[image])


def test_ceiling_equals_pycocoevalcap_on_the_pooled_leave_one_out_items():
    ceiling = score_ceiling(REFS, do_spice=False)
    gts, res = {}, {}
    for image, refs in REFS.items():
        if len(refs) > 1:
            for j, ref in enumerate(refs):
                res[f"{image}{j}"] = [python_ptb_tokenize(ref)]
                gts[f"{image}{j}"] = [python_ptb_tokenize(r) for r in refs[:j] + refs[j + 1:]]
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    assert [ceiling["metrics"][k] for k in BLEU] == pytest.approx(bleu, rel=1e-9)
    assert ceiling["metrics"][CIDER] == pytest.approx(cider, rel=1e-9)
    assert ceiling["n_images"] == 3 and ceiling["n_items"] == 9
    assert ceiling["refs_per_image"] == {"min": 1, "mean": pytest.approx(20 / 9), "max": 3}  # k-1 per item


def test_ceiling_bootstrap_resamples_images_with_all_their_items():
    ceiling = score_ceiling(REFS, do_spice=False)
    # Images a, b, c drawn 2, 0 and 1 times = their items weighted 2, 0 and 1 in an ungrouped result.
    ungrouped = {**ceiling, "stats": {k: v for k, v in ceiling["stats"].items() if k != "groups"}}
    items = ceiling["stats"]["image_ids"]
    by_item = {"a": 2.0, "b": 0.0, "c": 1.0}
    expected = metrics_at(ungrouped, np.array([[by_item[i.split("#")[0]] for i in items]]), items)
    got = metrics_at(ceiling, np.array([[2.0, 0.0, 1.0]]), ["a", "b", "c"])
    for key in (*BLEU, CIDER, SACREBLEU):
        assert got[key][0] == pytest.approx(expected[key][0], rel=1e-12), key
    assert metrics_at(ceiling, np.ones((1, 3)))[CIDER][0] == pytest.approx(ceiling["metrics"][CIDER], rel=1e-12)


def test_parrot_is_flagged_against_the_ceiling_and_an_honest_captioner_is_not():
    refs, fresh = sample_references(60)
    ceiling = score_ceiling(refs, do_spice=False)
    parrot = score_captions({k: v[0] for k, v in refs.items()}, refs, do_spice=False)
    honest = score_captions(fresh, refs, do_spice=False)  # a new paraphrase of what is in the image
    assert parrot["metrics"][BLEU[3]] == pytest.approx(1.0)
    # On the sample the fixed plausibility ceilings are the maxima: only the human ceiling catches the parrot.
    assert sanity_check(parrot, "sample") == []
    warnings = sanity_check(parrot, "sample", ceiling=ceiling)
    assert any(w.startswith(f"{BLEU[3]} = 1.000 is far above the human ceiling") for w in warnings), warnings
    assert sanity_check(honest, "sample", ceiling=ceiling) == []
    assert honest["metrics"][BLEU[3]] > 0.5 * ceiling["metrics"][BLEU[3]]  # really a comparable captioner


def test_table_card_and_metrics_show_the_ceiling_spice_count_and_signature(tmp_path):
    cfg = tiny_config(tmp_path, n_bootstrap=50)
    refs, fresh = sample_references(20, seed=1)
    ceiling = score_ceiling(refs, do_spice=False)
    good, bad = (score_captions(p, refs, do_spice=False) for p in (fresh, dict.fromkeys(refs, "a blue square")))
    assert good["sacrebleu_signature"].startswith("nrefs:5|case:lc|")
    metrics = {"split": "test", "source": "sample", "n_images": 20, "models": {FINETUNED: "m", BASELINE: "b"},
               "decoding": {}, "results": {FINETUNED: summarise(good, cfg, ceiling), BASELINE: summarise(bad, cfg)},
               HUMAN_CEILING: summarise_ceiling(ceiling, cfg)}
    assert metrics[HUMAN_CEILING]["ci"][CIDER]["low"] < ceiling["metrics"][CIDER] < metrics[HUMAN_CEILING]["ci"][
        CIDER]["high"]
    assert metrics["results"][FINETUNED]["sacrebleu_signature"] == good["sacrebleu_signature"]
    rows = {row["metric"]: row for row in report_rows(metrics)}
    assert rows[CIDER][CEILING_LABEL].startswith(f"{ceiling['metrics'][CIDER]:.4f} [")
    assert rows["refs per image"][CEILING_LABEL] == "4.00" and rows["refs per image"][FINETUNED] == "5.00"
    assert rows["SPICE images"][FINETUNED] == "none (unavailable)"
    text = format_report(metrics)
    assert f"sacreBLEU signature ({FINETUNED}, {BASELINE}): {good['sacrebleu_signature']}" in text
    assert "100 items over 20 images" in text
    card = model_card(cfg, {**metrics, "blipnb_version": "test", "split_hash": "x"})
    assert "## Human ceiling" in card and CEILING_LABEL in card and good["sacrebleu_signature"] in card


def test_spice_images_row_counts_a_subsample():
    rows = report_rows({"results": {FINETUNED: {"metrics": {}, "n_images": 5000, "spice_images": 1500,
                                                 "refs_per_image": {"mean": 5.0}}}})
    assert {row["metric"]: row for row in rows}["SPICE images"][FINETUNED] == "1500 of 5000"


def _single_and_mixed_metrics(cfg, refs: dict) -> dict:
    """metrics.json as evaluate_run writes it, for `refs` and a captioner that repeats each first reference."""
    from blipnb.evaluation.run import human_ceiling
    from blipnb.scoring.ceiling import NO_CEILING

    split = {"image_id": list(refs), "captions": list(refs.values())}
    result = score_captions({k: v[0] for k, v in refs.items()}, refs, do_spice=False)
    ceiling = human_ceiling(split, cfg)  # references() reads these two columns
    return {"split": "test", "source": "folder", "n_images": len(refs), "models": {FINETUNED: "m", BASELINE: "b"},
            "decoding": {}, "results": {FINETUNED: summarise(result, cfg, ceiling), BASELINE: summarise(result, cfg)},
            HUMAN_CEILING: summarise_ceiling(ceiling, cfg, len(refs)),
            "unavailable": {HUMAN_CEILING: NO_CEILING} if ceiling is None else {}}


def test_one_caption_per_image_has_no_ceiling_and_says_what_its_scores_mean(tmp_path):
    cfg = tiny_config(tmp_path, n_bootstrap=20)
    refs = {f"i{k}": [f"a picture of blob {k} on the left"] for k in range(6)}
    metrics = _single_and_mixed_metrics(cfg, refs)
    assert metrics[HUMAN_CEILING] is None and "no image has two or more references" in metrics["unavailable"][
        HUMAN_CEILING]
    text = format_report(metrics)
    assert f"{CEILING_LABEL}: not computed: no image has two or more references" in text
    warnings = [line for line in text.splitlines() if line.startswith("WARNING")]
    # Said once for both models: what one reference costs (not a request for references that do not exist), and
    # that six images are too few for the intervals to mean much.
    assert len(warnings) == 2 and all(w.startswith(f"WARNING ({FINETUNED}, {BASELINE}): ") for w in warnings)
    assert "1.00 reference(s) per image" in warnings[0]
    assert "not comparable with published COCO or Flickr8k scores" in warnings[0]
    assert warnings[1].split(": ", 1)[1].startswith("only 6 image(s) scored")
    assert "score against all" not in text
    card = model_card(cfg, {**metrics, "blipnb_version": "test", "split_hash": "x"})
    assert "no image has two or more references" in card and "not comparable with published" in card


def test_ceiling_covers_the_images_with_several_references_and_says_how_many(tmp_path):
    cfg = tiny_config(tmp_path, n_bootstrap=20)
    refs = {"a": REFS["a"], "b": REFS["b"], "d": REFS["d"]}  # 3, 2 and 1 references
    metrics = _single_and_mixed_metrics(cfg, refs)
    assert metrics[HUMAN_CEILING]["n_images"] == 2 and metrics[HUMAN_CEILING]["of_images"] == 3
    assert metrics["unavailable"] == {}
    text = format_report(metrics)
    assert "5 items over the 2 of 3 images that have two or more references; the other 1 has one reference" in text
    rows = {row["metric"]: row for row in report_rows(metrics)}
    assert rows["n images"][CEILING_LABEL] == "2" and rows["n images"][FINETUNED] == "3"
