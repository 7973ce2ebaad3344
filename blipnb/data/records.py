"""Local image files with captions -> the canonical DatasetDict: path safety, image checks, image-level splits."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features
from datasets import Image as ImageFeature
from PIL import Image

from ..schema import CAPTIONS, IMAGE, IMAGE_ID, SPLITS

FULL_CHECK_LIMIT = 2000  # decode every image up front for sets up to this size ...
HEADER_CHECK_LIMIT = 20000  # ... read only the headers up to this size; above it, only check the files exist
SHOW = 10  # problems listed in one error message


@dataclass
class Record:
    """One image of a local source before it becomes a row."""

    path: Path  # absolute path of the image file
    image_id: str
    captions: list[str]
    split: str | None  # one of SPLITS, or None for a seeded split by image
    where: str  # where it was declared, for error messages ("metadata.jsonl line 3")
    extra: dict = field(default_factory=dict)


def resolve_inside(root: Path, name: str, where: str) -> Path:
    """root/name resolved (symlinks too); ValueError naming the file and row if it escapes root."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: file_name is missing or empty")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{where}: file_name {name!r} is an absolute path; it must be relative to {root}")
    base = root.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{where}: file_name {name!r} resolves to {path}, outside the data directory {base}")
    return path


def clean_captions(captions, where: str) -> list[str]:
    """Stripped captions; ValueError naming the row if there are none or one is empty."""
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, (list, tuple)) or not captions:
        raise ValueError(f"{where}: expected at least one caption, got {captions!r}")
    out = []
    for c in captions:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"{where}: empty or non-text caption {c!r}")
        out.append(" ".join(c.split()))
    return out


def check_images(records: list[Record], root: Path) -> None:
    """One error listing missing files, then one listing unreadable images (decoded, or headers for big sets)."""
    missing = [r for r in records if not r.path.is_file()]
    if missing:
        listed = "; ".join(f"{_rel(r.path, root)} ({r.where})" for r in missing[:SHOW])
        raise FileNotFoundError(f"{len(missing)} of {len(records)} image file(s) not found under {root}: {listed}"
                                + (" ..." if len(missing) > SHOW else ""))
    if len(records) > HEADER_CHECK_LIMIT:
        return  # the leak guard decodes every image and names any that fail
    from tqdm.auto import tqdm

    full = len(records) <= FULL_CHECK_LIMIT
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        errors = list(tqdm(pool.map(lambda r: _image_error(r.path, full), records), total=len(records),
                           desc="checking images", disable=len(records) < FULL_CHECK_LIMIT))
    bad = [(r, e) for r, e in zip(records, errors) if e]
    if bad:
        listed = "; ".join(f"{_rel(r.path, root)} ({r.where}): {e}" for r, e in bad[:SHOW])
        raise ValueError(f"{len(bad)} image file(s) under {root} cannot be read as images: {listed}"
                         + (" ..." if len(bad) > SHOW else ""))


def assign_splits(ids: list[str], seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """A seeded split by image: the same ids and seed always give the same split, whatever their order."""
    ordered = sorted(set(ids))
    n = len(ordered)
    n_val, n_test = (_share(n, f) for f in (val_fraction, test_fraction))
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} image(s) are too few to split with val_fraction={val_fraction}, "
                         f"test_fraction={test_fraction}: no training images would be left")
    order = np.random.default_rng(seed).permutation(n)
    names = ["validation"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)
    return {ordered[i]: names[k] for k, i in enumerate(order)}


def build_splits(records: list[Record], seed: int, val_fraction: float, test_fraction: float) -> DatasetDict:
    """Records -> DatasetDict(train, validation, test), splitting by image where no split was given."""
    given = [r for r in records if r.split is not None]
    if given and len(given) < len(records):
        lacking = [r.where for r in records if r.split is None]
        raise ValueError(f"{len(lacking)} image(s) have no split while others do: {', '.join(lacking[:SHOW])}")
    if not given:
        split_of = assign_splits([r.image_id for r in records], seed, val_fraction, test_fraction)
        for r in records:
            r.split = split_of[r.image_id]
    extras = sorted({k for r in records for k in r.extra})
    columns = {IMAGE: [str(r.path) for r in records], IMAGE_ID: [r.image_id for r in records],
               CAPTIONS: [r.captions for r in records], **{k: [r.extra.get(k) for r in records] for k in extras}}
    inferred = Dataset.from_dict({k: v for k, v in columns.items() if k != IMAGE}).features
    features = Features({IMAGE: ImageFeature(), **inferred})
    out = DatasetDict()
    for split in SPLITS:
        keep = [i for i, r in enumerate(records) if r.split == split]
        out[split] = Dataset.from_dict({k: [v[i] for i in keep] for k, v in columns.items()}, features=features)
    return out


def _share(n: int, fraction: float) -> int:
    # At least one image in a requested split, so a tiny set still has something to validate and test on.
    return max(1, round(n * fraction)) if fraction > 0 and n >= 3 else round(n * fraction)


def _image_error(path: Path, full: bool) -> str | None:
    try:
        with Image.open(path) as im:
            if full:
                im.draft(im.mode, (64, 64))  # a JPEG decodes at reduced scale but still reads every byte
                im.load()
        return None
    except Exception as e:  # noqa: BLE001 - reported with the file name
        return f"{type(e).__name__}: {e}"


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)
