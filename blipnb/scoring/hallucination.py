"""Object hallucination: CHAIR_i and CHAIR_s (Rohrbach et al., EMNLP 2018), where the data says what is in each
image.

- CHAIR_i: objects named that are not in the image, over all objects named (pooled over captions).
- CHAIR_s: the share of captions that name at least one object not in the image.

What is in an image (`ObjectTruth`):
- **sample**: exactly, from the generator's attributes. A described shape is hallucinated when no true object of
  that shape is matched to it (the matching 04's attribute table uses, `objects.match_objects`). Shapes that are
  there but given the wrong colour or position are counted apart: colour_errors and position_errors are the
  shares of the present shapes described with a stated, wrong colour (position).
- **coco**: the image's instance-annotation categories (a COCO instances file) together with the categories its
  reference captions name, as the paper does; a caption's objects are the categories `objects.coco_mentions`
  finds in it. Colours and positions are not known.
- other data: not available, with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..schema import CHAIR_I, CHAIR_S, COLOUR_ERRORS, POSITION_ERRORS
from .objects import coco_mentions, sample_objects

SAMPLE, COCO = "sample", "coco"
# ratio metric -> (numerator, denominator) of the per-caption counts it pools; the bootstrap sums them too.
RATIOS = {CHAIR_I: ("hallucinated", "mentioned"), COLOUR_ERRORS: ("colour_wrong", "present"),
          POSITION_ERRORS: ("position_wrong", "present")}
COUNTS = ("mentioned", "hallucinated", "present", "colour_wrong", "position_wrong")
NO_ATTRIBUTES = "only the synthetic sample knows each object's colour and position"


@dataclass
class ObjectTruth:
    """What is in each image: the sample's attributes ({image id: attributes}, with `describe`, the sample's
    parser from a caption to the objects it describes), or COCO categories ({image id: set of category names}),
    to which each caption's references add the categories they name."""

    kind: str
    by_image: dict = field(repr=False)
    origin: str = ""  # where the truth came from, for the report
    describe: Callable[[str], list[dict]] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in (SAMPLE, COCO):
            raise ValueError(f"ObjectTruth kind must be {SAMPLE!r} or {COCO!r}, got {self.kind!r}")
        if self.kind == SAMPLE and self.describe is None:
            raise ValueError("a sample ObjectTruth needs `describe`, the parser of the objects a caption describes")


def caption_objects(caption: str, references: list[str], image_id: str, truth: ObjectTruth) -> dict:
    """One caption's counts (COUNTS) and the objects it names that are not there."""
    if truth.kind == SAMPLE:
        return sample_objects(truth.by_image[image_id], truth.describe(caption))
    there = set(truth.by_image.get(image_id, ())) | {c for r in references for c in coco_mentions(r)}
    named = coco_mentions(caption)
    invented = [c for c in named if c not in there]
    return {"mentioned": len(named), "hallucinated": len(invented), "present": 0, "colour_wrong": 0,
            "position_wrong": 0, "invented": invented}


def hallucination_scores(captions: dict, references: dict, images: dict, truth: ObjectTruth | None,
                         reason: str = "") -> tuple[dict, dict, dict, dict]:
    """(per caption {CHAIR_S: 0/1}, corpus {key: value}, counts {name: list in `captions` order}, unavailable).

    The counts are COUNTS, which the bootstrap pools, and "invented": what each caption names that is not there."""
    if truth is None:
        why = reason or "the data does not say which objects each image holds"
        return {}, {}, {}, {k: why for k in (CHAIR_I, CHAIR_S, COLOUR_ERRORS, POSITION_ERRORS)}
    rows = {k: caption_objects(c, references[k], images[k], truth) for k, c in captions.items()}
    counts = {name: [rows[k][name] for k in captions] for name in (*COUNTS, "invented")}
    per_caption = {k: {CHAIR_S: float(r["hallucinated"] > 0)} for k, r in rows.items()}
    corpus = {CHAIR_S: sum(v[CHAIR_S] for v in per_caption.values()) / max(1, len(rows))}
    unavailable = {}
    for key, (top, bottom) in RATIOS.items():
        if truth.kind != SAMPLE and key != CHAIR_I:
            unavailable[key] = NO_ATTRIBUTES
            continue
        total = sum(counts[bottom])
        corpus[key] = sum(counts[top]) / total if total else 0.0
    return per_caption, corpus, counts, unavailable


def most_hallucinated(rows: list[dict], k: int) -> list[dict]:
    """The k prediction rows (as 03 writes them, with `invented`) naming the most objects that are not there; ties
    by image id."""
    out = [r for r in rows if r.get("invented")]
    return sorted(out, key=lambda r: (-len(r["invented"]), str(r["image_id"])))[:k]
