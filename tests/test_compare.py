"""`blipnb compare`: runs scored on the same test images, side by side, with paired intervals and P(A beats B).

The runs are written the way evaluate_run writes them (predictions.jsonl and metrics.json), from captions and
references, so nothing is trained."""
from __future__ import annotations

import dataclasses
import os
import shutil

import pytest

from blipnb import cli, runs
from blipnb.config import GenerationConfig
from blipnb.data import split_hashes
from blipnb.errors import MissingRunFile, RunsNotComparable
from blipnb.evaluation.compare import compare_runs, run_labels
from blipnb.schema import CIDER, HUMAN_CEILING, IMAGE_ID, METEOR, METRIC_KEYS, NGRAM_KEYS, SPICE
from blipnb.scoring.ceiling import CEILING_LABEL

COLOURS = ("red", "blue", "green", "yellow", "purple")
SHAPES = ("circle", "square", "triangle", "star")
SIDES = ("left", "right")
IMAGES = {f"img{n:02d}": (c, s, p) for n, (c, s, p) in
          enumerate((c, s, p) for c in COLOURS for s in SHAPES for p in SIDES)}  # 40 images
REFERENCES = {i: [f"a {c} {s} on the {p}", f"a small {c} {s} at the {p}", f"there is a {c} {s} to the {p}"]
              for i, (c, s, p) in IMAGES.items()}
# Scores that vary by image, so the intervals have width: the good run misses every fifth image, the bad run gets
# every seventh right.
GOOD = {i: f"a {c} shape" if n % 5 == 0 else f"a {c} {s} on the {p} side" for n, (i, (c, s, p)) in
        enumerate(IMAGES.items())}
BAD = {i: f"a {c} {s} on the {p}" if n % 7 == 0 else f"a {COLOURS[(COLOURS.index(c) + 1) % 5]} thing"
       for n, (i, (c, s, p)) in enumerate(IMAGES.items())}
MIDDLE = {i: f"a {c} {s}" if n % 2 else f"a {c} shape" for n, (i, (c, s, p)) in enumerate(IMAGES.items())}
N_BOOT = 200


def write_run(run_dir, captions: dict, references: dict, *, split_hash: str | None = None, model: str = "my/model",
              num_beams: int = 5):
    """A run directory as evaluate_run leaves it: predictions.jsonl (one row per image) and metrics.json."""
    run = runs.RunDir(run_dir).ensure()
    runs.write_jsonl(run / runs.PREDICTIONS, [{"image_id": i, "prediction": c, "references": references[i],
                                               "scores": {}} for i, c in captions.items()])
    result = {"metrics": dict.fromkeys(METRIC_KEYS, 0.5) | {SPICE: None}, "spice_images": None,
              "unavailable": {SPICE: "disabled (do_spice=False)"}}
    runs.write_json(run / runs.METRICS, {
        "blipnb_version": "0", "split": "test", "source": "sample", "n_images": len(captions),
        "split_hash": split_hash or split_hashes({"test": {IMAGE_ID: list(captions)}})["test"],
        "models": {"fine-tuned": model, "baseline": "base"},
        "decoding": dataclasses.asdict(GenerationConfig(num_beams=num_beams)), "decoding_differs_from_validation": [],
        "results": {"fine-tuned": result}, HUMAN_CEILING: None, "unavailable": {}, "provenance": {}})
    return run.path


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Three runs (good, bad, middle) compared once without Java: (comparison, the runs' directories, out)."""
    root = tmp_path_factory.mktemp("compare")
    dirs = [write_run(root / "good", GOOD, REFERENCES, model="good/model"),
            write_run(root / "bad", BAD, REFERENCES, model="bad/model", num_beams=1),
            write_run(root / "middle", MIDDLE, REFERENCES)]
    with pytest.MonkeyPatch.context() as mp:  # the conftest's no_java, for a module-scoped fixture
        mp.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                          if not shutil.which("java", path=p)))
        comparison = compare_runs(dirs, root / "out", n_boot=N_BOOT, seed=3)
    return comparison, dirs, root / "out"


def pair(comparison, a, b):
    return next(p["metrics"] for p in comparison["pairs"] if (p["a"], p["b"]) == (a, b))


