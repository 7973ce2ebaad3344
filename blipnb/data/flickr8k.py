"""Flickr8k: the Karpathy split with five caption columns, and the one-row-per-caption variant split by image."""
from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

from datasets import Dataset, DatasetDict, concatenate_datasets

from ..progress import progress_bar
from ..schema import CAPTIONS, IMAGE, IMAGE_ID, SPLIT_ALIASES, SPLITS
from .hub import load_hub
from .records import assign_splits

FLICKR8K_ID = "jxie/flickr8k"  # image, caption_0..caption_4; Karpathy splits 6000/1000/1000
FLICKR8K_ROWS_ID = "ariG23498/flickr8k"  # image, caption; one row per caption, a single train split
_CAPTION_COLUMN = re.compile(r"caption_\d+")


def load_flickr8k(cfg) -> DatasetDict:
    """Flickr8k with its given Karpathy splits (hub jxie/flickr8k or cfg.hub_id)."""
    return from_caption_columns(load_hub(cfg.hub_id or FLICKR8K_ID))


def load_flickr8k_rows(cfg) -> DatasetDict:
    """Flickr8k stored one row per caption (hub ariG23498/flickr8k): grouped by image, then split by image."""
    return from_caption_rows(load_hub(cfg.hub_id or FLICKR8K_ROWS_ID), cfg.split_seed, cfg.val_fraction,
                             cfg.test_fraction)


def from_caption_columns(dd: DatasetDict) -> DatasetDict:
    """Splits with `image` and `caption_0..caption_k` columns -> canonical splits; image_id hashes the bytes."""
    out = DatasetDict()
    for name, split in dd.items():
        target = SPLIT_ALIASES.get(name.lower())
        if target is None:
            raise ValueError(f"unexpected split {name!r}; expected {sorted(SPLIT_ALIASES)}")
        columns = sorted((c for c in split.column_names if _CAPTION_COLUMN.fullmatch(c)), key=lambda c: int(c[8:]))
        if IMAGE not in split.column_names or not columns:
            raise ValueError(f"split {name!r} needs columns 'image' and 'caption_0'..; it has {split.column_names}")
        rows = split.select_columns(columns).to_dict()
        captions = _keep_captions([[rows[c][i] for c in columns] for i in range(len(split))],
                                  [f"{name} row {i}" for i in range(len(split))])
        ids = image_keys(split, desc=f"hashing {name}")
        out[target] = split.select_columns([IMAGE]).add_column(IMAGE_ID, ids).add_column(CAPTIONS, captions)
    missing = [s for s in SPLITS if s not in out]
    if missing:
        raise ValueError(f"the dataset lacks split(s) {missing}; it has {list(dd)}")
    return out


def from_caption_rows(dd: DatasetDict, seed: int, val_fraction: float, test_fraction: float) -> DatasetDict:
    """Rows of (image, caption) -> one row per image (grouped by image bytes), then a seeded split by image."""
    rows = concatenate_datasets([dd[s] for s in dd]) if len(dd) > 1 else next(iter(dd.values()))
    if IMAGE not in rows.column_names or "caption" not in rows.column_names:
        raise ValueError(f"expected columns 'image' and 'caption'; the dataset has {rows.column_names}")
    keys = image_keys(rows, desc="hashing images")
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    texts = list(rows["caption"])
    kept = _keep_captions([[texts[i] for i in idx] for idx in groups.values()],
                          [f"row {idx[0]} (image {key})" for key, idx in groups.items()])
    captions = dict(zip(groups, kept))
    # Every row carries its image's captions; each split then selects one row per image (no rewrite of images).
    full = rows.select_columns([IMAGE]).add_column(IMAGE_ID, keys).add_column(CAPTIONS, [captions[k] for k in keys])
    split_of = assign_splits(list(groups), seed, val_fraction, test_fraction)
    return DatasetDict({s: full.select(sorted(idx[0] for k, idx in groups.items() if split_of[k] == s))
                        for s in SPLITS})


def image_keys(split: Dataset, desc: str = "hashing images") -> list[str]:
    """A stable id per row: the first 16 hex digits of the sha1 of the encoded image bytes (or of its file)."""
    keys = []
    batches = split.select_columns([IMAGE]).with_format("arrow").iter(batch_size=256)
    with progress_bar(total=len(split), desc=desc, disable=len(split) < 2000) as bar:
        for batch in batches:
            for item in batch.column(IMAGE).to_pylist():
                data = item.get("bytes") if isinstance(item, dict) else None
                if data is None:
                    data = Path(item["path"]).read_bytes()
                keys.append(hashlib.sha1(data).hexdigest()[:16])
            bar.update(batch.num_rows)
    return keys


def _keep_captions(per_image: list[list], wheres: list[str]) -> list[list[str]]:
    # Hub data cannot be fixed by the user: empty captions are dropped with one warning, not an error.
    out, dropped = [], []
    for texts, where in zip(per_image, wheres):
        kept = [" ".join(t.split()) for t in texts if isinstance(t, str) and t.strip()]
        if not kept:
            raise ValueError(f"{where}: the image has no non-empty caption")
        if len(kept) < len(texts):
            dropped.append(where)
        out.append(kept)
    if dropped:
        warnings.warn(f"dropped empty captions of {len(dropped)} image(s), e.g. {', '.join(dropped[:5])}",
                      stacklevel=3)
    return out
