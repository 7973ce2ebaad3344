"""Canonical captioned images: every source -> DatasetDict(train, validation, test), one row per image."""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from blipnb.config import DataConfig

# The column contract every other module relies on. Extra columns (e.g. the sample's attributes) may follow.
IMAGE = "image"  # datasets Image() feature, stored as a path or bytes, decoded lazily; convert to RGB at use
IMAGE_ID = "image_id"  # str, unique across all splits
CAPTIONS = "captions"  # list[str], >= 1, stripped, non-empty
SPLITS = ("train", "validation", "test")
# Split names people write in metadata, mapped onto ours.
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation",
                 "dev": "validation", "test": "test"}
OFFLINE_PRESET = "-f notebooks/params/sample.yaml"


class DataSourceUnavailable(RuntimeError):
    """A hub dataset could not be loaded (offline, or not in the local cache)."""


def load_captions(cfg: DataConfig) -> DatasetDict:
    """Load cfg.source as the canonical DatasetDict, cap its sizes, then guard against leaks across splits."""
    return load_checked(cfg)[0]


def load_checked(cfg: DataConfig) -> tuple[DatasetDict, list[dict]]:
    """load_captions, also returning the near-duplicate pairs found before the policy was applied."""
    from blipnb import leaks, sources  # they import this module's constants

    ds = sources.load_source(cfg)
    ds = limit_samples(ds, cfg.max_train_samples, cfg.max_eval_samples)
    check_disjoint(ds)
    pairs = leaks.near_duplicates(ds)
    return leaks.apply_near_duplicate_policy(ds, pairs, cfg.near_duplicates), pairs


def limit_samples(ds: DatasetDict, max_train: int | None, max_eval: int | None) -> DatasetDict:
    """Keep the first max_train train images and the first max_eval validation and test images."""
    from datasets import DatasetDict

    out = DatasetDict()
    for split in SPLITS:
        cap = max_train if split == "train" else max_eval
        out[split] = ds[split] if cap is None or len(ds[split]) <= cap else ds[split].select(range(cap))
    return out


def check_disjoint(ds: DatasetDict) -> dict:
    """Split sizes and pairwise id overlaps; raises ValueError naming ids that occur twice."""
    missing = [s for s in SPLITS if s not in ds]
    if missing:
        raise ValueError(f"the DatasetDict lacks split(s) {missing}; it has {list(ds)}")
    ids = {s: [str(i) for i in ds[s][IMAGE_ID]] for s in SPLITS}
    summary = {"sizes": {s: len(ids[s]) for s in SPLITS}, "overlap": {}}
    problems = []
    for s in SPLITS:
        repeated = [i for i, n in Counter(ids[s]).items() if n > 1]
        if repeated:
            problems.append(f"{len(repeated)} id(s) repeated within {s}: {_first(repeated)}")
    for a_i, a in enumerate(SPLITS):
        for b in SPLITS[a_i + 1:]:
            both = sorted(set(ids[a]) & set(ids[b]))
            summary["overlap"][f"{a}/{b}"] = len(both)
            if both:
                problems.append(f"{len(both)} id(s) in both {a} and {b}: {_first(both)}")
    if problems:
        raise ValueError("image ids must be unique across splits; " + "; ".join(problems))
    return summary


def expand_pairs(split: Dataset) -> list[tuple[int, int]]:
    """(row index, caption index) for every caption of every image: the training pairs, without touching images."""
    return [(row, k) for row, n in enumerate(_caption_counts(split)) for k in range(n)]


def split_hashes(ds: DatasetDict) -> dict[str, str]:
    """sha256 of each split's sorted image ids, for provenance: same hash, same images."""
    return {s: hashlib.sha256("\n".join(sorted(str(i) for i in ds[s][IMAGE_ID])).encode()).hexdigest()
            for s in SPLITS if s in ds}


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


def image_sizes(split: Dataset, max_images: int = 200) -> list[tuple[int, int]]:
    """(width, height) of up to max_images evenly spaced images, read from the file headers only."""
    from .images import open_image

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


def undecoded(split: Dataset) -> Dataset:
    """The split with its image column left as {bytes, path}: decoding is ours, so a broken file is named."""
    from datasets import Image as ImageFeature

    return split.cast_column(IMAGE, ImageFeature(decode=False))


def _caption_counts(split: Dataset) -> list[int]:
    import pyarrow.compute as pc

    column = split.select_columns([CAPTIONS]).with_format("arrow")[:][CAPTIONS]
    return pc.list_value_length(column).to_pylist()


def words(caption: str) -> list[str]:
    """Lower-case word tokens of a caption (letters, digits, apostrophes): the one definition of a word."""
    return re.findall(r"[a-z0-9']+", caption.lower())


def _first(items: list, n: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (f" ... ({len(items) - n} more)" if len(items) > n else "")
