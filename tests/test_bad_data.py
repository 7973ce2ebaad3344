"""Bad data: every problem in one pass, on_bad_data, images that were silently corrupted,
and metadata files that ended in tracebacks. Every fixture is generated here."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from data_sources import folder_cfg, make_coco_json, make_folder, write_image, write_metadata
from PIL import Image

from blipnb import runs
from blipnb.config import DataConfig
from blipnb.data import load_captions, load_checked
from blipnb.runtime.images import to_8bit, to_rgb
from blipnb.data.problems import DataWarning
from blipnb.data.stats import caption_stats, split_table
from blipnb.errors import BadDataError, BadImageError, ParameterError
from blipnb.schema import CAPTIONS, IMAGE_ID, SPLITS


pytestmark = pytest.mark.usefixtures("isolated_caches")


def huge_png(path, side: int) -> None:
    """A side x side 1-bit PNG: `side` 12000 is 144 megapixels but a few hundred KB on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (side, side)).save(path, optimize=False)


def messy_folder(root):
    """10 listed images: a path escaping the folder, 2 empty captions (one image keeps a good one), a missing
    file, 3 unreadable images (text named .jpg, truncated PNG, header-only huge PNG), 1 image with a duplicate row."""
    root = make_folder(root, n=10, splits=["train"] * 5 + ["validation", "validation", "test", "validation", "test"])
    rows = [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]
    rows[1]["file_name"] = "../outside.png"  # line 2
    rows[2]["captions"] = ["  "]  # line 3: its only caption is empty -> the image goes
    rows[3]["captions"] = ["a good caption", ""]  # line 4: keeps the good one
    (root / "images/img_004.png").unlink()  # line 5: missing
    (root / "images/img_005.png").write_text("this is not an image")  # line 6
    good = (root / "images/img_006.png").read_bytes()
    (root / "images/img_006.png").write_bytes(good[: len(good) // 2])  # line 7: truncated
    huge_png(root / "images/img_007.png", 8000)  # line 8: 64 megapixels, over the 50 MP default
    rows.append(dict(rows[8]))  # line 11: a repeat of line 9, exactly
    write_metadata(root, rows)
    return root


# 1. One pass, every problem ------------------------------------------------------------------------------------

def test_every_problem_is_listed_in_one_error_grouped_by_reason(tmp_path):
    root = messy_folder(tmp_path / "f")
    with pytest.raises(BadDataError) as e:
        load_captions(folder_cfg(root))
    text = str(e.value)
    assert "7 problem(s), touching 7 of 10 images" in text
    for expected in ["path outside the data folder (1): metadata.jsonl line 2: file_name '../outside.png'",
                     "empty caption (2): metadata.jsonl line 3: empty or non-text caption '  '; "
                     "metadata.jsonl line 4: empty or non-text caption ''",
                     "missing file (1): images/img_004.png (metadata.jsonl line 5)",
                     "not an image (1): images/img_005.png (metadata.jsonl line 6)",
                     "truncated image (1): images/img_006.png (metadata.jsonl line 7)",
                     "too many pixels (1): images/img_007.png (metadata.jsonl line 8): 8000x8000"]:
        assert expected in text
    assert "-p on_bad_data skip" in text  # says how to go on
    assert len(e.value.problems) == 7


def test_each_reason_is_capped_with_a_count_of_the_rest(tmp_path):
    root = make_folder(tmp_path / "f", n=12)
    for i in range(9):
        (root / f"images/img_{i:03d}.png").unlink()
    with pytest.raises(BadDataError, match=r"missing file \(9\): .*img_004\.png \(metadata\.jsonl line 5\) "
                                           r"\.\.\. and 4 more") as e:
        load_captions(folder_cfg(root))
    assert "img_005.png" not in str(e.value)


def test_coco_json_problems_are_collected_too(tmp_path):
    ann = make_coco_json(tmp_path, n=10)
    data = json.loads(ann.read_text())
    data["annotations"][2]["caption"] = " "  # image 1001 keeps its other caption
    data["annotations"].append({"id": 999, "image_id": 4242, "caption": "of nothing"})
    data["annotations"].append(dict(data["annotations"][0], id=998))  # an exact repeat
    ann.write_text(json.dumps(data))
    (tmp_path / "imgs/COCO_000003.jpg").unlink()
    cfg = dict(source="coco_json", data_dir=str(tmp_path / "imgs"), annotations=str(ann))
    with pytest.raises(BadDataError) as e:
        load_captions(DataConfig(**cfg))
    for expected in ["empty caption (1): captions.json annotations[2]", "unknown image_id (1): captions.json "
                     "annotations[20]: image_id '4242'", "missing file (1): COCO_000003.jpg (captions.json images[3])"]:
        assert expected in str(e.value)
    with pytest.warns(DataWarning, match="skipped 1 of 10 images"):
        ds, _, bad, _ = load_checked(DataConfig(**cfg, on_bad_data="skip"))
    assert ds["train"][1][CAPTIONS] == ["coco image 1 take 1"] and ds["train"][0][CAPTIONS] == [
        "coco image 0 take 0", "coco image 0 take 1"]
    assert bad["captions_dropped"] == 1 and bad["duplicates_merged"] == 1


# 2. on_bad_data -------------------------------------------------------------------------------------------------

def test_skip_goes_on_without_bad_items_and_lists_them_in_the_run_directory(tmp_path):
    root, run = messy_folder(tmp_path / "f"), tmp_path / "run"
    with pytest.warns(DataWarning) as caught:
        ds, _, bad, _ = load_checked(folder_cfg(root, on_bad_data="skip"), run_dir=run)
    said = [str(w.message) for w in caught]
    assert any("merged 3 exact duplicate" in m and "line 11 repeats metadata.jsonl line 9" in m for m in said)
    line = next(m for m in said if "skipped" in m)
    assert ("skipped 6 of 10 images (path outside the data folder 1, empty caption 2, missing file 1, "
            "not an image 1, truncated image 1, too many pixels 1)") in line
    assert "dropped 1 caption(s) of images that were kept" in line and str(run / runs.SKIPPED) in line

    kept = {i: c for s in SPLITS for i, c in zip(ds[s][IMAGE_ID], ds[s][CAPTIONS])}
    assert sorted(kept) == ["images/img_000.png", "images/img_003.png", "images/img_008.png",
                            "images/img_009.png"]
    assert kept["images/img_003.png"] == ["a good caption"]  # the partly bad image keeps its good caption
    assert kept["images/img_008.png"] == ["picture number 8", "image 8 of blobs", "blob pattern 8"]  # merged

    skipped = runs.read_jsonl(run / runs.SKIPPED)
    assert len(skipped) == 7
    by_line = {r["line"]: r for r in skipped}
    assert by_line[5] == {"file": "images/img_004.png", "line": 5, "where": "metadata.jsonl line 5",
                          "reason": "missing file", "detail": "", "split": "train", "left_out": "image"}
    assert by_line[4]["reason"] == "empty caption" and by_line[4]["left_out"] == "caption"
    assert by_line[3]["left_out"] == "image"  # its only caption was empty
    assert by_line[8]["split"] == "test" and by_line[8]["reason"] == "too many pixels"

    assert bad["images_total"] == 10 and bad["images_skipped"] == 6 and bad["captions_dropped"] == 1
    assert bad["duplicates_merged"] == 3 and bad["skipped_file"] == str(run / runs.SKIPPED)
    assert bad["images_skipped_by_split"] == {"train": 3, "validation": 2, "test": 1}
    table = split_table(caption_stats(ds, max_images=2), bad)  # 01's split table
    assert {s: row["skipped images"] for s, row in table.items()} == {"train": 3, "validation": 2, "test": 1}
    assert table["train"]["images"] == 2


def test_skip_without_a_run_directory_says_nothing_was_written(tmp_path):
    root = make_folder(tmp_path / "f", n=10)
    (root / "images/img_002.png").unlink()
    with pytest.warns(DataWarning, match=r"skipped 1 of 10 images \(missing file 1\); not written to a file"):
        ds = load_captions(folder_cfg(root, on_bad_data="skip", val_fraction=0.2, test_fraction=0.2))
    assert sum(len(ds[s]) for s in SPLITS) == 9


def test_skipping_keeps_the_seeded_split_of_the_good_images(tmp_path):
    root = make_folder(tmp_path / "f", n=30)
    clean = load_captions(folder_cfg(root))
    split_of = {i: s for s in SPLITS for i in clean[s][IMAGE_ID]}
    (root / "images/img_007.png").write_text("broken")
    with pytest.warns(DataWarning):
        skipped = load_captions(folder_cfg(root, on_bad_data="skip"))
    after = {i: s for s in SPLITS for i in skipped[s][IMAGE_ID]}
    assert after == {i: s for i, s in split_of.items() if i != "images/img_007.png"}


def test_on_bad_data_is_validated():
    with pytest.raises(ParameterError, match="on_bad_data"):
        DataConfig(on_bad_data="ignore")
    with pytest.raises(ParameterError, match="encoding.*'utf-9'"):
        DataConfig(encoding="utf-9")


# 3. Images ------------------------------------------------------------------------------------------------------

def test_16_bit_images_are_scaled_by_their_range_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (16, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    out = np.asarray(to_rgb(path))
    assert out.shape == (16, 256, 3)
    assert out.min() == 0 and out.max() == 255 and 120 < out.mean() < 135  # clipping gave ~all white
    assert (np.diff(out[0, :, 0].astype(int)) >= 0).all()  # the ramp stays a ramp
    # 32-bit integer and float images too, by their own range; a constant image keeps its level.
    for img in (Image.fromarray(np.arange(-50, 50, dtype=np.int32).reshape(10, 10)),
                Image.fromarray(np.linspace(0.0, 0.01, 100, dtype=np.float32).reshape(10, 10))):
        a = np.asarray(to_8bit(img))
        assert img.mode in ("I", "F") and a.min() == 0 and a.max() == 255
    assert np.asarray(to_8bit(Image.fromarray(np.full((4, 4), 65535, np.uint16)))).max() == 255


def test_max_image_pixels_is_read_from_the_header_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    huge_png(path, 8000)
    data = path.read_bytes()
    path.write_bytes(data[:100])  # header only: decoding would fail as truncated, so any refusal is by header
    with pytest.raises(BadImageError, match=r"big\.png is 8000x8000 = 64\.0 megapixels, over max_image_pixels"):
        to_rgb(path, max_pixels=50_000_000)
    root = tmp_path / "f"
    write_image(root / "ok.png", 1)
    huge_png(root / "big.png", 8000)
    write_metadata(root, [{"file_name": "ok.png", "caption": "a", "split": "train"},
                          {"file_name": "big.png", "caption": "b", "split": "train"}])
    with pytest.raises(BadDataError, match=r"too many pixels \(1\): big\.png \(metadata\.jsonl line 2\)"):
        load_captions(folder_cfg(root))
    with pytest.raises(BadDataError, match="validation and test empty"):  # the limit raised: only splits complain
        load_captions(folder_cfg(root, max_image_pixels=70_000_000))


def test_decompression_bomb_warning_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "bomb.png"
    huge_png(path, 12000)  # 144 MP: over Pillow's own limit (89 MP), which only warns
    assert path.stat().st_size < 1_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # even where warnings are silenced
        with pytest.raises(BadImageError, match=r"bomb\.png.*decompression bomb"):
            to_rgb(path)
    # Under the default max_image_pixels, the limit the user can change is the one named.
    with pytest.raises(BadImageError, match=r"bomb\.png is 12000x12000 = 144\.0 megapixels, over max_image_pixels"):
        to_rgb(path, max_pixels=DataConfig().max_image_pixels)
    root = tmp_path / "f"
    for i in range(3):
        write_image(root / f"img_{i}.png", i)
    huge_png(root / "bomb.png", 12000)
    write_metadata(root, [{"file_name": f"img_{i}.png", "caption": "x"} for i in range(3)]
                   + [{"file_name": "bomb.png", "caption": "y"}])
    with pytest.raises(BadDataError, match=r"decompression bomb \(1\): bomb\.png \(metadata\.jsonl line 4\)"):
        load_captions(folder_cfg(root, max_image_pixels=None))


def test_exif_rotation_still_applies(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    img.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = to_rgb(tmp_path / "rotated.jpg")
    assert out.size == (20, 40)
    top, bottom = np.asarray(out)[5, 10], np.asarray(out)[35, 10]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60  # red on top after rotating


# 4. Metadata files ----------------------------------------------------------------------------------------------

def csv_folder(root, text: bytes, n: int = 3):
    for i in range(n):
        write_image(root / f"img_{i}.png", i)
    (root / "metadata.csv").write_bytes(text)
    return root


def test_non_utf8_metadata_names_file_line_and_byte_and_encoding_is_honoured(tmp_path):
    text = "file_name,caption,split\nimg_0.png,a dog,train\nimg_1.png,a café,validation\nimg_2.png,x,test\n"
    root = csv_folder(tmp_path / "f", text.encode("latin-1"))
    with pytest.raises(BadDataError, match=r"metadata\.csv: line 3, column 16 \(byte offset 61\): byte 0xe9 is "
                                           r"not valid utf-8.*-p encoding latin-1"):
        load_captions(folder_cfg(root))
    ds = load_captions(folder_cfg(root, encoding="latin-1"))
    assert ds["validation"][0][CAPTIONS] == ["a café"]


def test_csv_row_with_more_fields_than_the_header_names_the_line(tmp_path):
    text = b"file_name,caption\nimg_0.png,a dog\nimg_1.png,a dog, running\nimg_2.png,a cat\n"
    root = csv_folder(tmp_path / "f", text)
    with pytest.raises(BadDataError, match=r"more fields than the header \(1\): metadata\.csv line 3: 3 fields but "
                                           r"the header has 2: a caption containing a comma needs double quotes"):
        load_captions(folder_cfg(root, val_fraction=0.34, test_fraction=0.33))


def test_exact_duplicate_rows_are_merged_and_counted(tmp_path):
    rows = [{"file_name": f"img_{i}.png", "caption": c, "split": s}
            for i, s in enumerate(["train", "validation", "test"]) for c in ("a dog", "a brown dog")]
    rows += [rows[0], rows[0], dict(rows[2], caption="  a   dog ")]  # whitespace aside, the same caption
    root = tmp_path / "f"
    for i in range(3):
        write_image(root / f"img_{i}.png", i)
    write_metadata(root, rows, fmt="csv")
    with pytest.warns(DataWarning, match=r"merged 3 exact duplicate \(image, caption\) pair\(s\).*metadata\.csv "
                                         r"line 8 repeats metadata\.csv line 2"):
        ds, _, bad, _ = load_checked(folder_cfg(root))
    assert ds["train"][0][CAPTIONS] == ["a dog", "a brown dog"]
    assert ds["validation"][0][CAPTIONS] == ["a dog", "a brown dog"]
    assert bad["duplicates_merged"] == 3


def test_split_column_leaving_a_split_empty_names_the_column_and_counts(tmp_path):
    root = make_folder(tmp_path / "f", n=6, fmt="csv", splits=["train"] * 4 + ["test"] * 2)
    with pytest.raises(BadDataError, match=r"the 'split' column of metadata\.csv leaves validation empty "
                                           r"\(train 4, validation 0, test 2 images\)"):
        load_captions(folder_cfg(root))
