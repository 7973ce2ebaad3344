"""Local sources: an image folder with metadata.jsonl/.csv, and a COCO captions JSON with its image folder."""
from __future__ import annotations

import csv
import io
import json
import posixpath
import warnings
from pathlib import Path

from datasets import DatasetDict

from ..errors import BadDataError
from ..schema import SPLIT_ALIASES
from . import problems as P
from .checks import ImageChecks
from .records import Record, build_splits, check_images, clean_captions, resolve_inside

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
_RESERVED = {"file_name", "caption", "captions", "split"}


def load_folder_source(cfg, bad: P.BadData | None = None, image_checks: ImageChecks | None = None) -> DatasetDict:
    """source='folder': cfg.data_dir with its metadata file, split as cfg says."""
    return load_folder(cfg.data_dir, cfg.split_seed, cfg.val_fraction, cfg.test_fraction, bad=bad,
                       encoding=cfg.encoding, max_pixels=cfg.max_image_pixels, image_checks=image_checks)


def load_folder(root, split_seed: int = 42, val_fraction: float = 0.05, test_fraction: float = 0.05, *,
                bad: P.BadData | None = None, encoding: str = "utf-8", max_pixels: int | None = None,
                image_checks: ImageChecks | None = None) -> DatasetDict:
    """Images under root + metadata.jsonl/.csv (file_name, caption or captions, optional split) -> DatasetDict.

    Rows with the same file_name are one image (their captions are pooled; an exact repeat is merged). In
    metadata.csv a `captions` cell is a JSON list of strings, e.g. ["a dog", "a brown dog"]; in metadata.jsonl it
    is a list. image_id is the file_name. Without a split column the images are split by a seeded shuffle
    (split_seed, *_fraction). Every row and image is checked; `bad` (on_bad_data) decides what problems do.
    `image_checks` answers for files checked before and keeps what is checked now (blipnb.data.checks).
    """
    bad = bad if bad is not None else P.BadData()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data_dir {str(root)!r} is not a directory")
    found = [root / name for name in METADATA_FILES if (root / name).exists()]
    if len(found) != 1:
        problem = "has both" if found else "has neither"
        raise FileNotFoundError(f"data_dir {str(root)!r} {problem} of {' and '.join(METADATA_FILES)}; it needs one")
    meta = found[0]
    rows = _read_jsonl(meta, encoding, bad) if meta.suffix == ".jsonl" else _read_csv(meta, encoding, bad)
    by_name: dict[str, Record] = {}
    base = root.resolve()
    for where, row in rows:
        name = row.get("file_name")
        key = posixpath.normpath(name.replace("\\", "/")) if isinstance(name, str) and name.strip() else None
        split = None
        try:
            split = split_name(row.get("split"), where)
            path = resolve_inside(root, name, where, base)
            first = by_name.get(key)
            if first is not None and split != first.split:
                raise P.RowProblem(P.SPLIT_CONFLICT, f"{where}: {name!r} has split {split!r} but {first.where} "
                                                     f"says {first.split!r}")
            captions = clean_captions(_row_captions(row, where, csv_cell=meta.suffix == ".csv"), where, bad, key,
                                      split)
        except P.RowProblem as e:
            bad.add_row(e, where, image=key, scope="image" if e.reason in (P.ESCAPES, P.NO_FILE_NAME) else "row",
                        split=split)
            continue
        if key not in by_name:
            extra = {k: v for k, v in row.items() if k not in _RESERVED}
            by_name[key] = Record(path, key, [], split, where, extra)
        by_name[key].add_captions(captions, where, bad)
    records = list(by_name.values())
    if not records and not bad.problems:
        raise BadDataError(f"{meta} lists no images")
    check_images(records, root, bad, max_pixels, image_checks)
    records = bad.settle(records, f"{meta}")
    _warn_duplicates(bad, meta.name)
    return build_splits(records, split_seed, val_fraction, test_fraction, bad, f"'split' column of {meta.name}")


def load_coco_json(cfg, bad: P.BadData | None = None, image_checks: ImageChecks | None = None) -> DatasetDict:
    """A COCO captions file (images: id, file_name[, split]; annotations: image_id, caption) + cfg.data_dir."""
    bad = bad if bad is not None else P.BadData()
    root, ann_path = Path(cfg.data_dir), Path(cfg.annotations)
    ann = read_json_object(ann_path, cfg.encoding)
    for key in ("images", "annotations"):
        if not isinstance(ann.get(key), list):
            raise ValueError(  # noqa: TRY004 - a malformed file is a bad value, not a caller's type error
                f"{ann_path}: a COCO captions file needs a list {key!r}; it has keys {sorted(ann)}")
    by_id: dict[str, Record] = {}
    bad_ids: set[str] = set()
    base = root.resolve()
    for k, im in enumerate(ann["images"]):
        where = f"{ann_path.name} images[{k}]"
        image_id = str(im["id"]) if isinstance(im, dict) and "id" in im else None
        try:
            if image_id is None:
                raise P.RowProblem(P.BAD_ROW, f"{where}: has no 'id'")
            path = resolve_inside(root, im.get("file_name"), where, base)
            split = split_name(im.get("split"), where)
        except P.RowProblem as e:
            bad.add_row(e, where, image=image_id, scope="image")
            bad_ids.add(image_id)
            continue
        by_id[image_id] = Record(path, image_id, [], split, where)
    for k, a in enumerate(ann["annotations"]):
        where = f"{ann_path.name} annotations[{k}]"
        image_id = str(a.get("image_id")) if isinstance(a, dict) else None
        record = by_id.get(image_id)
        try:
            if record is None and image_id not in bad_ids:
                raise P.RowProblem(P.UNKNOWN_ID, f"{where}: image_id {image_id!r} is not in 'images'")
            captions = clean_captions(a.get("caption"), where, bad, image_id)
        except P.RowProblem as e:
            bad.add_row(e, where, image=image_id if record is not None else None)
            continue
        if record is not None:
            record.add_captions(captions, where, bad)
    uncaptioned = {i for i, r in by_id.items() if not r.captions and not any(p.image == i for p in bad.problems)}
    if uncaptioned:  # COCO files may list images nobody captioned: not a problem with the data
        warnings.warn(f"{ann_path.name}: skipped {len(uncaptioned)} image(s) without captions", stacklevel=2)
    records = [r for i, r in by_id.items() if i not in uncaptioned]
    check_images(records, root, bad, cfg.max_image_pixels, image_checks)
    records = bad.settle(records, str(ann_path))
    _warn_duplicates(bad, ann_path.name)
    return build_splits(records, cfg.split_seed, cfg.val_fraction, cfg.test_fraction, bad,
                        f"'split' field of {ann_path.name}")


