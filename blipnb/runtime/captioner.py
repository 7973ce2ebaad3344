"""Captions from pixel_values only, plus an optional fixed prompt, and a loaded model folder that captions images.

blipnb's own captioning (blipnb.model.generation: 02's validation, 03, 05, `blipnb caption`) and an exported
model's hosts call `generate_captions` here, so every path decodes alike.
"""
from __future__ import annotations

import contextlib
import json

import torch
from transformers import BlipForConditionalGeneration, BlipProcessor

from .consensus import consensus_order, seeded_draws
from .decoding import Decoding


def generate_captions(model, processor, pixel_values: torch.Tensor, decoding: Decoding,
                      num_return_sequences: int = 1) -> list[str]:
    """num_return_sequences captions per image, image by image. BLIP's generate swaps the prompt's first token for
    [DEC] and drops its [SEP]; the prompt is stripped from the output.

    With consensus decoding each image gets its num_return_sequences distinct draws that agree most with the
    others (consensus_order)."""
    kwargs = decoding.generate_kwargs()
    draws = kwargs.get("num_return_sequences")
    if draws is None:
        return _generate(model, processor, pixel_values, decoding.prompt,
                         {**kwargs, "num_return_sequences": num_return_sequences})
    captions = draw_captions(model, processor, pixel_values, decoding)
    picked = []
    for start in range(0, len(captions), draws):  # each image's draws are together
        own = captions[start:start + draws]
        distinct = list(dict.fromkeys(own[i] for i in consensus_order(own)))
        picked += (distinct * num_return_sequences)[:num_return_sequences]  # too few distinct: repeat them
    return picked


def draw_captions(model, processor, pixel_values: torch.Tensor, decoding: Decoding) -> list[str]:
    """Consensus decoding's draws: decoding.consensus_samples captions per image, image by image, sampled at its
    temperature and top_p. Each draw is a function of its image's pixels and its index alone, so an image gets the
    same draws alone or in any batch, on every run; the caller's random state is untouched."""
    kwargs = decoding.generate_kwargs()
    kwargs.pop("temperature"), kwargs.pop("top_p")
    processors = seeded_draws(pixel_values, decoding.consensus_samples, decoding.temperature, decoding.top_p)
    # generate then samples from the one token SeededDraws leaves: the outcome is fixed, but it still draws from
    # the global generator, which fork_rng gives back unchanged.
    cuda = [pixel_values.device] if pixel_values.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        return _generate(model, processor, pixel_values, decoding.prompt, {**kwargs, "logits_processor": processors})


def _generate(model, processor, pixel_values: torch.Tensor, prompt: str, kwargs: dict) -> list[str]:
    input_ids = None
    if prompt:
        input_ids = processor.tokenizer(prompt, return_tensors="pt").input_ids
        input_ids = input_ids.repeat(pixel_values.shape[0], 1).to(pixel_values.device)
    out = model.generate(pixel_values=pixel_values, input_ids=input_ids, **kwargs)
    if input_ids is not None:
        out = out[:, input_ids.shape[1] - 1:]  # [DEC] + the prompt tokens are not part of the caption
    return [t.strip() for t in processor.tokenizer.batch_decode(out, skip_special_tokens=True)]


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


class Captioner:
    """A loaded model folder: the model, its processor and the decoding stored with it."""

    def __init__(self, model_dir, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.processor = BlipProcessor.from_pretrained(str(model_dir))
        model = BlipForConditionalGeneration.from_pretrained(str(model_dir), use_safetensors=True)
        self.model = model.to(self.device).eval()
        self.decoding = Decoding.load(model_dir)

    @torch.inference_mode()
    def caption(self, images: list, decodings: list[Decoding]) -> list[str]:
        """One caption per RGB image; images with different decodings never share a generate call."""
        captions: list = [None] * len(images)
        for idx in group_by_decoding(decodings):
            pixels = self.processor.image_processor([images[i] for i in idx], return_tensors="pt")["pixel_values"]
            with autocast(self.device):
                out = generate_captions(self.model, self.processor, pixels.to(self.device), decodings[idx[0]])
            for i, text in zip(idx, out):
                captions[i] = text
        return captions
