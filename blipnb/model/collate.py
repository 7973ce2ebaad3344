"""Turn canonical rows into BLIP training batches: pixel values, [DEC]-led captions, masked labels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset

from ..schema import undecoded
from ..runtime.images import to_rgb

if TYPE_CHECKING:
    import datasets

IGNORE_INDEX = -100  # positions the loss skips: padding and the prompt


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
    """Batch items from `CaptionPairs` for BLIP.

    - The first token becomes [DEC] (the bos), because `generate` forces it; training must match.
    - Padding and the optional prompt are set to -100 in `labels`, so they carry no loss.
    - Captions (prompt included) are truncated to `max_txt_len` tokens, as BLIP does.
    - Grouped items add `image_index`: the row of `pixel_values` each caption belongs to.
    - Items from `blipnb.training.cache` give `pixel_uint8` or `image_embeds` instead of `pixel_values`.
    """

    processor: object
    max_txt_len: int = 40
    prompt: str = ""

    def __post_init__(self):
        tok = self.processor.tokenizer
        if tok.bos_token_id is None:
            raise ValueError("the tokenizer has no bos token: BLIP decodes from [DEC]")
        # The prompt's tokens without the trailing [SEP] are what the loss must skip (BLIP's prompt_length).
        self.prompt_length = len(tok(self.prompt).input_ids) - 1 if self.prompt else 0

    def __call__(self, items: list[dict]) -> dict:
        image_inputs = self.image_inputs(items)
        texts = [self.prompt + c for it in items for c in it["captions"]]
        batch = self.encode_captions(texts)
        batch.update(image_inputs)
        if any(len(it["captions"]) != 1 for it in items):
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

    def encode_captions(self, texts: list[str]) -> dict:
        """Tokenise prompt+caption texts into input_ids, attention_mask and labels."""
        tok = self.processor.tokenizer
        enc = tok(texts, padding="longest", truncation=True, max_length=self.max_txt_len, return_tensors="pt")
        input_ids = enc["input_ids"]
        input_ids[:, 0] = tok.bos_token_id
        labels = input_ids.masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        labels[:, : self.prompt_length] = IGNORE_INDEX
        return {"input_ids": input_ids, "attention_mask": enc["attention_mask"], "labels": labels}
