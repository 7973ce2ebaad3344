"""Corrections to reference captions: recorded in the run directory, applied to every source when loading, checked
line by line, counted in 01's summary, and visible in the split hash. The data folder is never written to."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from blipnb import runs
from blipnb.config import DataConfig
from blipnb.data import load_captions, load_checked, split_hashes
from blipnb.data.corrections import file_sha256, record_correction
from blipnb.errors import BadDataError, ParameterError, RunsNotComparable
from blipnb.evaluation.compare import check_comparable

from data_sources import folder_cfg, make_folder

SMALL_SAMPLE = {"source": "sample", "sample_train": 12, "sample_validation": 4, "sample_test": 4,
                "sample_max_shapes": 1}


def sample_cfg(data_dir, **kw) -> DataConfig:
    return DataConfig(**(SMALL_SAMPLE | kw), data_dir=str(data_dir))


def folder_hash(root: Path) -> dict[str, str]:
    """Every file under `root` by relative path, with the sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def refs_of(ds, image_id):
    for split in ds:
        ids = list(ds[split]["image_id"])
        if image_id in ids:
            return split, ds[split]["captions"][ids.index(image_id)]
    return None, None


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "data", n=10, splits=["train"] * 6 + ["validation"] * 2 + ["test"] * 2)


def test_record_correction_appends_one_line_per_change(tmp_path):
    run = tmp_path / "run"
    edit = record_correction(run, "img_1", 2, "a cat", "a dog")
    drop = record_correction(run, "img_1", 0, "a mat")
    lines = runs.read_jsonl(run / runs.CORRECTIONS)
    assert lines == [edit, drop]
    assert {k: edit[k] for k in ("image_id", "reference", "old", "new")} == {
        "image_id": "img_1", "reference": 2, "old": "a cat", "new": "a dog"}
    assert drop["drop"] is True and "new" not in drop and "drop" not in edit
    assert edit["time"].endswith("+00:00")  # UTC, ISO 8601


@pytest.mark.parametrize("bad", [{"reference": -1}, {"reference": "0"}, {"new": "  "}, {"new": "a cat"}])
def test_record_correction_refuses_a_meaningless_change(tmp_path, bad):
    args = {"image_id": "img_1", "reference": 0, "old": "a cat", "new": "a dog"} | bad
    with pytest.raises(ParameterError):
        record_correction(tmp_path, **args)
    assert not (tmp_path / runs.CORRECTIONS).exists()


def test_correction_edit_and_drop_apply_to_the_sample(tmp_path):
    cfg = sample_cfg(tmp_path / "sample")
    ds = load_captions(cfg)
    before = folder_hash(tmp_path / "sample")
    assert before  # the sample was written there: its files are what must not change
    image_id = ds["test"]["image_id"][0]
    caps = ds["test"]["captions"][0]
    record_correction(tmp_path / "run", image_id, 0, caps[0], "a corrected caption")
    record_correction(tmp_path / "run", image_id, 1, caps[1])
    checked = load_checked(sample_cfg(tmp_path / "sample", corrections=str(tmp_path / "run" / runs.CORRECTIONS)))
    assert refs_of(checked.ds, image_id) == ("test", ["a corrected caption", *caps[2:]])
    assert checked.corrections["references_edited"] == 1 and checked.corrections["references_dropped"] == 1
    assert checked.corrections["images_changed"] == 1 and checked.corrections["images_removed"] == 0
    assert checked.corrections["sha256"] == file_sha256(tmp_path / "run" / runs.CORRECTIONS)
    assert load_checked(cfg).corrections is None
    assert folder_hash(tmp_path / "sample") == before


def test_correction_of_a_correction_applies_in_order(folder, tmp_path):
    run = tmp_path / "run"
    record_correction(run, "images/img_008.png", 1, "image 8 of blobs", "first try")
    record_correction(run, "images/img_008.png", 1, "first try", "second try")
    ds = load_captions(folder_cfg(folder, corrections=str(run / runs.CORRECTIONS)))
    assert refs_of(ds, "images/img_008.png") == ("test", ["picture number 8", "second try", "blob pattern 8"])


