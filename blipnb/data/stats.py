"""What notebook 01 shows about a dataset: sizes, captions per image, caption lengths, vocabulary, image sizes."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..schema import CAPTIONS, IMAGE, SPLITS, undecoded, words
from .images import open_image

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


def image_sizes(split: Dataset, max_images: int = 200) -> list[tuple[int, int]]:
    """(width, height) of up to max_images evenly spaced images, read from the file headers only."""
    n = len(split)
    if n == 0 or max_images <= 0:
        return []
    picks = sorted({int(i * n / min(n, max_images)) for i in range(min(n, max_images))})
    raw = undecoded(split.select(picks).select_columns([IMAGE]))
    out = []
    for row in raw:
        with open_image(row[IMAGE]) as im:
            out.append(im.size)
    return out
