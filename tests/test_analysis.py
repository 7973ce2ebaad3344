"""Error-analysis tables on hand-made rows with known answers, and sample attributes against their own captions."""
from __future__ import annotations

import json

import pytest
from datasets import Dataset

from blipnb import runs
from blipnb.notebook import analysis
from blipnb.data.sample import COLOURS, make_sample


def row(image_id, prediction, references, cider=None, **scores):
    scores = {**scores, **({"CIDEr": cider} if cider is not None else {})}
    return {"image_id": image_id, "prediction": prediction, "references": references, "scores": scores}


def test_load_predictions_reads_both_files_and_names_the_notebook_when_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_evaluate"):
        analysis.load_predictions(tmp_path)
    runs.write_jsonl(tmp_path / runs.PREDICTIONS, [row("a", "x", ["y"], 1.0)])
    rows, baseline = analysis.load_predictions(runs.RunDir(tmp_path))
    assert [r["image_id"] for r in rows] == ["a"] and baseline is None
    runs.write_jsonl(tmp_path / runs.BASELINE_PREDICTIONS, [row("a", "z", ["y"], 0.0)])
    assert analysis.load_predictions(tmp_path)[1][0]["prediction"] == "z"


def test_rank_and_worst_best_order_by_score_and_skip_unscored_rows():
    rows = [row("b", "", ["r"], 0.5), row("a", "", ["r"], 0.5), row("c", "", ["r"], 2.0), row("d", "", ["r"], 0.1),
            row("e", "", ["r"])]  # no CIDEr (e.g. outside the SPICE subsample): left out
    assert [r["image_id"] for r in analysis.rank_by_score(rows)] == ["d", "a", "b", "c"]
    worst, best = analysis.worst_best(rows, 2)
    assert [r["image_id"] for r in worst] == ["d", "a"] and [r["image_id"] for r in best] == ["c", "b"]
    with pytest.raises(KeyError, match="CIDEr.*ROUGE_L"):
        analysis.rank_by_score([row("a", "", ["r"], ROUGE_L=0.3)])


def test_score_summary_counts_zero_scores():
    summary = analysis.score_summary([row(str(i), "", ["r"], float(v)) for i, v in enumerate([0, 0, 1, 3])])
    assert summary["n"] == 4 and summary["mean"] == 1.0 and summary["share_zero"] == 0.5 and summary["max"] == 3


def test_length_table_compares_with_the_shortest_and_longest_reference():
    rows = [row("a", "a dog", ["a dog runs", "dog runs on grass"]),  # 2 words: shorter than every reference
            row("b", "a brown dog runs on the green grass", ["a dog", "the dog is brown"])]  # 8: longer than all
    table = analysis.length_table(rows)
    assert table["prediction_words"]["mean"] == 5 and table["prediction_words"]["max"] == 8
    assert table["reference_words"]["min"] == 2 and table["reference_words"]["max"] == 4
    assert table["shorter_than_shortest_reference"] == 0.5 and table["longer_than_longest_reference"] == 0.5


def test_word_usage_finds_over_and_under_used_content_words():
    rows = [row(str(i), "a dog on the grass", ["a puppy on the grass", "a dog in a park"]) for i in range(4)]
    usage = analysis.word_usage(rows)
    over = {t["word"]: t for t in usage["overused"]}
    under = {t["word"]: t for t in usage["underused"]}
    assert "grass" in over and over["grass"]["difference"] == pytest.approx(0.5)
    assert over["dog"]["prediction_count"] == 4 and over["dog"]["reference_count"] == 4
    assert {"puppy", "park"} <= set(under) and under["puppy"]["prediction_rate"] == 0
    assert not ({"a", "on", "the", "in"} & (set(over) | set(under)))  # stop words are skipped
    diffs = [t["difference"] for t in usage["overused"]]
    assert diffs == sorted(diffs, reverse=True)


def test_copy_rate_counts_verbatim_copies_only():
    train = ["A dog runs on the grass.", "two cats sleep"]
    rows = [row("a", "a dog  runs on the grass", ["x"]),  # same after case, spacing and final punctuation
            row("b", "Two cats sleep!", ["x"]),
            row("c", "a dog runs on the grass today", ["x"]),  # longer: not a copy
            row("d", "dog runs on the grass", ["x"])]  # a substring of a training caption: not a copy
    result = analysis.copy_rate(rows, train)
    assert result["copied"] == 2 and result["rate"] == 0.5
    assert [e["image_id"] for e in result["examples"]] == ["a", "b"]


def planted_rows(n_zebra=25, n_other=60):
    """Images whose references mention "zebra" score 0.1; the rest score about 1; "grass" is everywhere."""
    rows = [row(f"z{i}", "an animal", ["a zebra on the grass", "a zebra"], 0.1 + 0.001 * i)
            for i in range(n_zebra)]
    rows += [row(f"h{i}", "a horse", ["a horse on the grass", "a brown horse"], 1.0 + 0.01 * (i % 7))
             for i in range(n_other)]
    return rows