def test_correction_dropping_every_reference_removes_the_image(folder, tmp_path):
    run = tmp_path / "run"
    for text in ("picture number 9", "image 9 of blobs", "blob pattern 9"):
        record_correction(run, "images/img_009.png", 0, text)  # each drop moves the next reference to index 0
    checked = load_checked(folder_cfg(folder, corrections=str(run / runs.CORRECTIONS)))
    assert refs_of(checked.ds, "images/img_009.png") == (None, None)
    assert len(checked.ds["test"]) == 1
    assert checked.corrections["images_removed"] == 1
    assert checked.corrections["images_removed_by_split"] == {"test": 1}
    assert checked.corrections["references_dropped"] == 3


def test_correction_with_stale_old_text_names_the_line_and_applies_nothing(folder, tmp_path):
    run = tmp_path / "run"
    record_correction(run, "images/img_008.png", 0, "picture number 8", "fine")
    record_correction(run, "images/img_008.png", 2, "blob pattern 8 (as it once read)", "stale")
    with pytest.raises(BadDataError) as err:
        load_captions(folder_cfg(folder, corrections=str(run / runs.CORRECTIONS)))
    message = str(err.value)
    assert str(run / runs.CORRECTIONS) in message and "line 2:" in message and "line 1:" not in message
    assert "'blob pattern 8'" in message and "as it once read" in message


def test_correction_file_with_bad_lines_lists_them_all(folder, tmp_path):
    path = tmp_path / "corrections.jsonl"
    lines = ['{"image_id": "images/img_008.png", "reference": 0, "old": "picture number 8", "new": "ok"}',
             "not json",
             '{"image_id": "images/img_008.png", "reference": 0, "new": "no old"}',
             '{"image_id": "nope", "reference": 0, "old": "x", "drop": true}',
             '{"image_id": "images/img_008.png", "reference": 7, "old": "x", "drop": true}',
             '{"image_id": "images/img_008.png", "reference": 1, "old": "image 8 of blobs", "new": "both", "drop": true}']
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadDataError) as err:
        load_captions(folder_cfg(folder, corrections=str(path)))
    message = str(err.value)
    assert "5 line(s)" in message
    for expected in ("line 2: not valid JSON", "line 3: lacks old", "line 4: image_id 'nope' is not in the data",
                     "line 5: reference 7 of 'images/img_008.png' is out of range", "line 6: needs exactly one of"):
        assert expected in message
    assert "line 1:" not in message


def test_correction_file_that_is_missing_is_a_clear_error(folder, tmp_path):
    with pytest.raises(BadDataError, match="absent.jsonl.*cannot be read"):
        load_captions(folder_cfg(folder, corrections=str(tmp_path / "absent.jsonl")))


def test_corrections_never_write_to_the_data_folder(folder, tmp_path):
    before = folder_hash(folder)
    run = tmp_path / "run"
    ds = load_captions(folder_cfg(folder), run_dir=run)
    record_correction(run, "images/img_000.png", 0, ds["train"]["captions"][0][0], "edited")
    record_correction(run, "images/img_009.png", 2, "blob pattern 9")
    corrected = load_captions(folder_cfg(folder, corrections=str(run / runs.CORRECTIONS)), run_dir=run)
    assert refs_of(corrected, "images/img_000.png")[1][0] == "edited"
    assert folder_hash(folder) == before


