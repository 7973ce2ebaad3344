"""blipnb.training.cache: uint8 pixels decoded once equal the processor's output; keys rebuild; frozen-vision
embeddings give the loss the vision tower gives; the Trainer runs on both caches."""
import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BlipImageProcessorPil

from blipnb.training import cache
from blipnb.model.collate import CaptionCollator
from blipnb.config import ModelConfig, ParameterError, build_config
from blipnb.runtime.images import BadImageError, to_rgb
from blipnb.model.modeling import load_model, prepare_for_training
from blipnb.model.tiny import build_tiny_blip
from blipnb.training import forward_loss
from data_sources import write_image
from helpers import tiny_config

CAPTIONS = [
    ["a red circle", "red circle"],
    ["a blue square"],
    ["green triangles at the top", "triangles", "a"],
]


def image_split(folder, n=3):
    """A canonical split over files of mixed sizes, formats and modes (what to_rgb has to handle)."""
    files = [write_image(folder / "a.jpg", 1, size=50), write_image(folder / "b.png", 2, size=23, mode="L"),
             write_image(folder / "c.png", 3, size=64, mode="RGBA")][:n]
    ids = [f"im{i}" for i in range(n)]
    data = {"image": [str(f) for f in files], "image_id": ids, "captions": CAPTIONS[:n]}
    return datasets.Dataset.from_dict(data).cast_column("image", datasets.Image())


def processor_pixels(split, ip):
    return ip([to_rgb(im) for im in split["image"]], return_tensors="pt")["pixel_values"]


def cached_pixels(split, ip, cache_dir, split_hash="h0", **kw):
    images, names = cache.image_sources(split)
    key = cache.pixel_key("folder", "train", split_hash, ip)
    return cache.build_pixel_cache(images, names, key, cache_dir, progress=False, **kw)


def test_cached_pixels_normalised_on_device_equal_the_processor(tmp_path):
    split = image_split(tmp_path / "img")
    ip = BlipImageProcessorPil(size={"height": 32, "width": 32})
    pixels = cached_pixels(split, ip, tmp_path / "cache")
    assert pixels.array.dtype == np.uint8 and pixels.array.shape == (3, 32, 32, 3)
    got = cache.normalize_pixels(torch.from_numpy(np.array(pixels.array)), ip)
    want = processor_pixels(split, ip)
    one_level = 1.01 / 255 / min(ip.image_std)  # resize, then rounding to uint8, may move a pixel one level
    assert got.shape == want.shape and (got - want).abs().max() <= one_level


def test_key_change_rebuilds_and_same_key_reuses(tmp_path):
    split = image_split(tmp_path / "img")
    ip = BlipImageProcessorPil(size={"height": 32, "width": 32})
    first = cached_pixels(split, ip, tmp_path / "cache")
    again = cached_pixels(split, ip, tmp_path / "cache")
    assert first.built and not again.built and again.path == first.path
    bigger = cached_pixels(split, BlipImageProcessorPil(size={"height": 48, "width": 48}), tmp_path / "cache")
    assert bigger.built and bigger.array.shape == (3, 48, 48, 3)
    other_filter = BlipImageProcessorPil(size={"height": 32, "width": 32}, resample=Image.Resampling.BILINEAR)
    assert cached_pixels(split, other_filter, tmp_path / "cache").built
    assert cached_pixels(split, ip, tmp_path / "cache", split_hash="h1").built  # other images in the split
    assert not cached_pixels(split, ip, tmp_path / "cache").built


