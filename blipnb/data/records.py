"""Local image files with captions -> the canonical DatasetDict: path safety, image checks, image-level splits.

Problems are reported to a `problems.BadData` rather than raised one at a time, so a user sees them all at once.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, Features
from datasets import Image as ImageFeature
from PIL import Image, UnidentifiedImageError

from ..errors import BadDataError, BadImageError
from ..progress import progress_bar
from ..schema import CAPTIONS, IMAGE, IMAGE_ID, SPLITS
from . import leaks, problems as P
from .checks import ImageChecks, file_key
from ..runtime.images import bombs_are_errors, check_pixels

PROGRESS_FROM = 2000  # show a progress bar when checking at least this many images
SHOW = 10  # items listed in one error message


@dataclass
class Record:
    """One image of a local source before it becomes a row."""

    path: Path  # absolute path of the image file
    image_id: str
    captions: list[str]
    split: str | None  # one of SPLITS, or None for a seeded split by image
    where: str  # where it was declared, for error messages ("metadata.jsonl line 3")
    extra: dict = field(default_factory=dict)
    seen: dict = field(default_factory=dict)  # caption -> where it was first given, to merge exact duplicates

    def add_captions(self, captions: list[str], where: str, bad: P.BadData) -> None:
        """Append captions; an exact repeat of one this image already has is merged and counted."""
        for c in captions:
            if c in self.seen:
                bad.duplicates.append(f"{where} repeats {self.seen[c]} ({self.image_id}: {c!r})")
                continue
            self.seen[c] = where
            self.captions.append(c)


def resolve_inside(root: Path, name: str, where: str, base: Path | None = None) -> Path:
    """root/name resolved (symlinks too); a RowProblem naming the file and row if it escapes root. `base` is
    root.resolve(), which a caller resolving many names passes once."""
    if not isinstance(name, str) or not name.strip():
        raise P.RowProblem(P.NO_FILE_NAME, f"{where}: file_name is missing or empty")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise P.RowProblem(P.ESCAPES, f"{where}: file_name {name!r} is an absolute path; it must be relative to "
                                      f"{root}")
    base = base or root.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(base):
        raise P.RowProblem(P.ESCAPES, f"{where}: file_name {name!r} resolves to {path}, outside the data "
                                      f"directory {base}")
    return path


def clean_captions(captions, where: str, bad: P.BadData | None = None, image: str | None = None,
                   split: str | None = None) -> list[str]:
    """Whitespace-normalised captions; a RowProblem if there are none. An empty one is reported to `bad` (and
    left out) when given, else raised."""
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, (list, tuple)) or not captions:
        raise P.RowProblem(P.NO_CAPTION, f"{where}: expected at least one caption, got {captions!r}")
    out = []
    for c in captions:
        if not isinstance(c, str) or not c.strip():
            problem = P.RowProblem(P.EMPTY_CAPTION, f"{where}: empty or non-text caption {c!r}")
            if bad is None:
                raise problem
            bad.add_row(problem, where, image=image, scope="caption", split=split)
            continue
        out.append(" ".join(c.split()))
    return out


def check_images(records: list[Record], root: Path, bad: P.BadData, max_pixels: int | None = None,
                 image_checks: ImageChecks | None = None) -> None:
    """Report every missing, oversized or undecodable image to `bad`: each file is found, its header checked
    against max_pixels, then decoded (JPEGs at reduced scale, still reading every byte). A file `image_checks`
    has checked before, unchanged since, is answered from it; what is checked now is recorded there."""
    image_checks = image_checks if image_checks is not None else ImageChecks()
    # Warning filters are process-wide: set once here, around the threads, not inside each of them.
    with bombs_are_errors(max_pixels), ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        checked = pool.map(lambda r: _checked(r.path, max_pixels, image_checks), records)
        errors = list(progress_bar(checked, total=len(records), desc="checking images",
                                   disable=len(records) < PROGRESS_FROM))
    for r, error in zip(records, errors):
        if error:
            reason, detail = error
            bad.add(reason, r.where, detail, image=r.image_id, file=_rel(r.path, root), split=r.split)


def _checked(path: Path, max_pixels: int | None, image_checks: ImageChecks) -> tuple[str, str] | None:
    """_image_error from the record when the file is unchanged since it was checked, else checked now."""
    try:
        key = file_key(path)
    except OSError:
        return _image_error(path, max_pixels)[0]  # missing or unreadable: nothing to key a record by
    try:
        return image_checks.verdict(key, max_pixels)
    except KeyError:
        problem, dhash = _image_error(path, max_pixels)
        image_checks.record(key, max_pixels, problem, dhash)
        return problem


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


def build_splits(records: list[Record], seed: int, val_fraction: float, test_fraction: float,
                 bad: P.BadData | None = None, split_column: str = "split") -> DatasetDict:
    """Records -> DatasetDict(train, validation, test), splitting by image where no split was given.

    A seeded split is drawn over every image named, skipped ones included (`bad`), so skipping an image never
    moves another to a different split; the skipped ones get their split recorded. A split left empty is an
    error naming `split_column` and the counts.
    """
    given = [r for r in records if r.split is not None]
    if given and len(given) < len(records):
        lacking = [r.where for r in records if r.split is None]
        raise ValueError(f"{len(lacking)} image(s) have no split while others do: {', '.join(lacking[:SHOW])}")
    skipped = [p for p in (bad.problems if bad else []) if p.image is not None]
    if not given:
        ids = [r.image_id for r in records] + [p.image for p in skipped]
        split_of = assign_splits(ids, seed, val_fraction, test_fraction)
        for r in records:
            r.split = split_of[r.image_id]
        for p in skipped:
            p.split = split_of[p.image]
    _check_no_empty_split(records, bool(given), val_fraction, test_fraction, bad, split_column)
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


def _check_no_empty_split(records: list[Record], given: bool, val_fraction: float, test_fraction: float,
                          bad: P.BadData | None, split_column: str) -> None:
    sizes = Counter(r.split for r in records)
    # A seeded split with a zero fraction is empty by request; a given split column must fill every split.
    wanted = SPLITS if given else [s for s, f in zip(SPLITS, (1.0, val_fraction, test_fraction)) if f > 0]
    empty = [s for s in wanted if not sizes[s]]
    if not empty:
        return
    counts = ", ".join(f"{s} {sizes[s]}" for s in SPLITS)
    skipped = f" after skipping {bad.images_skipped} bad image(s)" if bad and bad.images_skipped else ""
    if given:
        raise BadDataError(f"the {split_column} leaves {' and '.join(empty)} empty{skipped} ({counts} images): "
                           f"every split needs at least one image. Assign some rows to {empty[0]}, or drop the "
                           f"column for a seeded split by image (val_fraction, test_fraction).")
    raise BadDataError(f"the seeded split leaves {' and '.join(empty)} empty{skipped} ({counts} images): there "
                       "are too few usable images for val_fraction and test_fraction.")


def _share(n: int, fraction: float) -> int:
    # At least one image in a requested split, so a tiny set still has something to validate and test on.
    return max(1, round(n * fraction)) if fraction > 0 and n >= 3 else round(n * fraction)


def _image_error(path: Path, max_pixels: int | None) -> tuple[tuple[str, str] | None, int | None]:
    """((reason, detail) of what is wrong with the image file at path, or None; its dHash when it decoded)."""
    if not path.is_file():
        return (P.MISSING, ""), None
    try:
        with Image.open(path) as im:
            check_pixels(im, path.name, max_pixels)
            im.draft("L", (64, 64))  # a JPEG decodes at reduced scale, as dHash needs it, but reads every byte
            im.load()
            return None, leaks.dhash(im)  # the leak check's hash, from this one decode
    except BadImageError as e:
        return (P.TOO_LARGE, str(e).removeprefix(f"image {path.name} is ")), None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return (P.BOMB, f"Pillow refuses it: {e}"), None
    except UnidentifiedImageError:
        return (P.NOT_IMAGE, "Pillow cannot identify it as an image"), None
    except Exception as e:  # noqa: BLE001 - reported with the file name
        text = f"{type(e).__name__}: {e}"
        return (P.TRUNCATED if "truncated" in text or "broken data stream" in text else P.UNREADABLE, text), None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)
