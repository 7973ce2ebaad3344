"""Each data source on a tiny fixture of its real schema, and the canonical-form guarantees."""
from __future__ import annotations

import json
import os

import datasets
import pytest
from data_sources import (
    make_caption_rows_parquet,
    make_coco_json,
    make_flickr8k_parquet,
    folder_cfg,
    make_folder,
    make_karpathy,
    make_karpathy_hub,
    write_image,
    write_metadata,
)

from blipnb.data import sample
from blipnb.config import DataConfig
from blipnb.data import check_disjoint, load_captions, split_hashes
from blipnb.data.stats import caption_stats
from blipnb.errors import BadDataError, DataSourceUnavailable
from blipnb.schema import CAPTIONS, IMAGE, IMAGE_ID, SPLITS


pytestmark = pytest.mark.usefixtures("isolated_caches")


def ids(ds, split) -> list[str]:
    return list(ds[split][IMAGE_ID])


def assert_canonical(ds):
    assert list(ds) == list(SPLITS)
    for split in SPLITS:
        assert isinstance(ds[split].features[IMAGE], datasets.Image)
        for caps in ds[split][CAPTIONS]:
            assert caps and all(c == c.strip() and c for c in caps)
    check_disjoint(ds)


def test_folder_jsonl_with_captions_and_split(tmp_path):
    splits = ["train"] * 6 + ["val", "dev", "test", "test"]
    ds = load_captions(folder_cfg(make_folder(tmp_path / "f", splits=splits)))
    assert_canonical(ds)
    assert {s: len(ds[s]) for s in SPLITS} == {"train": 6, "validation": 2, "test": 2}
    assert ids(ds, "test") == ["images/img_008.png", "images/img_009.png"]
    row = ds["train"][0]
    assert row[CAPTIONS] == ["picture number 0", "image 0 of blobs", "blob pattern 0"]
    assert row["note"] == "n0"  # extra columns survive
    assert row[IMAGE].size == (48, 48)


def test_folder_csv_with_one_caption_per_row_groups_by_file(tmp_path):
    splits = ["train"] * 6 + ["validation"] * 2 + ["test"] * 2
    ds = load_captions(folder_cfg(make_folder(tmp_path / "f", fmt="csv", per_row=True, splits=splits)))
    assert_canonical(ds)
    assert len(ds["train"]) == 6
    assert all(len(c) == 3 for s in SPLITS for c in ds[s][CAPTIONS])


def test_folder_csv_captions_cell_is_a_json_list(tmp_path):
    root = make_folder(tmp_path / "f", n=6, fmt="csv")
    assert (root / "metadata.csv").read_text().count('"[') == 6
    ds = load_captions(folder_cfg(root, val_fraction=0.2, test_fraction=0.2))
    assert sorted(len(c) for s in SPLITS for c in ds[s][CAPTIONS]) == [3] * 6


def test_no_split_column_gives_a_seeded_split_by_image(tmp_path):
    root = make_folder(tmp_path / "f", n=40)
    cfg = {"val_fraction": 0.1, "test_fraction": 0.2}
    a = load_captions(folder_cfg(root, split_seed=1, **cfg))
    b = load_captions(folder_cfg(root, split_seed=1, **cfg))
    c = load_captions(folder_cfg(root, split_seed=2, **cfg))
    assert {s: len(a[s]) for s in SPLITS} == {"train": 28, "validation": 4, "test": 8}
    assert split_hashes(a) == split_hashes(b)
    assert split_hashes(a)["test"] != split_hashes(c)["test"]
    assert sorted(ids(a, "train") + ids(a, "validation") + ids(a, "test")) == sorted(ids(c, "train") + ids(c, "validation") + ids(c, "test"))


@pytest.mark.parametrize("name", ["../outside.png", "/etc/passwd", "images/../../outside.png", "link.png"])
def test_file_name_escaping_the_root_is_refused(tmp_path, name):
    root = make_folder(tmp_path / "f", n=3)
    write_image(tmp_path / "outside.png", 1)
    os.symlink(tmp_path / "outside.png", root / "link.png")
    write_metadata(root, [{"file_name": "images/img_000.png", "caption": "ok"}, {"file_name": name, "caption": "x"}])
    with pytest.raises(ValueError, match=r"metadata.jsonl line 2.*" + name.replace(".", r"\.")):
        load_captions(folder_cfg(root))


