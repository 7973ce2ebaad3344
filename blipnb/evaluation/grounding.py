"""What the metrics beyond n-grams rest on for one split: CLIP for CLIP-S, what is in each image for CHAIR (the
sample's attributes, or COCO instance annotations), and the training captions for `copied`."""
from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..data.local import read_json_object
from ..data.sample import parse_attributes, sample_attributes
from ..schema import CAPTIONS, IMAGE_ID
from ..scoring.beyond import NO_CLIP, Grounding
from ..scoring.degeneration import training_set
from ..scoring.hallucination import COCO, SAMPLE, ObjectTruth
from ..scoring.objects import category_names

COCO_SOURCES = ("coco_karpathy", "coco_json")
NO_INSTANCES = ("needs COCO instance annotations (instances_*.json): set coco_instances to them for CHAIR on "
                "this source")
NOT_KNOWN = ("the data does not say which objects each image holds: CHAIR is measured on the synthetic sample "
             "(exactly) and on COCO (coco_karpathy or coco_json, with coco_instances)")


def grounding(cfg: Config, split, train=None, progress: bool = True) -> Grounding:
    """The Grounding of `split`: CLIP (or why not), the objects in each image (or why not known), and `train`'s
    captions when a train split is given."""
    out = Grounding(train_captions=None if train is None else training_set(c for caps in train[CAPTIONS]
                                                                             for c in caps))
    out.truth, out.truth_reason = object_truth(cfg, split)
    if cfg.eval.clip_model:
        from ..model.clip import ClipUnavailable, clip_embedder

        try:
            out.embed = clip_embedder(cfg.eval.clip_model, split, progress=progress)
        except ClipUnavailable as error:
            out.embed_reason = str(error)
    else:
        out.embed_reason = NO_CLIP
    return out


def object_truth(cfg: Config, split) -> tuple[ObjectTruth | None, str]:
    """(what is in each image of `split`, "") or (None, why it is not known)."""
    attributes = sample_attributes(split)
    if attributes is not None:
        return ObjectTruth(SAMPLE, attributes, "the sample's attributes",
                           describe=lambda caption: parse_attributes(caption)["objects"]), ""
    files = cfg.eval.instance_files()
    if cfg.data.source in COCO_SOURCES and files:
        wanted = set(map(str, split[IMAGE_ID]))
        annotated = coco_instances(files, wanted)
        origin = f"{', '.join(Path(f).name for f in files)} ({len(annotated)} of {len(wanted)} images annotated)"
        return ObjectTruth(COCO, annotated, origin), ""
    return None, NO_INSTANCES if cfg.data.source in COCO_SOURCES else NOT_KNOWN


def coco_instances(files: list[str], wanted: set[str]) -> dict[str, set[str]]:
    """{image id: the categories annotated in it} for the `wanted` ids, from COCO instances files; a ValueError
    naming the file when one is not an instances file, or names none of the images."""
    out: dict[str, set[str]] = {}
    for path in files:
        data = read_json_object(Path(path))
        if not isinstance(data.get("annotations"), list) or not isinstance(data.get("categories"), list):
            raise ValueError(f"{path}: not a COCO instances file (it needs 'annotations' and 'categories' lists)")
        names = category_names(data)
        for image in data.get("images") or []:
            if str(image.get("id")) in wanted:
                out.setdefault(str(image["id"]), set())  # an image with no annotated object holds none
        for ann in data["annotations"]:
            image_id = str(ann.get("image_id"))
            if image_id in wanted and ann.get("category_id") in names:
                out.setdefault(image_id, set()).add(names[ann["category_id"]])
    if wanted and not out:
        raise ValueError(f"{', '.join(files)}: names none of the split's {len(wanted)} images (ids such as "
                         f"{sorted(wanted)[:3]}): pass the instances file of the images you evaluate")
    return out
