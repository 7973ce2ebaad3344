"""Trust checks end to end: a row-split leak is caught, and the scores it produces are flagged."""
import random

import pytest
from datasets import load_dataset
from data_sources import make_caption_rows_parquet

from blipnb.data import check_disjoint
from blipnb.data.flickr8k import image_keys
from blipnb.scoring import score_captions, sanity_check


@pytest.fixture()
def row_split(tmp_path):
    """flickr8k_rows split BY ROW on purpose (the replaced project's bug): images land in train and test."""
    root = make_caption_rows_parquet(tmp_path / "hub", n_images=12, per_image=5)
    rows = load_dataset(str(root))["train"]
    ids = image_keys(rows)
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    test_rows = set(order[: len(order) // 5])
    split = {"train": [], "test": []}
    for i, (image_id, caption) in enumerate(zip(ids, rows["caption"])):
        split["test" if i in test_rows else "train"].append((image_id, caption))
    return split


def test_row_split_is_refused_naming_the_shared_images(row_split):
    from datasets import Dataset, DatasetDict
    ds = DatasetDict({s: Dataset.from_dict({"image_id": [r[0] for r in row_split[name]],
                                            "captions": [[r[1]] for r in row_split[name]]})
                      for s, name in (("train", "train"), ("validation", "test"), ("test", "test"))})
    shared = {r[0] for r in row_split["train"]} & {r[0] for r in row_split["test"]}
    assert shared
    with pytest.raises(ValueError) as err:
        check_disjoint(ds)
    assert any(image_id in str(err.value) for image_id in shared)


def test_sanity_check_fires_on_the_scores_a_row_split_leak_produces(row_split):
    """A model that memorised each image's training captions, scored per row against one reference."""
    memory = {}
    for image_id, caption in row_split["train"]:
        memory.setdefault(image_id, caption)
    test = [(f"row{k}", image_id, caption) for k, (image_id, caption) in enumerate(row_split["test"])
            if image_id in memory]
    predictions = {key: memory[image_id] for key, image_id, _ in test}
    references = {key: [caption] for key, _, caption in test}
    result = score_captions(predictions, references, do_spice=False)
    warnings = sanity_check(result, "flickr8k_rows")
    text = " ".join(warnings)
    assert result["refs_per_image"]["max"] == 1
    assert any("Bleu_4" in w or "CIDEr" in w for w in warnings), (result["metrics"], warnings)
    assert "prompt" in text and "split" in text and "reference" in text


def test_the_same_scores_on_the_sample_are_not_flagged():
    metrics = {"Bleu_4": 0.95, "CIDEr": 8.0}
    assert not [w for w in sanity_check({"metrics": metrics, "refs_per_image": {"mean": 5}}, "sample")
                if "Bleu_4" in w or "CIDEr" in w]