def test_compare_a_clearly_better_run_wins_with_an_interval_above_zero(compared):
    comparison, _, _ = compared
    assert [(p["a"], p["b"]) for p in comparison["pairs"]] == [("good", "bad"), ("good", "middle"), ("bad", "middle")]
    scored = [k for k in NGRAM_KEYS if comparison["results"]["good"]["metrics"][k] is not None]
    assert CIDER in scored and METEOR not in scored and SPICE not in scored  # no Java: null, with the reason
    good_bad = pair(comparison, "good", "bad")
    for key in scored:
        row = good_bad[key]
        assert row["diff"] > 0 and row["high"] > row["low"] > 0, (key, row)
        assert row["p_a_wins"] >= 0.99, (key, row)
    assert pair(comparison, "bad", "middle")[CIDER]["p_a_wins"] <= 0.01  # the order of the pair is the question
    assert good_bad[METEOR]["p_a_wins"] is None and "Java" in good_bad[METEOR]["note"]


def test_compare_records_each_run_and_the_ceiling_once(compared):
    comparison, dirs, out = compared
    assert comparison["runs"]["good"]["model"] == "good/model"
    assert comparison["runs"]["bad"]["decoding"]["num_beams"] == 1 and comparison["runs"]["bad"]["source"] == "sample"
    assert comparison["runs"]["middle"]["run_dir"] == str(dirs[2])
    assert comparison["n_images"] == 40 and comparison["n_bootstrap"] == N_BOOT and comparison["bootstrap_seed"] == 3
    ceiling = comparison[HUMAN_CEILING]
    assert ceiling["n_images"] == 40 and ceiling["n_items"] == 120 and ceiling["ci"][CIDER]["low"] is not None
    assert runs.read_json(out / runs.COMPARISON)["split_hash"] == comparison["split_hash"]


def test_compare_report_names_every_metric_the_ceiling_and_the_split(compared):
    comparison, _, out = compared
    report = (out / runs.COMPARISON_REPORT).read_text()
    for key in METRIC_KEYS:
        assert f"| {key} |" in report, key
    assert "## good vs bad" in report and "P(good beats bad)" in report and "good - bad [95% CI]" in report
    assert CEILING_LABEL in report and comparison["split_hash"] in report
    assert "num_beams=1" in report  # how the runs' decodings differ
    assert "reference(s) per image on average" not in report  # three references: no single-reference note
    assert "SPICE unavailable (good, bad, middle): not compared" in report  # why, once for the three runs


def test_compare_figure_has_bars_per_run_and_a_difference_per_pair(compared):
    from matplotlib.container import BarContainer, ErrorbarContainer

    from blipnb.notebook.viz import plot_run_comparison

    comparison, _, _ = compared
    fig = plot_run_comparison(comparison)
    columns = len(fig.axes) // 2  # a column per scale (0-1 first); bars above, differences below
    unit_bars, unit_diffs = fig.axes[0], fig.axes[columns]
    assert sum(isinstance(c, BarContainer) for c in unit_bars.containers) == 4  # three runs and the ceiling
    series = [c for c in unit_diffs.containers if isinstance(c, ErrorbarContainer)]
    assert [len(c.lines[0].get_xdata()) for c in series] == [5, 5, 5]  # one per pair; BLEU-1..4, ROUGE-L


def test_compare_a_run_against_itself_differs_by_zero(tmp_path, no_java):
    a = write_run(tmp_path / "a", GOOD, REFERENCES)
    copy = write_run(tmp_path / "copy" / "a", GOOD, REFERENCES)
    comparison = compare_runs([a, copy, a], tmp_path / "out", n_boot=50)
    here = tmp_path.name  # two directories named a: each label says which
    assert list(comparison["runs"]) == [f"{here}/a", "copy/a", f"{here}/a (2)"]
    for p in comparison["pairs"]:
        for key in METRIC_KEYS:
            row = p["metrics"][key]
            if row["diff"] is not None and row["low"] is None:  # distinct-n and vocabulary have no interval
                assert row["diff"] == 0 and row["p_a_wins"] is None and "whole set" in row["note"], (key, row)
            elif row["diff"] is not None:
                assert row["diff"] == row["low"] == row["high"] == 0 and row["p_a_wins"] == 0, (key, row)


def test_compare_labels_are_the_directory_names_made_unique(tmp_path):
    assert run_labels([tmp_path / "x" / "run", tmp_path / "y" / "run", tmp_path / "z"]) == ["x/run", "y/run", "z"]
    assert run_labels([tmp_path / "r", tmp_path / "r", tmp_path / "r"]) == ["r", "r (2)", "r (3)"]


