"""The tiny BLIP sees where things are: swapping an image's left and right halves swaps the caption's left/right.

A regression test: position embeddings initialised 50x below the patch embeddings left the sample model
position-blind (blipnb.model.tiny says why); captions were byte-identical for 189 of 200 swapped test images.
"""
import json

from PIL import Image

from blipnb.runtime.images import to_rgb
from blipnb.data.sample import parse_attributes
from blipnb.model.generation import caption_images
from blipnb.model.modeling import prepare_for_training
from blipnb.model.tiny import POSITION_STD, build_tiny_blip
from blipnb.schema import undecoded

MIRROR = {"left": "right", "right": "left"}


def swap_halves(image: Image.Image) -> Image.Image:
    """The image with its left and right halves swapped (along the middle, a patch boundary)."""
    w, h = image.size
    out = image.copy()
    out.paste(image.crop((w // 2, 0, w, h)), (0, 0))
    out.paste(image.crop((0, 0, w // 2, h)), (w - w // 2, 0))
    return out


def sides(caption: str) -> list[str]:
    """The left/right word of each position the caption names, in order."""
    return [p.split()[1] for p in parse_attributes(caption)["positions"]]


def test_swapping_halves_swaps_the_position_words(trained):
    cfg, ds, model, processor, _ = trained
    split = undecoded(ds["test"])
    single = [i for i, a in enumerate(split["attributes"]) if json.loads(a)["count"] == 1]
    images = [to_rgb(split[i]["image"]) for i in single]
    plain = caption_images(model, processor, images, cfg.generation, progress=False)
    swapped = caption_images(model, processor, [swap_halves(im) for im in images], cfg.generation, progress=False)
    flipped = [bool(sides(a)) and sides(b) == [MIRROR[s] for s in sides(a)] for a, b in zip(plain, swapped)]
    assert len(single) >= 20
    assert sum(flipped) >= 0.9 * len(single), list(zip(plain, swapped))


def test_tiny_position_embeddings_start_at_the_patch_scale_and_the_projection_stays(tmp_path):
    """What makes position learnable: position embeddings as large as patch content, a patch projection that
    cannot outgrow them; both survive save_pretrained/from_pretrained through the vision config."""
    from blipnb.config import ModelConfig
    from blipnb.model.modeling import load_model

    path = build_tiny_blip(["a red circle in the top left", "a blue square at the bottom right"], tmp_path,
                           ModelConfig(from_scratch=True, image_size=32))
    model, processor = load_model(path)
    prepare_for_training(model)
    emb = model.vision_model.embeddings
    pixels = processor.image_processor([Image.new("RGB", (32, 32), (230, 230, 230))], return_tensors="pt")
    content = emb.patch_embedding(pixels["pixel_values"]).flatten(2).norm(dim=1).mean()
    position = emb.position_embedding[0, 1:].norm(dim=-1).mean()
    assert abs(emb.position_embedding.std().item() - POSITION_STD) < 0.1
    assert position > 0.5 * content  # was 0.02x
    assert not emb.patch_embedding.weight.requires_grad and emb.position_embedding.requires_grad


def test_a_model_from_scratch_normalises_with_its_train_images_statistics(trained):
    """Not CLIP's: under those the sample's light background was a large constant in every patch token, and small
    shapes were named little better than chance (blipnb.model.tiny says why). The saved base model keeps them."""
    from pathlib import Path

    from blipnb import runs
    from blipnb.data.stats import channel_stats
    from blipnb.model.modeling import load_model

    cfg, ds, _, processor, _ = trained
    mean, std = channel_stats(ds["train"])
    assert 0.7 < min(mean) and max(std) < 0.3  # the sample: light backgrounds, a few coloured shapes
    _, base = load_model(Path(cfg.run_dir) / runs.BASE_MODEL_DIR)
    for ip in (processor.image_processor, base.image_processor):
        assert tuple(ip.image_mean) == mean and tuple(ip.image_std) == std
    pixels = processor.image_processor([Image.new("RGB", (32, 32), tuple(round(255 * m) for m in mean))],
                                       return_tensors="pt")["pixel_values"]
    assert pixels.abs().max() < 0.05  # the average pixel is about zero, whatever the dataset's colours
