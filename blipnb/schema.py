"""The string contracts every layer shares: column names, split names, metric keys, and what a caption word is."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasets import Dataset

# The column contract of a canonical split. Extra columns (e.g. the sample's attributes) may follow.
IMAGE = "image"  # datasets Image() feature, stored as a path or bytes, decoded lazily; convert to RGB at use
IMAGE_ID = "image_id"  # str, unique across all splits
CAPTIONS = "captions"  # list[str], >= 1, stripped, non-empty
SPLITS = ("train", "validation", "test")
# Split names people write in metadata, mapped onto ours.
SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation",
                 "dev": "validation", "test": "test"}

# Metric keys, as pycocoevalcap names them (0-1 scale), plus sacreBLEU (0-100).
BLEU = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
METEOR = "METEOR"
ROUGE_L = "ROUGE_L"
CIDER = "CIDEr"
SPICE = "SPICE"
SACREBLEU = "sacreBLEU"
METRIC_KEYS = (*BLEU, METEOR, ROUGE_L, CIDER, SPICE, SACREBLEU)
PER_IMAGE_KEYS = tuple(k for k in METRIC_KEYS if k != SACREBLEU)  # sacreBLEU is corpus-level only
SCALE = "pycocoevalcap metrics on 0-1; sacreBLEU on 0-100"
HUMAN_CEILING = "human_ceiling"  # metrics.json: the references scored against each other (scoring.ceiling)


def undecoded(split: Dataset) -> Dataset:
    """The split with its image column left as {bytes, path}: decoding is ours, so a broken file is named."""
    from datasets import Image as ImageFeature

    return split.cast_column(IMAGE, ImageFeature(decode=False))


def references(split: Dataset) -> dict[str, list[str]]:
    """{image_id: all reference captions} of a canonical split."""
    return dict(zip(split[IMAGE_ID], split[CAPTIONS]))


def words(caption: str) -> list[str]:
    """Lower-case word tokens of a caption (letters, digits, apostrophes): the one definition of a word."""
    return re.findall(r"[a-z0-9']+", caption.lower())