def test_slice_scores_find_the_planted_weak_slice():
    slices = analysis.slice_scores(planted_rows(), min_size=20, n_boot=200)
    by_word = {s["slice"]: s for s in slices}
    assert set(by_word) == {"zebra", "horse", "brown", "grass"}  # no stop words, all >= 20
    zebra = by_word["zebra"]
    assert zebra["n"] == 25 and zebra["low"] <= zebra["mean"] <= zebra["high"] and zebra["gap"] < -0.5
    worst = analysis.worst_slices(slices, k=2)
    assert [s["slice"] for s in worst] == ["zebra", "grass"]
    assert worst[0]["examples"] == ["z0", "z1", "z2"]  # the slice's lowest-scoring images
    assert by_word["grass"]["gap"] == pytest.approx(0.0)  # every image: the overall mean
    assert analysis.slice_scores(planted_rows(), min_size=20, n_boot=200) == slices  # seeded: reproducible


def test_slice_scores_respect_min_size_and_vocabulary():
    rows = planted_rows(n_zebra=5)
    assert "zebra" not in {s["slice"] for s in analysis.slice_scores(rows, min_size=20, n_boot=10)}
    only = analysis.slice_scores(rows, min_size=5, vocabulary=["Zebra", "horse"], n_boot=10)
    assert [s["slice"] for s in only] == ["zebra", "horse"]
    assert analysis.slice_scores([], min_size=1) == []


def test_bootstrap_mean_ci_brackets_the_mean():
    assert analysis.bootstrap_mean_ci([2.0] * 10, n_boot=50) == (2.0, 2.0)
    low, high = analysis.bootstrap_mean_ci(list(range(100)), n_boot=500)
    assert low < 49.5 < high and high - low < 30
    assert analysis.bootstrap_mean_ci([1.0, 2.0], n_boot=0) == (None, None)


@pytest.fixture(scope="module")
def sample_split(tmp_path_factory):
    """A small synthetic test split (1-3 shapes, half of them hard) with its attributes column."""
    out = make_sample(tmp_path_factory.mktemp("sample"), 1, 1, 40, image_size=32, max_shapes=3, hard_fraction=0.5)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["split"] == "test"]
    return Dataset.from_dict({"image_id": [r["file_name"] for r in rows], "captions": [r["captions"] for r in rows],
                              "attributes": [r["attributes"] for r in rows]})


def test_attribute_accuracy_is_perfect_on_the_generators_own_captions(sample_split):
    assert {json.loads(a)["count"] for a in sample_split["attributes"]} == {1, 2, 3}
    for k in range(5):  # every paraphrase template parses back to the ground truth
        rows = [row(i, caps[k], caps) for i, caps in zip(sample_split["image_id"], sample_split["captions"])]
        table = {t["images"]: t for t in analysis.attribute_accuracy(rows, sample_split)}
        assert table["hard"]["n_images"] > 0 and table["clean"]["n_images"] > 0
        assert table["overall"]["n_images"] == len(rows)
        for group in table.values():
            assert all(group[key] == 1.0 for key in (*analysis.ATTRIBUTE_KEYS, "all")), group


def recolour(caption: str) -> str:
    """The caption with every colour word replaced by the next colour."""
    names = list(COLOURS)
    return " ".join(names[(names.index(w) + 1) % len(names)] if w in names else w for w in caption.split())


def test_attribute_accuracy_drops_for_a_wrong_colour_only(sample_split):
    rows = [row(i, recolour(caps[0]), caps) for i, caps in zip(sample_split["image_id"], sample_split["captions"])]
    overall = analysis.attribute_accuracy(rows, sample_split)[0]
    assert overall["colour"] == 0.0 and overall["all"] == 0.0
    assert overall["shape"] == overall["size"] == overall["position"] == overall["count"] == 1.0


def test_attribute_accuracy_binds_colours_to_shapes():
    gt = {"count": 2, "hard": False, "objects": [
        {"shape": "circle", "colour": "red", "size": "small", "position": "top left"},
        {"shape": "square", "colour": "blue", "size": "large", "position": "bottom right"}]}
    split = Dataset.from_dict({"image_id": ["x"], "attributes": [json.dumps(gt)]})
    swapped = "a small blue circle in the top left and a large red square in the bottom right"
    overall = analysis.attribute_accuracy([row("x", swapped, ["r"])], split)[0]
    assert overall["colour"] == 0.0 and overall["shape"] == 1.0 and overall["position"] == 1.0
    missing = analysis.attribute_accuracy([row("x", "a small red circle in the top left", ["r"])], split)[0]
    assert missing["colour"] == 0.5 and missing["count"] == 0.0  # one object left out, count says one
    with pytest.raises(ValueError, match="not in the split"):
        analysis.attribute_accuracy([row("y", "a red circle", ["r"])], split)


def test_attribute_accuracy_is_none_without_an_attributes_column():
    split = Dataset.from_dict({"image_id": ["x"], "captions": [["a dog"]]})
    assert analysis.attribute_accuracy([row("x", "a dog", ["a dog"])], split) is None


def test_a_users_own_attributes_column_is_not_taken_for_the_samples():
    rows = [{"image_id": "x", "prediction": "a red car", "references": ["a red car"], "scores": {}}]
    for value in ("outdoor", json.dumps({"weather": "rain"}), json.dumps({"objects": ["car"]}), None):
        split = Dataset.from_dict({"image_id": ["x"], "attributes": [value]})
        assert analysis.attribute_accuracy(rows, split) is None, value
