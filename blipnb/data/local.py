"""Local sources: an image folder with metadata.jsonl/.csv, and a COCO captions JSON with its image folder."""
from __future__ import annotations

import csv
import json
import posixpath
import warnings
from pathlib import Path

from datasets import DatasetDict

from ..schema import SPLIT_ALIASES
from .records import Record, build_splits, check_images, clean_captions, resolve_inside

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
_RESERVED = {"file_name", "caption", "captions", "split"}


def load_folder_source(cfg) -> DatasetDict:
    """source='folder': cfg.data_dir with its metadata file, split as cfg says."""
    return load_folder(cfg.data_dir, cfg.split_seed, cfg.val_fraction, cfg.test_fraction)


def load_folder(root, split_seed: int = 42, val_fraction: float = 0.05, test_fraction: float = 0.05) -> DatasetDict:
    """Images under root + metadata.jsonl/.csv (file_name, caption or captions, optional split) -> DatasetDict.

    Rows with the same file_name are one image (their captions are pooled). In metadata.csv a `captions` cell is
    a JSON list of strings, e.g. ["a dog", "a brown dog"]; in metadata.jsonl it is a list. image_id is the
    file_name. Without a split column the images are split by a seeded shuffle (split_seed, *_fraction).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(root)!r} is not a directory")
    found = [root / name for name in METADATA_FILES if (root / name).exists()]
    if len(found) != 1:
        problem = "has both" if found else "has neither"
        raise FileNotFoundError(f"data_dir {str(root)!r} {problem} of {' and '.join(METADATA_FILES)}; it needs one")
    meta = found[0]
    rows = _read_jsonl(meta) if meta.suffix == ".jsonl" else _read_csv(meta)
    by_name: dict[str, Record] = {}
    for where, row in rows:
        name = row.get("file_name")
        path = resolve_inside(root, name, where)
        key = posixpath.normpath(name.replace("\\", "/"))
        captions = clean_captions(_row_captions(row, where, csv_cell=meta.suffix == ".csv"), where)
        split = split_name(row.get("split"), where)
        if key in by_name:
            first = by_name[key]
            if split != first.split:
                raise ValueError(f"{where}: {name!r} has split {split!r} but {first.where} says {first.split!r}")
            first.captions.extend(captions)
        else:
            extra = {k: v for k, v in row.items() if k not in _RESERVED}
            by_name[key] = Record(path, key, captions, split, where, extra)
    records = list(by_name.values())
    if not records:
        raise ValueError(f"{meta} lists no images")
    check_images(records, root)
    return build_splits(records, split_seed, val_fraction, test_fraction)


def load_coco_json(cfg) -> DatasetDict:
    """A COCO captions file (images: id, file_name[, split]; annotations: image_id, caption) + cfg.data_dir."""
    root, ann_path = Path(cfg.data_dir), Path(cfg.annotations)
    ann = read_json_object(ann_path)
    for key in ("images", "annotations"):
        if not isinstance(ann.get(key), list):
            raise ValueError(  # noqa: TRY004 - a malformed file is a bad value, not a caller's type error
                f"{ann_path}: a COCO captions file needs a list {key!r}; it has keys {sorted(ann)}")
    by_id: dict[str, Record] = {}
    for k, im in enumerate(ann["images"]):
        where = f"{ann_path.name} images[{k}]"
        if "id" not in im:
            raise ValueError(f"{where}: has no 'id'")
        path = resolve_inside(root, im.get("file_name"), where)
        by_id[str(im["id"])] = Record(path, str(im["id"]), [], split_name(im.get("split"), where), where)
    unknown = []
    for k, a in enumerate(ann["annotations"]):
        where = f"{ann_path.name} annotations[{k}]"
        record = by_id.get(str(a.get("image_id")))
        if record is None:
            unknown.append(f"{where} (image_id {a.get('image_id')!r})")
            continue
        record.captions.extend(clean_captions(a.get("caption"), where))
    if unknown:
        raise ValueError(f"{len(unknown)} annotation(s) refer to image ids not in 'images': {', '.join(unknown[:10])}")
    records = [r for r in by_id.values() if r.captions]
    if len(records) < len(by_id):
        warnings.warn(f"{ann_path.name}: skipped {len(by_id) - len(records)} image(s) without captions", stacklevel=2)
    check_images(records, root)
    return build_splits(records, cfg.split_seed, cfg.val_fraction, cfg.test_fraction)


def split_name(value, where: str) -> str | None:
    """A metadata split value as one of SPLITS (val/valid/dev -> validation, Karpathy's restval -> train)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    name = SPLIT_ALIASES.get(str(value).strip().lower(), "train" if str(value).lower() == "restval" else None)
    if name is None:
        raise ValueError(f"{where}: unknown split {value!r}; use one of {', '.join(sorted(SPLIT_ALIASES))}")
    return name


def _row_captions(row: dict, where: str, csv_cell: bool):
    if row.get("captions") not in (None, ""):
        value = row["captions"]
        if csv_cell:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f'{where}: a captions cell must be a JSON list of strings, e.g. ["a", "b"]; '
                                 f"got {value!r}") from None
        if not isinstance(value, list):
            raise ValueError(f"{where}: captions must be a list of strings, got {type(value).__name__}")
        return value
    if "caption" in row:
        return row["caption"]
    raise ValueError(f"{where}: needs a 'caption' or 'captions' column; it has {sorted(row)}")


def _read_jsonl(path: Path) -> list[tuple[str, dict]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                where = f"{path.name} line {lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
                rows.append((where, row))
    return rows


def _read_csv(path: Path) -> list[tuple[str, dict]]:
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: spreadsheets write a byte-order mark
        reader = csv.DictReader(f)
        if not reader.fieldnames or "file_name" not in reader.fieldnames:
            raise ValueError(f"{path.name}: needs a header with a 'file_name' column; got {reader.fieldnames}")
        return [(f"{path.name} line {reader.line_num}", dict(row)) for row in reader]


def read_json_object(path: Path) -> dict:
    """A JSON file whose top level is an object; ValueError naming the file and line otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")  # noqa: TRY004 - bad file content
    return data