def split_name(value, where: str) -> str | None:
    """A metadata split value as one of SPLITS (val/valid/dev -> validation, Karpathy's restval -> train)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    name = SPLIT_ALIASES.get(str(value).strip().lower(), "train" if str(value).lower() == "restval" else None)
    if name is None:
        raise P.RowProblem(P.UNKNOWN_SPLIT, f"{where}: unknown split {value!r}; use one of "
                                            f"{', '.join(sorted(SPLIT_ALIASES))}")
    return name


def _row_captions(row: dict, where: str, csv_cell: bool):
    if row.get("captions") not in (None, ""):
        value = row["captions"]
        if csv_cell:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise P.RowProblem(P.BAD_ROW, f'{where}: a captions cell must be a JSON list of strings, e.g. '
                                              f'["a", "b"]; got {value!r}') from None
        if not isinstance(value, list):
            raise P.RowProblem(P.BAD_ROW, f"{where}: captions must be a list of strings, got "
                                          f"{type(value).__name__}")
        return value
    if "caption" in row:
        return row["caption"]
    raise P.RowProblem(P.NO_CAPTION, f"{where}: needs a 'caption' or 'captions' column; it has {sorted(row)}")


def _read_jsonl(path: Path, encoding: str, bad: P.BadData) -> list[tuple[str, dict]]:
    rows = []
    for lineno, line in enumerate(read_text(path, encoding).splitlines(), 1):
        if line.strip():
            where = f"{path.name} line {lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                bad.add(P.BAD_ROW, where, f"not valid JSON ({e.msg})", scope="row")
                continue
            if not isinstance(row, dict):
                bad.add(P.BAD_ROW, where, f"expected a JSON object, got {type(row).__name__}", scope="row")
                continue
            rows.append((where, row))
    return rows


def _read_csv(path: Path, encoding: str, bad: P.BadData) -> list[tuple[str, dict]]:
    reader = csv.DictReader(io.StringIO(read_text(path, encoding), newline=""))
    if not reader.fieldnames or "file_name" not in reader.fieldnames:
        raise BadDataError(f"{path.name}: needs a header with a 'file_name' column; got {reader.fieldnames}")
    rows = []
    for row in reader:
        where = f"{path.name} line {reader.line_num}"
        if None in row:  # DictReader keeps the fields past the header under the key None
            n = len(reader.fieldnames) + len(row[None])
            bad.add(P.TOO_MANY_FIELDS, where, f"{n} fields but the header has {len(reader.fieldnames)}: a caption "
                                              f'containing a comma needs double quotes, e.g. "a dog, running"',
                    scope="row", image=posixpath.normpath(row["file_name"]) if row.get("file_name") else None)
            continue
        rows.append((where, dict(row)))
    return rows


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A metadata file's text; a BadDataError naming the line and the byte when it is not in `encoding`."""
    data = Path(path).read_bytes()
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # spreadsheets write a byte-order mark
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise BadDataError(
            f"{path}: line {line}, column {column} (byte offset {e.start}): byte 0x{data[e.start]:02x} is not "
            f"valid {e.encoding}. The file is in another encoding: set the parameter encoding, e.g. "
            f"-p encoding latin-1 (Western European exports) or cp1252 (Windows), or save the file as UTF-8."
        ) from None


def read_json_object(path: Path, encoding: str = "utf-8") -> dict:
    """A JSON file whose top level is an object; ValueError naming the file and line otherwise."""
    try:
        data = json.loads(read_text(path, encoding))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")  # noqa: TRY004 - bad file content
    return data


def _warn_duplicates(bad: P.BadData, origin: str) -> None:
    if bad.duplicates:
        shown = "; ".join(bad.duplicates[:3]) + (f" ... and {len(bad.duplicates) - 3} more"
                                                 if len(bad.duplicates) > 3 else "")
        warnings.warn(f"{origin}: merged {len(bad.duplicates)} exact duplicate (image, caption) pair(s), which "
                      f"would count one reference twice: {shown}", P.DataWarning, stacklevel=3)
