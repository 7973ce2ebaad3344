"""GIT (Wang et al. 2022, microsoft/git-base): a CLIP vision tower whose image tokens lead one BERT-style
transformer that attends over image and text together. It captions from pixels with no prompt: the text starts
with [CLS] and the caption ends at [SEP], which the tokenizer adds (https://huggingface.co/docs/transformers/model_doc/git).
"""
from __future__ import annotations

import torch

from .base import Family


class GitFamily(Family):
    def caption_inputs(self, processor, images: list, prompt: str = "") -> dict:
        """pixel_values, and [CLS] plus the prompt's tokens without the [SEP] the tokenizer would close them with."""
        tok = processor.tokenizer
        pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        ids = [tok.cls_token_id] + tok(self.prefix(processor, prompt), add_special_tokens=False).input_ids
        input_ids = torch.tensor([ids] * len(images))
        return {"pixel_values": pixels, "input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


GIT = GitFamily(
    name="git", title="GIT", model_types=("git",), vision_path="git.image_encoder",
    lora_targets="query,value",
    lora_reason="GIT's one transformer attends over image and text tokens together; its query and value "
                "projections (LoRA's W_q, W_v) adapt that attention, the CLIP vision tower stays frozen",
    closing_tokens=1,
)
