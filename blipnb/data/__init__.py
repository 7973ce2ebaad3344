"""The data layer's face: every source -> the canonical DatasetDict(train, validation, test), one row per image.

Modules: `local` (an image folder, COCO JSON), `flickr8k`, `coco_karpathy`, `sample` (the synthetic set), `hub`
(loading a hub dataset or its local copy), `records` (local files -> splits), `problems` (bad data, one pass,
on_bad_data), `corrections` (fixed or dropped references, applied to any source), `leaks`, `stats`, `images`.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

from .. import runs
from ..schema import CAPTIONS, IMAGE_ID, SPLITS
from .problems import BadData, DataWarning

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

    from ..config import DataConfig
    from .checks import ImageChecks


class Checked(NamedTuple):
    """What load_checked returns."""

    ds: DatasetDict
    near_duplicate_pairs: list[dict]  # found before the near_duplicates policy was applied
    bad_data: dict  # counts of what on_bad_data=skip left out and of merged duplicates (data_summary.json)
    corrections: dict | None = None  # what cfg.data.corrections changed (data_summary.json); None without a file


def load_captions(cfg: DataConfig, run_dir: str | os.PathLike | None = None,
                  image_checks: ImageChecks | None = None) -> DatasetDict:
    """Load cfg.source as the canonical DatasetDict, cap its sizes, then guard against leaks across splits.

    With on_bad_data='skip', what was left out is listed in run_dir/skipped.jsonl (when run_dir is given). A run_dir
    also keeps what the image check found per file, so the next load there decodes only files changed since.
    """
    return load_checked(cfg, run_dir, image_checks).ds


def load_checked(cfg: DataConfig, run_dir: str | os.PathLike | None = None,
                 image_checks: ImageChecks | None = None) -> Checked:
    """load_captions, also returning the near-duplicate pairs found and the bad-data counts. With run_dir, the image
    checks are recorded there (runs.IMAGE_CHECKS) and reused by later loads for files unchanged since. Loads handed
    the same `image_checks` share what they checked, run_dir or not; without one, each load has its own."""
    from . import leaks
    from .checks import ImageChecks

    bad = BadData(policy=cfg.on_bad_data)
    image_checks = image_checks if image_checks is not None else ImageChecks()
    record = runs.RunDir(run_dir) / runs.IMAGE_CHECKS if run_dir is not None else None
    if record is not None:
        image_checks.load(record)  # what an earlier notebook checked: unchanged files are not decoded again
    ds = load_source(cfg, bad, image_checks)
    if record is not None and image_checks.used:
        image_checks.save(record)
    if not bad.images_total:  # a source without local checks (hub, sample): everything loaded was kept
        bad.images_total = bad.images_kept = sum(len(ds[s]) for s in ds)
    report = report_bad_data(bad, run_dir)
    corrected = None
    if cfg.corrections:
        from .corrections import apply_corrections

        ds, corrected = apply_corrections(ds, cfg.corrections)
    ds = limit_samples(ds, cfg.max_train_samples, cfg.max_eval_samples)
    check_disjoint(ds)
    pairs = leaks.near_duplicates(ds, image_checks=image_checks)
    return Checked(leaks.apply_near_duplicate_policy(ds, pairs, cfg.near_duplicates), pairs, report, corrected)


def load_source(cfg: DataConfig, bad: BadData | None = None, image_checks: ImageChecks | None = None) -> DatasetDict:
    """The canonical DatasetDict of cfg.source, before size caps and leak checks; local sources report their
    problems to `bad` (a fail policy by default) and check their images through `image_checks` (data.checks)."""
    from . import coco_karpathy, flickr8k, local, sample

    checked = {"folder": local.load_folder_source, "coco_json": local.load_coco_json,
               "coco_karpathy": coco_karpathy.load_coco_karpathy}
    if cfg.source in checked:
        return checked[cfg.source](cfg, bad, image_checks)
    loaders = {"sample": sample.load_sample, "flickr8k": flickr8k.load_flickr8k,
               "flickr8k_rows": flickr8k.load_flickr8k_rows}
    return loaders[cfg.source](cfg)


def report_bad_data(bad: BadData, run_dir: str | os.PathLike | None) -> dict:
    """With on_bad_data='skip': write run_dir/skipped.jsonl and say 'skipped N of M images (reasons)'.

    Returns the counts for data_summary.json; `skipped_file` is where the list went (None: nowhere).
    """
    counts = bad.counts()
    counts["skipped_file"] = None
    if bad.policy != "skip":
        return counts
    if run_dir is not None:
        counts["skipped_file"] = str(runs.write_jsonl(runs.RunDir(run_dir) / runs.SKIPPED, bad.records()))
    if bad.problems:
        where = (f"listed in {counts['skipped_file']}" if counts["skipped_file"] else
                 "not written to a file: no run directory was given (load_captions(cfg, run_dir=...))")
        warnings.warn(f"on_bad_data='skip': {bad.summary_line()}; {where}", DataWarning, stacklevel=3)
    return counts


def limit_samples(ds: DatasetDict, max_train: int | None, max_eval: int | None) -> DatasetDict:
    """Keep the first max_train train images and the first max_eval validation and test images."""
    from datasets import DatasetDict

    out = DatasetDict()
    for split in SPLITS:
        cap = max_train if split == "train" else max_eval
        out[split] = ds[split] if cap is None or len(ds[split]) <= cap else ds[split].select(range(cap))
    return out


def validation_subset(split: Dataset, n: int | None, seed: int) -> Dataset:
    """A seeded random sample of n rows (in their split order), or the whole split when n is None or not smaller.

    Training-time validation captions this subset: the first n rows would follow the source's file order."""
    import random

    if n is None or n >= len(split):
        return split
    return split.select(sorted(random.Random(seed).sample(range(len(split)), n)))


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
    """sha256 of each split's sorted image ids, for provenance: same hash, same images. Where corrections changed
    references of the split's images, those images' references are hashed too: other references, another hash."""
    return {s: split_hash(ds[s]) for s in SPLITS if s in ds}


def split_hash(split: Dataset) -> str:
    """One split's hash (split_hashes)."""
    import json

    from .corrections import corrected_ids

    ids = [str(i) for i in split[IMAGE_ID]]
    text = "\n".join(sorted(ids))
    corrected = corrected_ids(split) & set(ids)
    if corrected:
        refs = {i: caps for i, caps in zip(ids, split[CAPTIONS]) if i in corrected}
        text += "\ncorrected references:\n" + json.dumps(refs, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _first(items: list, n: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:n])
    return shown + (f" ... ({len(items) - n} more)" if len(items) > n else "")
