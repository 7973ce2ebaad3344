"""Validation by generating: caption a split from pixels only, then score it against all its references.

The one place that pairs captioning with scoring: the Trainer's validation and the decoding sweep call
`caption_and_score`; 03's evaluation captions with every model first (while METEOR's JVM starts), then calls
`score_split`, the half that pairs captions with their references.
"""
from __future__ import annotations

from typing import Callable

from ..config import GenerationConfig
from ..model.generation import caption_split
from ..schema import references
from ..scoring import quick_scores


def caption_and_score(model, processor, split, gen: GenerationConfig, *, max_images: int | None = None,
                      score: Callable[[dict, dict], dict] = quick_scores, progress: bool = False) -> tuple[dict, dict]:
    """Caption each image of `split` once (its first max_images) and score the captions; returns (predictions,
    scores). `score` takes (predictions, references): quick_scores by default, or the full score_captions."""
    preds = caption_split(model, processor, split, gen, max_images=max_images, progress=progress)
    return preds, score_split(preds, split, score)


def score_split(preds: dict, split, score: Callable[[dict, dict], dict] = quick_scores) -> dict:
    """Score captions of (some of) `split`'s images, made beforehand, against those images' references."""
    refs = references(split)
    return score(preds, {k: refs[k] for k in preds})