def test_missing_file_error_names_file_and_row(tmp_path):
    root = make_folder(tmp_path / "f", n=5)
    os.remove(root / "images/img_003.png")
    with pytest.raises(BadDataError, match=r"1 of 5 images(?s:.*)missing file \(1\): images/img_003\.png "
                                           r"\(metadata\.jsonl line 4\)"):
        load_captions(folder_cfg(root))


def test_corrupt_images_are_listed_in_one_error(tmp_path):
    root = make_folder(tmp_path / "f", n=6)
    (root / "images/img_001.png").write_bytes(b"not an image at all")
    good = (root / "images/img_004.png").read_bytes()
    (root / "images/img_004.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(BadDataError, match=r"2 of 6 images(?s:.*)img_001\.png \(metadata\.jsonl line 2\)(?s:.*)"
                                           r"img_004\.png"):
        load_captions(folder_cfg(root))


def test_empty_caption_error_names_the_row(tmp_path):
    root = make_folder(tmp_path / "f", n=4)
    write_metadata(root, [{"file_name": f"images/img_00{i}.png", "caption": "  " if i == 2 else "a"} for i in range(4)])
    with pytest.raises(ValueError, match=r"metadata\.jsonl line 3: empty"):
        load_captions(folder_cfg(root))


def test_unknown_split_value_names_the_row(tmp_path):
    root = make_folder(tmp_path / "f", n=4, splits=["train", "train", "holdout", "test"])
    with pytest.raises(ValueError, match=r"line 3: unknown split 'holdout'"):
        load_captions(folder_cfg(root))


def test_grayscale_cmyk_and_alpha_images_load(tmp_path):
    root = tmp_path / "f"
    for i, (mode, ext) in enumerate([("L", "png"), ("CMYK", "jpg"), ("RGBA", "png"), ("RGB", "png")] * 2):
        write_image(root / f"img_{i}.{ext}", i, mode=mode)
    write_metadata(root, [{"file_name": f"img_{i}.{ext}", "caption": "x", "split": s} for i, (ext, s) in enumerate(
        zip(["png", "jpg", "png", "png"] * 2, ["train"] * 6 + ["validation", "test"]))])
    ds = load_captions(folder_cfg(root))
    assert {ds["train"][i][IMAGE].mode for i in range(4)} == {"L", "CMYK", "RGBA", "RGB"}


def test_check_disjoint_names_duplicated_ids(tmp_path):
    ds = load_captions(folder_cfg(make_folder(tmp_path / "f", n=10), val_fraction=0.2, test_fraction=0.2))
    assert check_disjoint(ds) == {"sizes": {"train": 6, "validation": 2, "test": 2},
                                  "overlap": {"train/validation": 0, "train/test": 0, "validation/test": 0}}
    leaked = ds["train"][0][IMAGE_ID]
    ds["test"] = datasets.concatenate_datasets([ds["test"], ds["train"].select([0])])
    with pytest.raises(ValueError, match=r"1 id\(s\) in both train and test: '" + leaked):
        check_disjoint(ds)


def test_max_samples_keep_the_first_images_of_each_split(tmp_path):
    splits = ["train"] * 6 + ["validation"] * 2 + ["test"] * 2
    root = make_folder(tmp_path / "f", splits=splits)
    full = load_captions(folder_cfg(root))
    capped = load_captions(folder_cfg(root, max_train_samples=3, max_eval_samples=1))
    assert ids(capped, "train") == ids(full, "train")[:3]
    assert ids(capped, "test") == ids(full, "test")[:1] and len(capped["validation"]) == 1


