"""COCO with the Karpathy split: captions from a local dataset_coco.json or the hub, images from a COCO root."""
from __future__ import annotations

import posixpath
from pathlib import Path

from datasets import DatasetDict

from .hub import load_hub
from .local import read_json_object, split_name
from . import problems as P
from .checks import ImageChecks
from .records import Record, build_splits, check_images, clean_captions, resolve_inside

KARPATHY_ID = "yerevann/coco-karpathy"  # captions and file paths only, no image bytes


def load_coco_karpathy(cfg, bad: P.BadData | None = None, image_checks: ImageChecks | None = None) -> DatasetDict:
    """COCO with the Karpathy split: captions from cfg.annotations (dataset_coco.json) or the hub, images from data_dir."""
    bad = bad if bad is not None else P.BadData()
    root = Path(cfg.data_dir)
    if cfg.annotations:
        entries = read_json_object(Path(cfg.annotations), cfg.encoding).get("images")
        origin = Path(cfg.annotations).name
        if not isinstance(entries, list):
            raise ValueError(f"{cfg.annotations}: a Karpathy dataset_coco.json needs a list 'images'")
    else:
        dd = load_hub(cfg.hub_id or KARPATHY_ID)
        columns = ["filepath", "filename", "sentences", "split", "cocoid"]
        entries = [row for s in dd for row in dd[s].select_columns(columns).to_list()]
        origin = cfg.hub_id or KARPATHY_ID
    records = []
    base = root.resolve()
    for k, e in enumerate(entries):
        where = f"{origin} images[{k}] (cocoid {e.get('cocoid')})"
        image_id = str(e["cocoid"])
        try:
            path = resolve_inside(root, posixpath.join(e.get("filepath") or "", e.get("filename") or ""), where, base)
            split = split_name(e.get("split"), where)
            sentences = [s["raw"] if isinstance(s, dict) else s for s in e.get("sentences") or []]
            captions = clean_captions(sentences, where, bad, image_id, split)
        except P.RowProblem as e:
            bad.add_row(e, where, image=image_id, scope="image")
            continue
        record = Record(path, image_id, [], split, where)
        record.add_captions(captions, where, bad)
        records.append(record)
    check_images(records, root, bad, cfg.max_image_pixels, image_checks)
    records = bad.settle(records, f"{origin} with images under {root}")
    return build_splits(records, cfg.split_seed, cfg.val_fraction, cfg.test_fraction, bad,
                        f"'split' field of {origin}")
