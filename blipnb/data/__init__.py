"""The data layer's face: every source -> the canonical DatasetDict(train, validation, test), one row per image.

Modules: `local` (an image folder, COCO JSON), `flickr8k`, `coco_karpathy`, `sample` (the synthetic set), `hub`
(loading a hub dataset or its local copy), `records` (local files -> splits), `leaks`, `stats`, `images`.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from typing import TYPE_CHECKING

from ..schema import IMAGE_ID, SPLITS

if TYPE_CHECKING:
    from datasets import DatasetDict

    from ..config import DataConfig


def load_captions(cfg: DataConfig) -> DatasetDict:
    """Load cfg.source as the canonical DatasetDict, cap its sizes, then guard against leaks across splits."""
    return load_checked(cfg)[0]


def load_checked(cfg: DataConfig) -> tuple[DatasetDict, list[dict]]:
    """load_captions, also returning the near-duplicate pairs found before the policy was applied."""
    from . import leaks

    ds = load_source(cfg)
    ds = limit_samples(ds, cfg.max_train_samples, cfg.max_eval_samples)
    check_disjoint(ds)
    pairs = leaks.near_duplicates(ds)
    return leaks.apply_near_duplicate_policy(ds, pairs, cfg.near_duplicates), pairs


def load_source(cfg: DataConfig) -> DatasetDict:
    """The canonical DatasetDict of cfg.source, before size caps and leak checks."""
    from . import coco_karpathy, flickr8k, local, sample

    loaders = {"sample": sample.load_sample, "folder": local.load_folder_source, "coco_json": local.load_coco_json,
               "coco_karpathy": coco_karpathy.load_coco_karpathy, "flickr8k": flickr8k.load_flickr8k,
               "flickr8k_rows": flickr8k.load_flickr8k_rows}
    return loaders[cfg.source](cfg)


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


def split_hashes(ds: DatasetDict) -> dict[str, str]:
    """sha256 of each split's sorted image ids, for provenance: same hash, same images."""
    return {s: hashlib.sha256("\n".join(sorted(str(i) for i in ds[s][IMAGE_ID])).encode()).hexdigest()
            for s in SPLITS if s in ds}


def _first(items: list, n: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (f" ... ({len(items) - n} more)" if len(items) > n else "")
