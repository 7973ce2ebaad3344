"""Shared vision pass: running the vision tower once per image gives the loss and gradients of the expanded
per-pair batch, and an epoch of grouped items still covers every (image, caption) pair exactly once."""
import datasets
import pytest
import torch
from torch.utils.data import DataLoader

from blipnb.model.collate import CaptionCollator, CaptionPairs
from blipnb.config import ModelConfig
from blipnb.model.modeling import load_model
from blipnb.model.tiny import build_tiny_blip
from blipnb.training import forward_loss
from data_sources import png_bytes

# Uneven caption counts and lengths, so padding and image_index both matter.
CAPTIONS = [["a red circle", "one red round thing on the left", "red circle"],
            ["a blue square"],
            ["two green triangles at the top", "green triangles"],
            ["a small yellow star", "yellow star", "a star", "small star in the middle of it all", "star"]]


@pytest.fixture(scope="module")
def split():
    data = {"image": [{"bytes": png_bytes(i, size=40 + 8 * i), "path": None} for i in range(len(CAPTIONS))],
            "image_id": [f"im{i}" for i in range(len(CAPTIONS))], "captions": CAPTIONS}
    return datasets.Dataset.from_dict(data).cast_column("image", datasets.Image())


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = ModelConfig(from_scratch=True, image_size=32, hidden_size=32, num_layers=1, num_heads=2,
                      vocab_size=80)
    return build_tiny_blip([c for caps in CAPTIONS for c in caps] * 5, tmp_path_factory.mktemp("tiny"), cfg)


def expand(grouped_items):
    """The per-pair items of grouped items, same captions, same order."""
    return [{**it, "captions": [c]} for it in grouped_items for c in it["captions"]]


def loss_and_grads(model, batch):
    model.zero_grad()
    loss = forward_loss(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_grouped_batch_matches_expanded_batch(split, model_dir, attn):
    model, processor = load_model(model_dir, attn_implementation=attn)
    model.eval()  # no dropout: both passes must see the same function
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "crossattention" in name:  # at init the image barely moves the loss; make it matter
            param.data.normal_(0, 0.5)
    collate = CaptionCollator(processor)
    grouped = [CaptionPairs(split, grouped=True)[k] for k in (2, 0, 3, 1)]
    g, p = collate(grouped), collate(expand(grouped))
    assert g["pixel_values"].shape[0] == 4 and p["pixel_values"].shape[0] == 11
    assert g["image_index"].tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3]
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(g[key], p[key]), key
    assert torch.equal(g["pixel_values"][g["image_index"]], p["pixel_values"])

    loss_g, grads_g = loss_and_grads(model, g)
    loss_p, grads_p = loss_and_grads(model, p)
    torch.testing.assert_close(loss_g, loss_p, rtol=1e-5, atol=1e-6)
    assert grads_g.keys() == grads_p.keys() and any(n.startswith("vision_model") for n in grads_g)
    for name in grads_p:
        torch.testing.assert_close(grads_g[name], grads_p[name], rtol=1e-4, atol=1e-6, msg=name)

    # The comparison can fail: captions paired with the wrong images give another loss.
    wrong = {**g, "image_index": g["image_index"].flip(0)}
    assert not torch.allclose(forward_loss(model, wrong).detach(), loss_p, rtol=1e-4, atol=1e-6)


def test_grouped_epoch_covers_every_pair_once(split, model_dir):
    _, processor = load_model(model_dir, attn_implementation="eager")
    grouped = CaptionPairs(split, grouped=True)
    assert len(grouped) == len(CAPTIONS) and grouped.num_pairs == sum(map(len, CAPTIONS))
    torch.manual_seed(0)
    seen, rows = [], 0
    for items in DataLoader(grouped, batch_size=3, shuffle=True, collate_fn=list):
        seen += [(it["image_id"], c) for it in items for c in it["captions"]]
        rows += CaptionCollator(processor)(items)["input_ids"].shape[0]
    expected = [(f"im{i}", c) for i, caps in enumerate(CAPTIONS) for c in caps]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen)) == rows
