import pytest
import torch

from blipnb.model.collate import CaptionCollator, CaptionPairs
from blipnb.runtime.families.base import IGNORE_INDEX
from blipnb.config import ModelConfig
from blipnb.model.modeling import load_model
from blipnb.model.tiny import build_tiny_blip
from PIL import Image


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    caps = ["a large red circle in the top left", "a small blue square at the bottom right", "a picture of"]
    return build_tiny_blip(caps * 10, tmp_path_factory.mktemp("tiny"),
                           ModelConfig(from_scratch=True, image_size=32, vocab_size=80))


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return load_model(tiny_dir, attn_implementation="eager")[1]


def items(*captions):
    return [{"image": Image.new("RGB", (40, 30), (200, 10, 10)), "image_id": f"im{i}", "captions": [c]}
            for i, c in enumerate(captions)]


def test_first_token_is_dec_and_pads_are_ignored(processor):
    batch = CaptionCollator(processor)(items("a red circle", "a small blue square at the bottom right"))
    tok = processor.tokenizer
    assert (batch["input_ids"][:, 0] == tok.convert_tokens_to_ids("[DEC]")).all()
    pad = batch["attention_mask"] == 0
    assert pad.any(), "the shorter caption must be padded"
    assert (batch["labels"][pad] == IGNORE_INDEX).all()
    assert (batch["labels"][~pad] == batch["input_ids"][~pad]).all()
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert "image_index" not in batch


def test_prompt_is_masked_from_the_loss(processor):
    prompt = "a picture of "
    col = CaptionCollator(processor, prompt=prompt)
    batch = col(items("a red circle"))
    n = len(processor.tokenizer(prompt).input_ids) - 1  # [DEC] + the prompt, without [SEP]
    assert processor.tokenizer.decode(batch["input_ids"][0, :n], skip_special_tokens=True) == "a picture of"
    assert (batch["labels"][0, :n] == IGNORE_INDEX).all()
    assert (batch["labels"][0, n:] != IGNORE_INDEX).all()
    decoded = processor.tokenizer.decode(batch["input_ids"][0, n:], skip_special_tokens=True)
    assert decoded == "a red circle"


def test_captions_are_truncated_at_max_txt_len(processor):
    long = " ".join(["red circle"] * 40)
    batch = CaptionCollator(processor, max_txt_len=12)(items(long))
    assert batch["input_ids"].shape[1] == 12
    assert batch["input_ids"][0, -1] == processor.tokenizer.sep_token_id  # still ends, so generate learns to stop


def test_grouped_items_carry_image_index(processor):
    its = [{"image": Image.new("RGB", (32, 32)), "image_id": "a", "captions": ["a red circle", "red circle"]},
           {"image": Image.new("L", (32, 32)), "image_id": "b", "captions": ["a blue square"]}]
    batch = CaptionCollator(processor)(its)
    assert batch["pixel_values"].shape[0] == 2 and batch["input_ids"].shape[0] == 3
    assert batch["image_index"].tolist() == [0, 0, 1]


def test_caption_pairs_cover_every_pair_once():
    import datasets
    split = datasets.Dataset.from_dict({"image": [None, None], "image_id": ["a", "b"],
                                        "captions": [["x", "y", "z"], ["w"]]})
    split = split.cast_column("image", datasets.Image())
    pairs = CaptionPairs(split)
    assert len(pairs) == 4 == pairs.num_pairs
    assert sorted((pairs[k]["image_id"], pairs[k]["captions"][0]) for k in range(4)) == [
        ("a", "x"), ("a", "y"), ("a", "z"), ("b", "w")]
    grouped = CaptionPairs(split, grouped=True)
    assert len(grouped) == 2 and grouped.num_pairs == 4 and grouped[0]["captions"] == ["x", "y", "z"]


def test_broken_image_is_named(processor, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="im0"):
        CaptionCollator(processor)([{"image": {"path": str(bad), "bytes": None}, "image_id": "im0",
                                     "captions": ["x"]}])


def test_loss_ignores_padding(processor, tiny_dir):
    """Padding a batch must not change the logits of a caption."""
    model, _ = load_model(tiny_dir, attn_implementation="eager")
    model.eval()
    col = CaptionCollator(processor)
    alone = col(items("a red circle"))
    padded = col(items("a red circle", "a small blue square at the bottom right in the top left"))
    with torch.no_grad():
        l1 = model(**{k: v[:1] for k, v in alone.items()}).loss
        logits = model(**padded).logits[0, : alone["input_ids"].shape[1]]
        ref = model(**alone).logits[0]
    assert torch.allclose(logits, ref, atol=1e-4)
    assert torch.isfinite(l1)