def test_correction_changes_the_hash_of_the_splits_it_touched(folder, tmp_path):
    run = tmp_path / "run"
    plain = split_hashes(load_captions(folder_cfg(folder)))
    again = split_hashes(load_captions(folder_cfg(folder)))
    record_correction(run, "images/img_008.png", 0, "picture number 8", "a fixed test reference")
    fixed = split_hashes(load_captions(folder_cfg(folder, corrections=str(run / runs.CORRECTIONS))))
    assert plain == again
    ids = load_captions(folder_cfg(folder))["test"]["image_id"]
    assert plain["test"] == hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()  # as before corrections
    assert fixed["test"] != plain["test"]
    assert fixed["train"] == plain["train"] and fixed["validation"] == plain["validation"]
    # Undone by a later line: the references are today's again, and so is the hash.
    record_correction(run, "images/img_008.png", 0, "a fixed test reference", "picture number 8")
    assert split_hashes(load_captions(folder_cfg(folder, corrections=str(run / runs.CORRECTIONS)))) == plain


def test_correction_hash_survives_the_eval_cap(folder, tmp_path):
    run = tmp_path / "run"
    record_correction(run, "images/img_008.png", 0, "picture number 8", "a fixed test reference")
    cfg = folder_cfg(folder, corrections=str(run / runs.CORRECTIONS), max_eval_samples=1)
    capped = split_hashes(load_captions(cfg))
    assert capped["test"] != split_hashes(load_captions(folder_cfg(folder, max_eval_samples=1)))["test"]


def _scored(label, split_hash, references):
    return {"label": label, "metrics": {"split_hash": split_hash}, "predictions": {i: "a" for i in references},
            "references": references}


def test_compare_refuses_runs_with_and_without_corrections(folder, tmp_path):
    run = tmp_path / "run"
    plain = load_captions(folder_cfg(folder))
    record_correction(run, "images/img_008.png", 0, "picture number 8", "a fixed test reference")
    fixed = load_captions(folder_cfg(folder, corrections=str(run / runs.CORRECTIONS)))
    a = _scored("plain", split_hashes(plain)["test"], dict(zip(plain["test"]["image_id"], plain["test"]["captions"])))
    b = _scored("fixed", split_hashes(fixed)["test"], dict(zip(fixed["test"]["image_id"], fixed["test"]["captions"])))
    with pytest.raises(RunsNotComparable, match="plain and fixed scored the same 2 test images against different "
                                                "references"):
        check_comparable([a, b])
    check_comparable([b, dict(b, label="fixed again")])  # the same corrections: the same test set


def test_provenance_names_the_corrections_file(folder, tmp_path):
    from blipnb.config import Config
    from blipnb.training.provenance import provenance

    run = tmp_path / "run"
    record_correction(run, "images/img_008.png", 0, "picture number 8", "x")
    path = run / runs.CORRECTIONS
    cfg = Config(data=folder_cfg(folder, corrections=str(path)))
    assert provenance(cfg)["corrections"] == {"file": str(path), "sha256": file_sha256(path)}
    assert provenance(Config(data=folder_cfg(folder)))["corrections"] is None


def test_notebook_01_reports_corrections(tmp_path):
    import papermill

    from inprocess import NB_DIR, SMOKE

    sample = tmp_path / "sample"
    ds = load_captions(sample_cfg(sample, sample_train=SMOKE["sample_train"],
                                  sample_validation=SMOKE["sample_validation"], sample_test=SMOKE["sample_test"]))
    test_id, caps = ds["test"]["image_id"][0], ds["test"]["captions"][0]
    record_correction(tmp_path / "fixes", test_id, 0, caps[0], "a corrected reference")
    for text in caps[1:]:
        record_correction(tmp_path / "fixes", test_id, 1, text)
    path = tmp_path / "fixes" / runs.CORRECTIONS
    run = tmp_path / "run"
    papermill.execute_notebook(str(NB_DIR / "01_data_exploration.ipynb"), str(tmp_path / "01.ipynb"),
                               parameters={"preset": "smoke", "run_dir": str(run), "corrections": str(path)},
                               kernel_name="python3", progress_bar=False)
    summary = json.loads((run / runs.DATA_SUMMARY).read_text())
    counts = summary["corrections"]
    assert counts["references_edited"] == 1 and counts["references_dropped"] == len(caps) - 1
    assert counts["images_changed"] == 1 and counts["images_removed"] == 0
    assert counts["sha256"] == file_sha256(path)
    assert summary["split_hashes"]["test"] != split_hashes(ds)["test"]
    assert summary["split_hashes"]["train"] == split_hashes(ds)["train"]


