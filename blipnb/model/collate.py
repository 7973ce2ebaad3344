"""Turn canonical rows into training batches: the family's image inputs, captions and masked labels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from ..schema import undecoded
from ..runtime.families.base import Family
from ..runtime.families.blip import BLIP
from ..runtime.images import to_rgb

if TYPE_CHECKING:
    import datasets



class CaptionPairs(Dataset):
    """A canonical split seen as training items.

    Per pair (default): one item per (image, caption), so an epoch covers every pair once.
    Grouped (`shared_vision`): one item per image with all its captions, so the vision tower runs once per image
    and an epoch still covers every pair once.
    """

    def __init__(self, split: datasets.Dataset, grouped: bool = False):

        # Decode images ourselves, so a broken file is reported by name rather than from inside PIL/datasets.
        self.split = undecoded(split)
        self.grouped = grouped
        counts = [len(c) for c in split["captions"]]
        self.index = ([(i, None) for i in range(len(split))] if grouped
                      else [(i, j) for i, n in enumerate(counts) for j in range(n)])
        self.num_pairs = sum(counts)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict:
        i, j = self.index[k]
        row = self.split[i]
        captions = row["captions"] if j is None else [row["captions"][j]]
        return {"image": row["image"], "image_id": row["image_id"], "captions": captions}


@dataclass
class CaptionCollator:
    """Batch items from `CaptionPairs` for a model of `family` (blipnb.runtime.families says how each builds its
    inputs): captions with the family's end token, the prompt, image tokens and padding set to -100 in `labels`,
    so they carry no loss, and captions cut to `max_txt_len` tokens.

    BLIP's fast paths: grouped items (shared_vision) add `image_index`, the row of `pixel_values` each caption
    belongs to; items from `blipnb.training.cache` give `pixel_uint8` or `image_embeds` instead of `pixel_values`.
    """

    processor: object
    max_txt_len: int = 40
    prompt: str = ""
    family: Family = BLIP

    def __call__(self, items: list[dict]) -> dict:
        captions = [c for it in items for c in it["captions"]]
        fast = len(captions) != len(items) or "image_embeds" in items[0] or "pixels" in items[0]
        if not fast:
            images = [to_rgb(it["image"], it.get("image_id")) for it in items]
            return self.family.training_inputs(self.processor, images, captions, self.prompt, self.max_txt_len)
        batch = self.family.caption_tokens(self.processor, captions, self.prompt, self.max_txt_len)
        batch.update(self.image_inputs(items))
        if len(captions) != len(items):
            batch["image_index"] = torch.tensor([i for i, it in enumerate(items) for _ in it["captions"]])
        return batch

    def image_inputs(self, items: list[dict]) -> dict:
        """`pixel_values` from the items' images, or what blipnb.training.cache put in the items instead."""
        if "image_embeds" in items[0]:  # frozen vision: the cached vision-tower output
            return {"image_embeds": torch.stack([torch.as_tensor(it["image_embeds"]) for it in items])}
        if "pixels" in items[0]:  # uint8 pixel cache: normalised on the device by CaptionTrainer
            return {"pixel_uint8": torch.stack([torch.as_tensor(it["pixels"]) for it in items])}
        images = [to_rgb(it["image"], it.get("image_id")) for it in items]
        return {"pixel_values": self.processor.image_processor(images, return_tensors="pt")["pixel_values"]}