def test_flickr8k_from_local_parquet(tmp_path):
    ds = load_captions(DataConfig(source="flickr8k", hub_id=str(make_flickr8k_parquet(tmp_path / "hub"))))
    assert_canonical(ds)
    assert {s: len(ds[s]) for s in SPLITS} == {"train": 6, "validation": 2, "test": 2}
    assert ds["test"][0][CAPTIONS] == [f"test image 8 caption {k}" for k in range(5)]
    assert all(len(i) == 16 and int(i, 16) >= 0 for s in SPLITS for i in ids(ds, s))


def test_flickr8k_rows_grouped_and_split_by_image(tmp_path):
    root = make_caption_rows_parquet(tmp_path / "hub", n_images=20)
    cfg = DataConfig(source="flickr8k_rows", hub_id=str(root), val_fraction=0.1, test_fraction=0.1)
    ds = load_captions(cfg)
    assert_canonical(ds)  # no image in two splits, although the source has 5 rows per image
    assert {s: len(ds[s]) for s in SPLITS} == {"train": 16, "validation": 2, "test": 2}
    for s in SPLITS:
        for caps in ds[s][CAPTIONS]:
            assert len(caps) == 5 and len({c.split()[1] for c in caps}) == 1  # all 5 captions of one image
    again = load_captions(cfg)
    assert split_hashes(again) == split_hashes(ds)


def test_coco_json_with_and_without_split(tmp_path):
    ann = make_coco_json(tmp_path, n=10)
    ds = load_captions(DataConfig(source="coco_json", data_dir=str(tmp_path / "imgs"), annotations=str(ann)))
    assert_canonical(ds)
    assert ids(ds, "validation") == ["1006", "1007"] and ids(ds, "test") == ["1008", "1009"]
    assert ds["train"][0][CAPTIONS] == ["coco image 0 take 0", "coco image 0 take 1"]
    ann2 = make_coco_json(tmp_path / "b", n=20, with_split=False)
    ds2 = load_captions(DataConfig(source="coco_json", data_dir=str(tmp_path / "b/imgs"), annotations=str(ann2),
                                   val_fraction=0.1, test_fraction=0.1))
    assert {s: len(ds2[s]) for s in SPLITS} == {"train": 16, "validation": 2, "test": 2}


def test_coco_karpathy_local_json_and_hub_layout_agree(tmp_path):
    coco_root, ann = make_karpathy(tmp_path)
    local = load_captions(DataConfig(source="coco_karpathy", data_dir=str(coco_root), annotations=str(ann)))
    assert_canonical(local)
    assert ids(local, "train") == ["500", "501", "502", "503"]  # restval joins train
    assert ids(local, "validation") == ["504", "505"] and ids(local, "test") == ["506", "507"]
    assert local["test"][0][CAPTIONS][0] == "karpathy 6 sentence 0."
    hub = load_captions(DataConfig(source="coco_karpathy", data_dir=str(coco_root),
                                   hub_id=str(make_karpathy_hub(tmp_path / "hub"))))
    assert split_hashes(hub) == split_hashes(local)
    assert list(hub["train"][CAPTIONS]) == list(local["train"][CAPTIONS])


def test_duplicated_entry_across_splits_is_an_error_naming_the_id(tmp_path):
    coco_root, ann = make_karpathy(tmp_path)
    entries = json.loads(ann.read_text())["images"]
    entries.append({**entries[0], "split": "test"})  # the same COCO image listed again, in test
    ann.write_text(json.dumps({"images": entries}))
    with pytest.raises(ValueError, match=r"1 id\(s\) in both train and test: '500'"):
        load_captions(DataConfig(source="coco_karpathy", data_dir=str(coco_root), annotations=str(ann)))


def test_coco_karpathy_missing_images_listed_with_root(tmp_path):
    coco_root, ann = make_karpathy(tmp_path)
    for f in sorted((coco_root / "val2014").iterdir())[:3]:
        f.unlink()
    with pytest.raises(BadDataError, match=rf"under {coco_root}: .* 3 of 8 images:\n  missing file \(3\): val2014/"):
        load_captions(DataConfig(source="coco_karpathy", data_dir=str(coco_root), annotations=str(ann)))