def _browser_rows() -> list[dict]:
    return [{"image_id": f"img{i}", "prediction": "a dog", "references": [f"reference {i}", "a cat", "a hat"],
             "scores": {"CIDEr": float(i)}} for i in range(3)]


def test_correction_from_the_browser_is_recorded_and_shown(tmp_path):
    from blipnb.notebook import widgets

    rows = _browser_rows()
    browser = widgets.browse_predictions(rows, run_dir=tmp_path)
    editor = browser.editor
    assert browser.current["image_id"] == "img0" and editor.reference.options[1] == ("2: a cat", 1)
    editor.reference.value = 1
    editor.drop()
    editor.reference.value = 1  # after the drop, "a hat" is the second reference
    assert editor.text.value == "a hat"
    editor.text.value = "a red hat"
    editor.replace()
    lines = runs.read_jsonl(tmp_path / runs.CORRECTIONS)
    assert [(x["reference"], x["old"], x.get("new"), x.get("drop")) for x in lines] == [
        (1, "a cat", None, True), (1, "a hat", "a red hat", None)]
    assert browser.current["references"] == ["reference 0", "a red hat"]
    assert "a red hat" in browser.details.value and "a cat" not in browser.details.value
    assert "img0" in editor.status.value and "a red hat" in editor.status.value
    assert rows[0]["references"] == ["reference 0", "a cat", "a hat"]  # the caller's rows are left alone
    # The lines apply to data holding the same references, in order.
    refs = {r["image_id"]: r["references"] for r in rows}
    from blipnb.data.corrections import replay
    assert replay(tmp_path / runs.CORRECTIONS, refs).captions == {"img0": ["reference 0", "a red hat"]}


def test_correction_browser_opened_again_shows_what_was_recorded(tmp_path):
    from blipnb.notebook import widgets

    record_correction(tmp_path, "img1", 0, "reference 1", "fixed 1")
    browser = widgets.browse_predictions(_browser_rows(), run_dir=tmp_path)
    assert next(r for r in browser.rows if r["image_id"] == "img1")["references"][0] == "fixed 1"
    assert "1 recorded since" in browser.editor.status.value
    browser.rank.value = 1
    browser.editor.drop()  # index 0 is "fixed 1" now: the line must say so
    assert runs.read_jsonl(tmp_path / runs.CORRECTIONS)[-1]["old"] == "fixed 1"


def test_correction_browser_continues_the_file_its_data_applied(tmp_path):
    from blipnb.notebook import widgets

    first = tmp_path / "first"
    record_correction(first, "img1", 0, "reference 1", "fixed 1")
    rows = _browser_rows()
    rows[1]["references"][0] = "fixed 1"  # what the second run's data holds, loaded with corrections=first/...
    second = tmp_path / "second"
    browser = widgets.browse_predictions(rows, run_dir=second, applied=str(first / runs.CORRECTIONS))
    assert (second / runs.CORRECTIONS).read_bytes() == (first / runs.CORRECTIONS).read_bytes()
    browser.editor.drop()
    assert [x.get("new") for x in runs.read_jsonl(second / runs.CORRECTIONS)] == ["fixed 1", None]


def test_corrections_survive_overwrite(tmp_path):
    record_correction(tmp_path, "img_1", 0, "a cat", "a dog")
    runs.write_json(tmp_path / runs.METRICS, {})
    removed = runs.clear_outputs(tmp_path)
    assert removed == [runs.METRICS] and (tmp_path / runs.CORRECTIONS).is_file()
