"""Near-duplicate images across splits: planted copies are found, unrelated images are not, policies act."""
from __future__ import annotations

import io

import numpy as np
import pytest
from data_sources import blob_image, make_folder
from PIL import Image

from blipnb.config import DataConfig
from blipnb.data import IMAGE_ID, load_captions, load_checked
from blipnb.data.leaks import (NearDuplicateWarning, _close_pairs, apply_near_duplicate_policy, near_duplicates,
                          remaining_pairs)

SPLITS_10 = ["train"] * 6 + ["validation"] * 2 + ["test"] * 2


@pytest.fixture
def planted(tmp_path):
    """A folder whose test split holds a resized copy and a JPEG re-encoded copy of two train images."""
    root = make_folder(tmp_path / "f", n=10, splits=SPLITS_10)
    blob_image(1, 48).resize((40, 40), Image.Resampling.BILINEAR).save(root / "images/img_008.png")
    buf = io.BytesIO()
    blob_image(3, 48).save(buf, format="JPEG", quality=60)
    (root / "images/img_009.png").write_bytes(buf.getvalue())  # a JPEG under a .png name: PIL sniffs content
    return root


def cfg(root, action) -> DataConfig:
    return DataConfig(source="folder", data_dir=str(root), near_duplicates=action)


def test_planted_copies_found_and_unrelated_images_not_flagged(planted):
    with pytest.warns(NearDuplicateWarning, match="2 near-duplicate"):
        ds = load_captions(cfg(planted, "warn"))
    pairs = near_duplicates(ds)
    found = {(p["split_a"], p["id_a"], p["split_b"], p["id_b"]) for p in pairs}
    assert found == {("train", "images/img_001.png", "test", "images/img_008.png"),
                     ("train", "images/img_003.png", "test", "images/img_009.png")}
    assert all(p["distance"] <= 4 for p in pairs)
    assert len(ds["test"]) == 2  # warn keeps them


def test_unrelated_images_are_far_apart(tmp_path):
    ds = load_captions(DataConfig(source="folder", data_dir=str(make_folder(tmp_path / "f", n=40)),
                                  val_fraction=0.25, test_fraction=0.25, near_duplicates="fail"))
    assert near_duplicates(ds, max_distance=10) == []


def test_drop_removes_the_test_copies(planted):
    with pytest.warns(NearDuplicateWarning, match="dropped 2 from test"):
        ds = load_captions(cfg(planted, "drop"))
    assert len(ds["test"]) == 0 and len(ds["train"]) == 6 and len(ds["validation"]) == 2


def test_load_checked_reports_what_it_found_and_what_remains(planted):
    """01 shows the pairs found while loading, without hashing every image a second time."""
    with pytest.warns(NearDuplicateWarning):
        kept, found, *_ = load_checked(cfg(planted, "warn"))
    assert len(found) == 2 and remaining_pairs(found, kept) == found
    with pytest.warns(NearDuplicateWarning):
        dropped, found, *_ = load_checked(cfg(planted, "drop"))
    assert len(found) == 2 and remaining_pairs(found, dropped) == []


def test_fail_raises_naming_the_ids(planted):
    with pytest.raises(ValueError, match=r"train:images/img_001\.png ~ test:images/img_008\.png"):
        load_captions(cfg(planted, "fail"))


def test_policy_drops_only_the_later_split(planted):
    with pytest.warns(NearDuplicateWarning):
        ds = load_captions(cfg(planted, "warn"))
    first_val = ds["validation"][0][IMAGE_ID]
    pairs = [{"split_a": "validation", "id_a": first_val, "split_b": "test", "id_b": "images/img_009.png",
              "distance": 0}]
    with pytest.warns(NearDuplicateWarning, match="dropped 1 from test"):
        out = apply_near_duplicate_policy(ds, pairs, "drop")
    assert list(out["test"][IMAGE_ID]) == ["images/img_008.png"] and len(out["validation"]) == 2


def test_chunked_hamming_search_matches_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, 300, dtype=np.uint64)
    b = np.concatenate([a[:5] ^ np.uint64(0b101), rng.integers(0, 2**63, 200, dtype=np.uint64)])
    expected = {(i, j) for i in range(len(a)) for j in range(len(b)) if (int(a[i]) ^ int(b[j])).bit_count() <= 4}
    got = {(i, j) for i, j, _ in _close_pairs(a, b, 4, block=1000)}
    assert got == expected and {(i, i) for i in range(5)} <= got


def test_sample_source_has_no_near_duplicates(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIPNB_CACHE", str(tmp_path))
    ds = load_captions(DataConfig(source="sample", sample_train=300, sample_validation=50, sample_test=50,
                                  near_duplicates="fail"))
    assert len(ds["test"]) == 50


def test_hashes_kept_from_the_image_check_equal_fresh_ones_and_never_go_stale(planted):
    """The image check's decode gives the leak check its dHash (no second decode): for PNG and JPEG alike it is the
    hash a fresh decode gives, and a file rewritten since is hashed anew."""
    import os

    from blipnb.data import checks, leaks

    image_checks = checks.ImageChecks()
    with pytest.warns(NearDuplicateWarning):
        ds = load_captions(cfg(planted, "warn"), image_checks=image_checks)
    test, checked = ds["test"], image_checks.used
    assert len(checked) == 10 and all(image_checks.known_hash(k) is not None for k in checked)
    ids, kept = leaks.hash_split(test, image_checks=image_checks)
    for source in test.cast_column("image", test.features["image"].__class__(decode=False))["image"]:
        with Image.open(source["path"]) as im:  # decoded afresh: the same hash
            assert leaks.dhash(im) == image_checks.known_hash(checks.file_key(source["path"]))
    path = planted / "images/img_009.png"  # the JPEG copy
    assert ids[1] == "images/img_009.png"
    stat = path.stat()
    blob_image(7, 48).save(path, format="PNG")  # rewritten: another size and time, so another key
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    fresh = leaks.hash_split(test, image_checks=image_checks)[1].tolist()
    with Image.open(path) as im:
        assert fresh[1] == leaks.dhash(im) != kept[1]