def test_unreachable_hub_dataset_names_it_and_the_offline_preset():
    with pytest.raises(DataSourceUnavailable, match=r"'nobody/no-such-set'.*notebooks/params/sample\.yaml") as e:
        load_captions(DataConfig(source="flickr8k", hub_id="nobody/no-such-set"))
    assert e.value.__cause__ is not None


def test_sample_source_is_cached_and_regenerated_only_when_incomplete(tmp_path, monkeypatch):
    calls = []
    real = sample.make_sample
    monkeypatch.setattr(sample, "make_sample", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    cfg = DataConfig(source="sample", sample_train=12, sample_validation=4, sample_test=4)
    ds = load_captions(cfg)
    assert_canonical(ds)
    assert {s: len(ds[s]) for s in SPLITS} == {"train": 12, "validation": 4, "test": 4}
    assert all(len(c) == 5 for c in ds["train"][CAPTIONS])
    assert json.loads(ds["train"][0]["attributes"])["count"] >= 1
    (cache,) = (tmp_path / "blipnb_cache" / "sample").iterdir()
    stamp = (cache / "metadata.jsonl").stat().st_mtime_ns
    load_captions(cfg)
    assert (cache / "metadata.jsonl").stat().st_mtime_ns == stamp and len(calls) == 1  # reused, not rewritten
    (cache / "sample.json").unlink()  # as if generation had been interrupted
    assert split_hashes(load_captions(cfg)) == split_hashes(ds)
    assert (cache / "sample.json").exists() and len(calls) == 2


def test_sample_into_data_dir(tmp_path):
    cfg = DataConfig(source="sample", data_dir=str(tmp_path / "s"), sample_train=5, sample_validation=2,
                     sample_test=2)
    ds = load_captions(cfg)
    assert (tmp_path / "s" / "metadata.jsonl").exists() and len(ds["train"]) == 5


def test_stats_and_hashes(tmp_path):
    root = make_folder(tmp_path / "f", n=10, splits=["train"] * 6 + ["validation"] * 2 + ["test"] * 2)
    ds = load_captions(folder_cfg(root))
    stats = caption_stats(ds, max_images=3)
    assert stats["sizes"] == {"train": 6, "validation": 2, "test": 2}
    assert stats["captions_per_image"]["train"] == {"min": 3, "max": 3, "mean": 3.0}
    assert stats["caption_words"]["test"] == [3, 4, 3, 3, 4, 3]
    assert len(stats["image_sizes"]["train"]) == 3 and stats["aspects"]["train"] == [1.0] * 3
    assert stats["top_words"][0][1] == 6 and stats["vocab_size"] == 6 + 7  # 6 numbers + 7 shared words
    assert 0 < stats["unseen_word_rate"]["test"] < 1
    hashes = split_hashes(ds)
    assert set(hashes) == set(SPLITS) and all(len(h) == 64 for h in hashes.values())


def test_channel_stats_are_the_pixels_mean_and_std_read_as_the_model_reads_them(tmp_path):
    """Red and white images alternate, one a palette PNG, sizes differ: per channel, mean and std over all pixels,
    each image weighing the same; a channel that never varies is floored rather than 0."""
    from PIL import Image

    from blipnb.data.stats import channel_stats

    paths = []
    for i, colour in enumerate([(255, 0, 0), (255, 255, 255), (255, 0, 0), (255, 255, 255)]):
        image = Image.new("RGB", (40 + 8 * i, 24), colour)
        paths.append(str(tmp_path / f"c{i}.png"))
        (image.convert("P") if i == 3 else image).save(paths[-1])
    split = datasets.Dataset.from_dict({IMAGE: paths}, features=datasets.Features({IMAGE: datasets.Image()}))
    assert channel_stats(split) == ((1.0, 0.5, 0.5), (0.01, 0.5, 0.5))
    assert channel_stats(split, max_images=2) == ((1.0, 0.0, 0.0), (0.01, 0.01, 0.01))  # evenly spaced: c0, c2
    with pytest.raises(ValueError, match="no images"):
        channel_stats(split.select([]))
