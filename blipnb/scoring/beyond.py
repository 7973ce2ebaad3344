"""The metrics beyond n-grams, added to a score_captions result: embedding agreement (CLIP-S, RefCLIP-S), object
hallucination (CHAIR), degeneration and diversity. Every key of those groups ends up with a value or a reason,
per-caption values go beside the n-gram ones, and what the bootstrap pools is cached in the result's stats."""
from __future__ import annotations

from dataclasses import dataclass

from ..schema import METRIC_GROUPS
from .degeneration import degeneration_scores
from .embedding import Embedder, embedding_scores
from .hallucination import ObjectTruth, hallucination_scores

BEYOND_GROUPS = ("embedding", "hallucination", "degeneration")
NO_CLIP = "clip_model is empty: CLIP-S is off"


@dataclass
class Grounding:
    """What the beyond-n-gram metrics may use besides the captions: the CLIP embedder (or why there is none), what
    is in each image (or why it is not known), and the training captions (for `copied`)."""

    embed: Embedder | None = None
    embed_reason: str = NO_CLIP
    truth: ObjectTruth | None = None
    truth_reason: str = ""
    train_captions: frozenset | None = None


def add_beyond(result: dict, captions: dict, references: dict, images: dict | None = None,
               grounding: Grounding | None = None) -> dict:
    """Add the embedding, hallucination and degeneration metrics to a score_captions `result` (in place; returned).

    `captions`, `references` and `images` ({id: image id}, default: the id itself) are keyed like the result's
    items; a human-ceiling result scores each held-out reference against its image's other references."""
    grounding = grounding or Grounding()
    ids = result["stats"]["image_ids"]
    by_id = {str(k): k for k in captions}
    caps = {i: captions[by_id[i]] for i in ids}
    refs = {i: list(references[by_id[i]]) for i in ids}
    where = {i: str((images or {}).get(by_id[i], by_id[i])) for i in ids}
    values: dict = {}
    unavailable: dict = {}

    per, corpus, missing = degeneration_scores(caps, grounding.train_captions)
    _merge(result, per)
    values |= corpus
    unavailable |= missing

    per, corpus, counts, missing = hallucination_scores(caps, refs, where, grounding.truth, grounding.truth_reason)
    _merge(result, per)
    values |= corpus
    unavailable |= missing
    if counts:
        result["stats"]["objects"] = counts
        result["objects_truth"] = grounding.truth.origin or grounding.truth.kind

    if grounding.embed is None:
        unavailable |= dict.fromkeys(METRIC_GROUPS["embedding"], grounding.embed_reason)
    else:
        try:
            per, corpus = embedding_scores(caps, refs, where, grounding.embed)
        except Exception as error:  # noqa: BLE001 - a failing CLIP is reported, never fatal to the other metrics
            text = (str(error).strip().splitlines() or [""])[0]
            unavailable |= dict.fromkeys(METRIC_GROUPS["embedding"], f"CLIP failed: {type(error).__name__}: {text}")
        else:
            _merge(result, per)
            values |= corpus
    for group in BEYOND_GROUPS:
        for key in METRIC_GROUPS[group]:
            result["metrics"][key] = values.get(key) if key not in unavailable else None
            if key in unavailable:
                result["unavailable"][key] = unavailable[key]
    return result


def _merge(result: dict, per_caption: dict) -> None:
    for i, row in per_caption.items():
        result["per_image"][i].update(row)
