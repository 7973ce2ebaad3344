"""The synthetic sample: deterministic, sized as asked, five captions each, and parseable by its own vocabulary."""
from __future__ import annotations

import json

import pytest

from blipnb.data.sample import COLOURS, POSITIONS, SHAPES, SIZES, make_sample, parse_attributes


def read_rows(root) -> list[dict]:
    return [json.loads(line) for line in (root / "metadata.jsonl").read_text().splitlines()]


def objects_of(attributes: dict) -> list[tuple]:
    return sorted((o["shape"], o["colour"], o["size"], o["position"]) for o in attributes["objects"])


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    return make_sample(tmp_path_factory.mktemp("s"), 150, 25, 25, seed=3)


def test_same_args_give_identical_bytes(sample_dir, tmp_path):
    again = make_sample(tmp_path / "again", 150, 25, 25, seed=3)
    assert (again / "metadata.jsonl").read_bytes() == (sample_dir / "metadata.jsonl").read_bytes()
    for row in read_rows(sample_dir):
        assert (again / row["file_name"]).read_bytes() == (sample_dir / row["file_name"]).read_bytes()
    other = make_sample(tmp_path / "other", 150, 25, 25, seed=4)
    assert (other / "metadata.jsonl").read_bytes() != (sample_dir / "metadata.jsonl").read_bytes()


def test_held_out_images_do_not_depend_on_the_train_size(sample_dir, tmp_path):
    small = make_sample(tmp_path / "small", 10, 25, 25, seed=3)
    tests = [r for r in read_rows(sample_dir) if r["split"] == "test"]
    assert tests == [r for r in read_rows(small) if r["split"] == "test"]
    assert (small / tests[0]["file_name"]).read_bytes() == (sample_dir / tests[0]["file_name"]).read_bytes()


def test_sizes_ids_and_five_captions(sample_dir):
    rows = read_rows(sample_dir)
    assert [sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")] == [150, 25, 25]
    assert len({r["file_name"] for r in rows}) == 200
    assert all(len(r["captions"]) == 5 and len(set(r["captions"])) >= 3 for r in rows)
    assert all((sample_dir / r["file_name"]).exists() for r in rows)


def test_vocabulary_and_layout_coverage(sample_dir):
    attrs = [json.loads(r["attributes"]) for r in read_rows(sample_dir)]
    objects = [o for a in attrs for o in a["objects"]]
    assert {o["colour"] for o in objects} == set(COLOURS) and len(COLOURS) >= 5
    assert {o["shape"] for o in objects} == set(SHAPES) and len(SHAPES) >= 3
    assert {o["size"] for o in objects} == set(SIZES)
    assert {o["position"] for o in objects} == set(POSITIONS) and len(POSITIONS) >= 4
    assert {a["count"] for a in attrs} == {1, 2}
    assert all(len({o["position"] for o in a["objects"]}) == a["count"] for a in attrs)  # one shape per quadrant
    assert 5 <= sum(a["hard"] for a in attrs) <= 45  # hard_fraction 0.1 of 200


def test_hard_images_are_noisier(sample_dir):
    import numpy as np
    from PIL import Image

    rows = read_rows(sample_dir)

    def roughness(row):
        a = np.asarray(Image.open(sample_dir / row["file_name"]).convert("L"), dtype=float)
        return np.abs(np.diff(a, axis=1)).mean()

    hard = [roughness(r) for r in rows if json.loads(r["attributes"])["hard"]]
    easy = [roughness(r) for r in rows if not json.loads(r["attributes"])["hard"]]
    assert min(hard) > max(easy)


def test_parse_attributes_round_trips_every_generated_caption(sample_dir):
    for row in read_rows(sample_dir):
        truth = json.loads(row["attributes"])
        for caption in row["captions"]:
            parsed = parse_attributes(caption)
            assert objects_of(parsed) == objects_of(truth), caption
            assert parsed["count"] == truth["count"], caption


def test_captions_use_both_object_orders(sample_dir):
    orders = set()
    for row in read_rows(sample_dir):
        truth = json.loads(row["attributes"])
        if truth["count"] == 2:
            orders |= {tuple(o["shape"] + o["colour"] for o in parse_attributes(c)["objects"])
                       for c in row["captions"]}
    assert any(tuple(reversed(o)) in orders for o in orders)


def test_parse_attributes_maps_synonyms_and_tolerates_broken_captions():
    parsed = parse_attributes("There is a BIG red circle at the upper left.")
    assert parsed["objects"] == [{"shape": "circle", "colour": "red", "size": "large", "position": "top left"}]
    assert parsed["count"] == 1
    broken = parse_attributes("a little blue in the lower right and two circles")
    assert broken["colours"] == ["blue"] and broken["sizes"] == ["small"] and broken["positions"] == ["bottom right"]
    assert broken["shapes"] == ["circle"] and broken["count"] == 2


def test_bad_parameters_name_themselves(tmp_path):
    with pytest.raises(ValueError, match="max_shapes"):
        make_sample(tmp_path, 1, 1, 1, max_shapes=5)
