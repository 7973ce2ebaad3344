"""Training-time validation captions a seeded random sample of the validation split, not its first images."""
from datasets import Dataset

from blipnb.data import validation_subset


def _split(n: int) -> Dataset:
    return Dataset.from_dict({"image_id": [f"v{i:03d}" for i in range(n)], "captions": [["x"]] * n})


def test_seeded_random_subset_is_deterministic_and_not_the_first_n():
    split = _split(50)
    first = validation_subset(split, 10, seed=0)["image_id"]
    assert first == validation_subset(split, 10, seed=0)["image_id"]  # same seed, same images
    assert first != validation_subset(split, 10, seed=1)["image_id"]
    assert first != split["image_id"][:10]
    assert len(set(first)) == 10 and first == sorted(first)  # distinct, kept in split order


def test_no_cap_or_a_cap_past_the_split_keeps_everything():
    split = _split(5)
    assert validation_subset(split, None, seed=0)["image_id"] == split["image_id"]
    assert validation_subset(split, 5, seed=0)["image_id"] == split["image_id"]