def test_compare_refuses_different_split_hashes_in_one_line(tmp_path):
    a = write_run(tmp_path / "a", GOOD, REFERENCES)
    b = write_run(tmp_path / "b", GOOD, REFERENCES, split_hash="f" * 64)
    hash_a = runs.read_json(a / runs.METRICS)["split_hash"]
    with pytest.raises(RunsNotComparable) as caught:
        compare_runs([a, b], tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message and "a and b" in message and hash_a in message and "f" * 64 in message
    assert not (tmp_path / "out").exists()  # refused before anything is scored or written


def test_compare_refuses_different_image_sets_in_one_line(tmp_path):
    fewer = {i: c for i, c in GOOD.items() if i != "img07"}
    a = write_run(tmp_path / "a", GOOD, REFERENCES)
    b = write_run(tmp_path / "b", fewer, REFERENCES, split_hash=runs.read_json(a / runs.METRICS)["split_hash"])
    with pytest.raises(RunsNotComparable, match=r"runs a and b predicted different images.*1 only in a.*img07") as e:
        compare_runs([a, b], tmp_path / "out")
    assert "\n" not in str(e.value)
    other_refs = {**REFERENCES, "img03": ["a different reference"]}
    c = write_run(tmp_path / "c", GOOD, other_refs)
    with pytest.raises(RunsNotComparable, match=r"runs a and c scored 1 image\(s\) against different references"):
        compare_runs([a, c], tmp_path / "out")


def test_compare_cli_writes_the_three_files_and_exits_0(tmp_path, no_java, capsys):
    a = write_run(tmp_path / "a", GOOD, REFERENCES)
    b = write_run(tmp_path / "b", BAD, REFERENCES)
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(a), str(b), "--out", str(out), "--n-bootstrap", "30", "--seed", "1"]) == 0
    for name in (runs.COMPARISON, runs.COMPARISON_REPORT, runs.COMPARISON_FIGURE):
        assert (out / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "## a vs b" in printed and f"| {CIDER} |" in printed and str(out / runs.COMPARISON_FIGURE) in printed
    assert runs.read_json(out / runs.COMPARISON)["n_bootstrap"] == 30


def test_compare_cli_refuses_bad_input_in_one_line(tmp_path):
    a = write_run(tmp_path / "a", GOOD, REFERENCES)
    b = write_run(tmp_path / "b", GOOD, REFERENCES, split_hash="0" * 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    runs.write_json(empty / runs.METRICS, runs.read_json(a / runs.METRICS))
    cases = {(str(a), str(b)): "different splits", (str(a), str(empty)): "03_evaluate", (str(a),): "two or more",
             (str(a), str(tmp_path / "nowhere")): "no run directory"}
    for argv, said in cases.items():
        with pytest.raises(SystemExit) as caught:
            cli.main(["compare", *argv, "--out", str(tmp_path / "out")])
        message = str(caught.value.code)
        assert message.startswith("blipnb compare: ") and said in message and "\n" not in message, message
    with pytest.raises(MissingRunFile):
        compare_runs([a, empty], tmp_path / "out")


def test_compare_report_explains_single_reference_scores(tmp_path, no_java):
    one = {i: refs[:1] for i, refs in REFERENCES.items()}
    a, b = write_run(tmp_path / "a", GOOD, one), write_run(tmp_path / "b", MIDDLE, one)
    comparison = compare_runs([a, b], tmp_path / "out", n_boot=20)
    report = (tmp_path / "out" / runs.COMPARISON_REPORT).read_text()
    assert comparison[HUMAN_CEILING] is None and "no image has two or more references" in report
    assert report.count("1.00 reference(s) per image on average") == 1  # said once, not once per run


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java")
def test_compare_scores_exact_meteor_on_the_callers_jvm(tmp_path, meteor, monkeypatch):
    import blipnb.scoring.meteor as meteor_module

    class NoSecondJVM(meteor_module.MeteorScorer):
        def __init__(self):
            raise AssertionError("compare started a METEOR JVM of its own")

    monkeypatch.setattr(meteor_module, "MeteorScorer", NoSecondJVM)
    few = dict(list(IMAGES.items())[:8])
    a = write_run(tmp_path / "a", {i: GOOD[i] for i in few}, REFERENCES)
    b = write_run(tmp_path / "b", {i: BAD[i] for i in few}, REFERENCES)
    comparison = compare_runs([a, b], tmp_path / "out", n_boot=20, meteor=meteor)
    assert comparison["results"]["a"]["ci"][METEOR]["method"] == "exact"
    assert pair(comparison, "a", "b")[METEOR]["method"] == "exact"
    assert comparison[HUMAN_CEILING]["metrics"][METEOR] is not None
    assert meteor.running()  # its owner closes it
