"""Captions from pixels only, plus the family's fixed prompt, and a loaded model folder that captions images.

blipnb's own captioning (blipnb.model.generation: 02's validation, 03, 05, `blipnb caption`) and an exported
model's hosts call `generate_captions` here, so every path decodes alike. What differs between captioner families
(the inputs generate takes, the prompt stripped from its output) is in blipnb.runtime.families.
"""
from __future__ import annotations

import contextlib
import json

import torch

from .consensus import consensus_order, seeded_draws
from .decoding import Decoding
from .families import family_for_type, family_of


def caption_inputs(model, processor, images: list, decoding: Decoding) -> dict:
    """What `generate` needs to caption the RGB `images` under `decoding`, on the model's device: the images'
    pixels and the family's prompt; never a reference caption."""
    family = family_of(model)
    family.check_decoding(decoding)
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in family.caption_inputs(processor, images, decoding.prompt).items()}


def generate_captions(model, processor, inputs: dict, decoding: Decoding, num_return_sequences: int = 1) -> list[str]:
    """num_return_sequences captions per image of `inputs` (caption_inputs), image by image; the prompt is
    stripped from the output.

    With consensus decoding each image gets its num_return_sequences distinct draws that agree most with the
    others (consensus_order)."""
    kwargs = decoding.generate_kwargs()
    draws = kwargs.get("num_return_sequences")
    if draws is None:
        return _generate(model, processor, inputs, {**kwargs, "num_return_sequences": num_return_sequences})
    captions = draw_captions(model, processor, inputs, decoding)
    picked = []
    for start in range(0, len(captions), draws):  # each image's draws are together
        own = captions[start:start + draws]
        distinct = list(dict.fromkeys(own[i] for i in consensus_order(own)))
        picked += (distinct * num_return_sequences)[:num_return_sequences]  # too few distinct: repeat them
    return picked


def draw_captions(model, processor, inputs: dict, decoding: Decoding) -> list[str]:
    """Consensus decoding's draws: decoding.consensus_samples captions per image, image by image, sampled at its
    temperature and top_p. Each draw is a function of its image's pixels and its index alone, so an image gets the
    same draws alone or in any batch, on every run; the caller's random state is untouched."""
    kwargs = decoding.generate_kwargs()
    kwargs.pop("temperature"), kwargs.pop("top_p")
    pixel_values = inputs["pixel_values"]
    processors = seeded_draws(pixel_values, decoding.consensus_samples, decoding.temperature, decoding.top_p)
    # generate then samples from the one token SeededDraws leaves: the outcome is fixed, but it still draws from
    # the global generator, which fork_rng gives back unchanged.
    cuda = [pixel_values.device] if pixel_values.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        return _generate(model, processor, inputs, {**kwargs, "logits_processor": processors})


def _generate(model, processor, inputs: dict, kwargs: dict) -> list[str]:
    family = family_of(model)
    out = model.generate(**inputs, **kwargs, **family.generate_kwargs(model, processor))
    return family.captions_from(processor, inputs, out)


def autocast(device: torch.device):
    """bf16 (else fp16) autocast on a GPU, where captioning runs in reduced precision; nothing on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


def group_by_decoding(decodings: list[Decoding]) -> list[list[int]]:
    """The indices of identical decodings, one list per generate call."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(decodings):
        groups.setdefault(json.dumps(d.settings(), sort_keys=True), []).append(i)
    return list(groups.values())


def load_captioner(model_dir: str, attn_implementation: str | None = None):
    """(model, processor) of a hub id or model folder, by its config's model_type (blipnb.runtime.families
    names the ones supported); safetensors only, never remote code. `attn_implementation` (sdpa or eager) goes to
    transformers for every family but BLIP, whose SDPA is blipnb's own patch (blipnb.model.sdpa); a class without
    SDPA runs eager and says so. None keeps transformers' default."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    config = AutoConfig.from_pretrained(model_dir)
    family = family_for_type(config.model_type, repr(str(model_dir)))
    kwargs = {}
    if attn_implementation and "sdpa_patch" not in family.fast_paths:
        if attn_implementation == "sdpa" and not getattr(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(config)],
                                                         "_supports_sdpa", False):
            print(f"{family.title} has no SDPA attention in transformers: its attention runs eager")
            attn_implementation = "eager"
        kwargs["attn_implementation"] = attn_implementation
    processor = with_pil_images(AutoProcessor.from_pretrained(model_dir))
    model = AutoModelForImageTextToText.from_pretrained(model_dir, config=config, use_safetensors=True, **kwargs)
    family.check_model(model)
    return model, processor


def with_pil_images(processor):
    """`processor` with a PIL image processor where it has a torchvision-backed one and torchvision is missing:
    the PIL class of the same name computes the same transform."""
    import importlib.util

    import transformers

    ip = processor.image_processor
    pil = getattr(transformers, type(ip).__name__ + "Pil", None)
    if pil is not None and importlib.util.find_spec("torchvision") is None:
        processor.image_processor = pil(**ip.to_dict())
    return processor


class Captioner:
    """A loaded model folder: the model, its processor and the decoding stored with it."""

    def __init__(self, model_dir, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, self.processor = load_captioner(str(model_dir))
        self.model = model.to(self.device).eval()
        self.decoding = Decoding.load(model_dir)

    @torch.inference_mode()
    def caption(self, images: list, decodings: list[Decoding]) -> list[str]:
        """One caption per RGB image; images with different decodings never share a generate call."""
        captions: list = [None] * len(images)
        for idx in group_by_decoding(decodings):
            inputs = caption_inputs(self.model, self.processor, [images[i] for i in idx], decodings[idx[0]])
            with autocast(self.device):
                out = generate_captions(self.model, self.processor, inputs, decodings[idx[0]])
            for i, text in zip(idx, out):
                captions[i] = text
        return captions