def test_parallel_build_writes_every_image(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CHUNK", 1)  # one image per chunk, so the two workers share the split
    split = image_split(tmp_path / "img")
    ip = BlipImageProcessorPil(size={"height": 16, "width": 16})
    serial = cached_pixels(split, ip, tmp_path / "serial")
    parallel = cached_pixels(split, ip, tmp_path / "parallel", workers=2)
    assert np.array_equal(np.load(serial.path), np.load(parallel.path)) and np.load(parallel.path).any()


def test_corrupt_image_is_named_while_building(tmp_path):
    split = image_split(tmp_path / "img", n=2)
    (tmp_path / "img" / "b.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(BadImageError, match="b.png"):
        cached_pixels(split, BlipImageProcessorPil(size={"height": 32, "width": 32}), tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.json")), "a failed build must not look complete"


def test_cache_embeddings_needs_a_frozen_vision_tower():
    with pytest.raises(ParameterError, match="frozen vision tower"):
        build_config({"cache_embeddings": True})
    assert build_config({"cache_embeddings": True, "finetune_method": "freeze_vision"}).train.cache_embeddings
    assert build_config({"cache_embeddings": True, "finetune_method": "lora"}).train.vision_frozen
    with pytest.raises(ParameterError, match="frozen vision tower"):
        build_config({"cache_embeddings": True, "finetune_method": "lora", "lora_targets": "query,value,qkv"})


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    cfg = ModelConfig(from_scratch=True, image_size=32, hidden_size=32, num_layers=1, num_heads=2,
                      vocab_size=80)
    path = build_tiny_blip([c for caps in CAPTIONS for c in caps] * 5, tmp_path_factory.mktemp("tiny"), cfg)
    model, processor = load_model(path, attn_implementation="sdpa")
    return prepare_for_training(model, freeze_vision=True).eval(), processor


@pytest.mark.parametrize("on_disk", [False, True])
def test_loss_on_cached_embeddings_equals_loss_through_frozen_tower(tmp_path, frozen, on_disk):
    model, processor = frozen
    split = image_split(tmp_path / "img")
    images, names = cache.image_sources(split)
    emb = cache.compute_embeddings(model, processor.image_processor, images, names, precision="fp32",
                                   batch_size=2, path=tmp_path / "emb.npy", progress=False,
                                   max_memory_bytes=0 if on_disk else 2**30)
    assert emb.data is None if on_disk else emb.path is None
    assert len(emb) == 3 and emb[0].shape == (5, 32)  # 4 patches + CLS, width 32
    collate = CaptionCollator(processor)
    pairs = [{"image": split[i]["image"], "image_id": f"im{i}", "captions": [c]}
             for i, caps in enumerate(CAPTIONS) for c in caps]
    through_tower = forward_loss(model, collate(pairs))
    idx = [i for i, caps in enumerate(CAPTIONS) for _ in caps]
    cached = collate([{"image_embeds": emb[i], "image_id": p["image_id"], "captions": p["captions"]}
                      for i, p in zip(idx, pairs, strict=True)])
    assert "pixel_values" not in cached and cached["image_embeds"].shape == (6, 5, 32)
    torch.testing.assert_close(forward_loss(model, cached), through_tower, rtol=1e-5, atol=1e-6)
    grouped = collate([{"image_embeds": emb[i], "image_id": f"im{i}", "captions": caps}
                       for i, caps in enumerate(CAPTIONS)])
    torch.testing.assert_close(forward_loss(model, grouped), through_tower, rtol=1e-5, atol=1e-6)


def test_trainer_runs_on_pixel_cache_and_on_cached_embeddings(tmp_path):
    from blipnb.data import load_captions
    from blipnb.model.modeling import start_model
    from blipnb.training import build_trainer

    cfg = tiny_config(tmp_path / "run", pixel_cache=True, max_steps=2, eval_strategy="no", sample_train=16)
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    trainer = build_trainer(cfg, model, processor, ds)
    assert isinstance(trainer.train_dataset, cache.CachedCaptionPairs)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["pixel_uint8"].dtype == torch.uint8 and "pixel_values" not in batch
    on_device = trainer.with_pixel_values(trainer._prepare_inputs(dict(batch)))
    assert on_device["pixel_values"].shape == (len(batch["pixel_uint8"]), 3, 32, 32)
    assert trainer.train().global_step == 2

    frozen = tiny_config(tmp_path / "frozen", finetune_method="freeze_vision", cache_embeddings=True, shared_vision=True,
                         max_steps=2, eval_strategy="no", sample_train=16)
    model, processor = start_model(frozen, ds)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build_trainer(frozen, model, processor, ds)
    assert isinstance(trainer.train_dataset.embeddings, cache.EmbeddingCache)
    batch = next(iter(trainer.get_train_dataloader()))
    assert "image_embeds" in batch and "image_index" in batch and "pixel_values" not in batch
    assert trainer.train().global_step == 2
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all(n.startswith("text_decoder") for n in changed)
