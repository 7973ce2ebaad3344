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
NGRAM_KEYS = (*BLEU, METEOR, ROUGE_L, CIDER, SPICE, SACREBLEU)  # what score_captions gives
PER_IMAGE_KEYS = tuple(k for k in NGRAM_KEYS if k != SACREBLEU)  # sacreBLEU is corpus-level only
SCALE = "pycocoevalcap metrics on 0-1; sacreBLEU on 0-100"
# Beyond n-grams (scoring.embedding, scoring.hallucination, scoring.degeneration).
CLIP_S, REFCLIP_S = "CLIP-S", "RefCLIP-S"  # Hessel et al. 2021: image-caption agreement, and with the references
CHAIR_I, CHAIR_S = "CHAIR_i", "CHAIR_s"  # Rohrbach et al. 2018: objects named that are not there
COLOUR_ERRORS, POSITION_ERRORS = "colour_errors", "position_errors"  # the sample's present objects, misdescribed
REPEATS = "repeats"  # share of captions with a repeated word bigram or trigram
DISTINCT_1, DISTINCT_2 = "distinct_1", "distinct_2"  # distinct n-grams over all n-grams of all captions
VOCABULARY = "vocabulary"  # distinct words over all captions
COPIED = "copied"  # share of captions that are a training caption verbatim
LENGTH = "length"  # mean words per caption
METRIC_GROUPS = {
    "n-gram": NGRAM_KEYS,
    "embedding": (CLIP_S, REFCLIP_S),
    "hallucination": (CHAIR_I, CHAIR_S, COLOUR_ERRORS, POSITION_ERRORS),
    "degeneration": (REPEATS, DISTINCT_1, DISTINCT_2, VOCABULARY, COPIED, LENGTH),
}
METRIC_KEYS = tuple(k for group in METRIC_GROUPS.values() for k in group)  # every metric 03 reports
LOWER_IS_BETTER = frozenset({CHAIR_I, CHAIR_S, COLOUR_ERRORS, POSITION_ERRORS, REPEATS, COPIED})
# Each metric's scale as the tables name it; "higher is better" unless the key is in LOWER_IS_BETTER.
METRIC_SCALES = {**dict.fromkeys(PER_IMAGE_KEYS, "0-1"), CIDER: "0-10", SACREBLEU: "0-100",
                 CLIP_S: "0-2.5", REFCLIP_S: "0-2.5",
                 **dict.fromkeys((CHAIR_I, CHAIR_S, COLOUR_ERRORS, POSITION_ERRORS, REPEATS, COPIED), "share"),
                 DISTINCT_1: "0-1", DISTINCT_2: "0-1", VOCABULARY: "words", LENGTH: "words"}
HUMAN_CEILING = "human_ceiling"  # metrics.json: the references scored against each other (scoring.ceiling)


def undecoded(split: Dataset) -> Dataset:
    """The split with its image column left as {bytes, path}: decoding is ours, so a broken file is named."""
    from datasets import Image as ImageFeature

    return split.cast_column(IMAGE, ImageFeature(decode=False))


def references(split: Dataset) -> dict[str, list[str]]:
    """{image_id: all reference captions} of a canonical split."""
    return dict(zip(split[IMAGE_ID], split[CAPTIONS]))


# Function words that say nothing about what is in an image: word usage, slices and repetition skip them.
_STOP_TEXT = """
a an the this that these those some any each every another one two three four five several many
of in on at to into onto from with without by for over under near next behind beside above below
up down out off through across along around against between while
and or but as is are was were be been being has have having his her their its it they he she
there here who which what very just also other
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def words(caption: str) -> list[str]:
    """Lower-case word tokens of a caption (letters, digits, apostrophes): the one definition of a word."""
    return re.findall(r"[a-z0-9']+", caption.lower())
