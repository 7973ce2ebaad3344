"""The image check's record in a run directory (blipnb.data.checks): the next notebook decodes only what changed.

Each load starts from what the run directory holds, as a new notebook kernel does.
"""
from __future__ import annotations

import json
import os

import pytest
from data_sources import make_folder

from blipnb import runs
from blipnb.config import DataConfig
from blipnb.data import checks, load_checked, records

pytestmark = pytest.mark.filterwarnings("ignore:on_bad_data='skip'")  # the one bad file, said on every load


@pytest.fixture
def folder(tmp_path):
    root = make_folder(tmp_path / "data", n=12, splits=["train"] * 8 + ["validation"] * 2 + ["test"] * 2)
    (root / "images/img_011.png").write_bytes(b"not an image at all")  # one bad file, recorded as such
    return root


@pytest.fixture
def decodes(monkeypatch):
    """The paths decoded by the image check."""
    seen = []
    original = records._image_error

    def counting(path, max_pixels):
        seen.append(path.name)
        return original(path, max_pixels)

    monkeypatch.setattr(records, "_image_error", counting)
    return seen


def _load(root, run):
    return load_checked(DataConfig(source="folder", data_dir=str(root), on_bad_data="skip"), run_dir=run)


def test_a_second_load_in_the_run_dir_decodes_nothing_and_finds_the_same(folder, tmp_path, decodes):
    run = tmp_path / "run"
    first = _load(folder, run)
    assert len(decodes) == 12 and (run / runs.IMAGE_CHECKS).is_file()
    decodes.clear()
    second = _load(folder, run)
    assert decodes == []  # every answer came from the record, the bad file's too
    assert second.bad_data == first.bad_data and second.bad_data["images_skipped"] == 1
    assert {s: second.ds[s]["image_id"] for s in second.ds} == {s: first.ds[s]["image_id"] for s in first.ds}
    assert second.near_duplicate_pairs == first.near_duplicate_pairs


def test_a_file_changed_since_is_checked_again(folder, tmp_path, decodes):
    run = tmp_path / "run"
    _load(folder, run)
    path = folder / "images/img_003.png"
    stat = path.stat()
    path.write_bytes(path.read_bytes()[:40])  # truncated after 01 checked it
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    decodes.clear()
    again = _load(folder, run)
    assert decodes == ["img_003.png"]
    assert again.bad_data["images_skipped"] == 2 and "img_003" not in str(again.ds["train"]["image_id"])


def test_a_record_from_another_pillow_is_ignored_whole(folder, tmp_path, decodes):
    run = tmp_path / "run"
    _load(folder, run)
    record = run / runs.IMAGE_CHECKS
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({**saved, "pillow": "0.0.1"}))
    decodes.clear()
    _load(folder, run)
    assert len(decodes) == 12
    record.write_text("{ truncated")  # unreadable: checked afresh, and written anew
    decodes.clear()
    _load(folder, run)
    assert len(decodes) == 12 and json.loads(record.read_text())["format"] == checks.FORMAT


def test_without_a_run_dir_nothing_is_written_but_loads_sharing_their_checks_decode_once(folder, tmp_path, decodes):
    cfg = DataConfig(source="folder", data_dir=str(folder), on_bad_data="skip")
    shared = checks.ImageChecks()
    load_checked(cfg, image_checks=shared)
    load_checked(cfg, image_checks=shared)
    assert len(decodes) == 12  # the second load, handed the first one's checks, decoded nothing
    load_checked(cfg)
    assert len(decodes) == 24  # a load with checks of its own decodes everything again: nothing is kept elsewhere
    assert not any(tmp_path.rglob("image_checks.json"))
