"""What notebook 01 shows about a dataset: sizes, captions per image, caption lengths, vocabulary, image sizes;
and the pixel statistics a model built from scratch normalises with."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..schema import CAPTIONS, IMAGE, SPLITS, undecoded, words
from ..runtime.images import open_image, to_rgb

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict


def caption_stats(ds: DatasetDict, max_images: int = 200, top_k: int = 20) -> dict:
    """What notebook 01 shows: sizes, captions per image, caption lengths, vocabulary, image sizes (sampled)."""
    stats: dict = {"sizes": {}, "captions_per_image": {}, "caption_words": {}, "image_sizes": {}, "aspects": {}}
    vocab: dict[str, Counter] = {}
    for s in (s for s in SPLITS if s in ds):
        captions = list(ds[s][CAPTIONS])
        counts = [len(c) for c in captions]
        stats["sizes"][s] = len(captions)
        stats["captions_per_image"][s] = {"min": min(counts, default=0), "max": max(counts, default=0),
                                          "mean": sum(counts) / len(counts) if counts else 0.0}
        tokenized = [words(c) for caps in captions for c in caps]
        stats["caption_words"][s] = [len(w) for w in tokenized]
        vocab[s] = Counter(w for ws in tokenized for w in ws)
        sizes = image_sizes(ds[s], max_images)
        stats["image_sizes"][s] = sizes
        stats["aspects"][s] = [round(w / h, 3) for w, h in sizes if h]
    train = vocab.get("train", Counter())
    stats["vocab_size"] = len(train)
    stats["top_words"] = train.most_common(top_k)
    # Share of validation/test word occurrences never seen in training captions.
    stats["unseen_word_rate"] = {s: (sum(n for w, n in c.items() if w not in train) / max(1, sum(c.values())))
                                 for s, c in vocab.items() if s != "train"}
    return stats


def split_table(stats: dict, bad_data: dict | None = None) -> dict:
    """01's split table: images and captions per image per split, and (on_bad_data=skip) the images skipped."""
    per_image = stats["captions_per_image"]
    skipped = (bad_data or {}).get("images_skipped_by_split") or {}
    table = {}
    for split, n in stats["sizes"].items():
        table[split] = {"images": n, "captions per image: min": per_image[split]["min"],
                        "mean": per_image[split]["mean"], "max": per_image[split]["max"]}
        if bad_data and bad_data.get("on_bad_data") == "skip":
            table[split]["skipped images"] = skipped.get(split, 0)
    if skipped.get("unassigned"):  # rows too broken to say which image or split they were
        table["unassigned"] = {"images": 0, "skipped images": skipped["unassigned"]}
    return table


def _evenly_spaced(split: Dataset, max_images: int):
    """The image column of up to max_images evenly spaced rows, undecoded."""
    n = len(split)
    picks = sorted({int(i * n / min(n, max_images)) for i in range(min(n, max_images))}) if max_images > 0 else []
    return undecoded(split.select(picks).select_columns([IMAGE]))[IMAGE] if picks else []


def image_sizes(split: Dataset, max_images: int = 200) -> list[tuple[int, int]]:
    """(width, height) of up to max_images evenly spaced images, read from the file headers only."""
    out = []
    for image in _evenly_spaced(split, max_images):
        with open_image(image) as im:
            out.append(im.size)
    return out


def channel_stats(split: Dataset, max_images: int = 500, side: int = 64) -> tuple[tuple, tuple]:
    """Per-channel mean and std of the pixels (0..1) of up to max_images evenly spaced images, each read as the
    model would (upright RGB) and shrunk to side x side first so large photos cost little.

    What a model trained from scratch normalises its input with (blipnb.model.tiny says why)."""
    images = _evenly_spaced(split, max_images)
    if not len(images):
        raise ValueError("channel_stats: the split has no images")
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for image in images:
        with open_image(image) as im:
            im.draft(None, (side, side))  # a JPEG decodes at 1/2 to 1/8 scale: a 12 MP photo costs little
            rgb = to_rgb(im).resize((side, side), Image.Resampling.BILINEAR)
        x = np.asarray(rgb, dtype=np.float64).reshape(-1, 3) / 255.0
        total += x.sum(0)
        total_sq += (x * x).sum(0)
        count += len(x)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    # A channel that never varies (a greyscale dataset's is fine; a constant one is not) must not divide by 0.
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(max(s, 1e-2)), 4) for s in std)
