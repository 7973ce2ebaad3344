"""Corrections to reference captions: recorded beside a run, applied to any source when it is loaded.

The user's data is never written to. A corrections file (runs.CORRECTIONS in a run directory, where 04's browser
records them; the data parameter `corrections` names the one to apply) holds one JSON object per line:

    {"image_id": "s00012", "reference": 1, "old": "a red circle", "new": "a blue circle", "time": "2026-01-05T10:02:11+00:00"}
    {"image_id": "s00012", "reference": 0, "old": "a tiny square", "drop": true, "time": "2026-01-05T10:02:30+00:00"}

- `reference` is 0-based in the image's `captions` list as it stands after the lines above it were applied: a drop
  moves that image's later references up by one, and a later line may correct an earlier line's text.
- `old` must equal that reference's current text, so a line the data no longer matches is refused rather than
  changing another caption.
- Each line has exactly one of `"new": "<text>"` (non-empty) and `"drop": true`; `time` is UTC, ISO 8601.
- Dropping an image's last reference removes the image from its split (counted as `images_removed`).

Every line is checked before any is applied; all problems are reported at once, by file and line.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .. import runs
from ..errors import BadDataError, ParameterError
from ..schema import CAPTIONS, IMAGE_ID

if TYPE_CHECKING:
    from datasets import DatasetDict

REQUIRED = ("image_id", "reference", "old")
MARK = "blipnb corrected references: "  # the split's info.description line naming the images whose references changed
SHOW = 10  # problems listed in one error message


def record_correction(run_dir: str | os.PathLike, image_id, reference: int, old: str, new: str | None = None) -> dict:
    """Append one correction to run_dir/corrections.jsonl and return it: reference number `reference` (0-based) of
    `image_id`, whose text is `old` now, becomes `new`; new=None drops it. The data folder is never touched."""
    if not isinstance(reference, int) or isinstance(reference, bool) or reference < 0:
        raise ParameterError(f"reference must be a 0-based index into the image's captions, got {reference!r}")
    if new is not None and (not isinstance(new, str) or not new.strip()):
        raise ParameterError("a corrected reference needs a non-empty text (new=None drops the reference)")
    if new is not None and new.strip() == old:
        raise ParameterError(f"the new text of reference {reference} of {image_id!r} equals the old one: nothing "
                             "to correct")
    line = {"image_id": str(image_id), "reference": reference, "old": old,
            **({"drop": True} if new is None else {"new": new.strip()}),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = runs.RunDir(run_dir).ensure() / runs.CORRECTIONS
    before = path.read_text(encoding="utf-8") if path.is_file() else ""
    if before and not before.endswith("\n"):
        before += "\n"
    runs.write_text(path, before + json.dumps(line, ensure_ascii=False) + "\n")
    return line


@dataclass
class Outcome:
    """What a corrections file does to a set of references: each touched image's captions afterwards."""

    captions: dict = field(default_factory=dict)  # image id -> its captions after every line ([] when all dropped)
    edited: int = 0
    dropped: int = 0
    problems: list = field(default_factory=list)  # "line 3: ..."


def replay(path: str | os.PathLike, references: dict) -> Outcome:
    """Check every line of the corrections file `path` against `references` ({image id: captions}) in order, each
    after the lines above it; the outcome lists every problem, by line, and what the references become."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadDataError(f"corrections file {str(path)!r} cannot be read ({type(e).__name__}: {e}): set "
                           "`corrections` to a corrections.jsonl that 04 wrote, or to None") from None
    return replay_text(text, references)


def replay_text(text: str, references: dict, first_line: int = 1) -> Outcome:
    """replay() on the lines of `text`, numbered from `first_line`."""
    out = Outcome()
    for number, raw in enumerate(text.splitlines(), first_line):
        if raw.strip():
            problem = _apply_line(raw, out, references)
            if problem:
                out.problems.append(f"line {number}: {problem}")
    return out


def _apply_line(raw: str, out: Outcome, references: dict) -> str | None:
    """Apply one line to out.captions; the problem instead, when it cannot be applied."""
    try:
        line = json.loads(raw)
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg})"
    if not isinstance(line, dict):
        return "not a JSON object"
    missing = [k for k in REQUIRED if k not in line]
    if missing:
        return f"lacks {', '.join(missing)}"
    if ("new" in line) == (line.get("drop") is True):
        return 'needs exactly one of "new": "<text>" and "drop": true'
    if "new" in line and (not isinstance(line["new"], str) or not line["new"].strip()):
        return f'"new" must be a non-empty text, got {line["new"]!r}'
    image_id, index = str(line["image_id"]), line["reference"]
    if image_id not in references:
        return f"image_id {image_id!r} is not in the data"
    captions = out.captions.get(image_id, references[image_id])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(captions):
        return (f"reference {index!r} of {image_id!r} is out of range: it has {len(captions)} reference(s) here"
                + ("" if captions else " (an earlier line dropped its last one)"))
    if captions[index] != line["old"]:
        return f"reference {index} of {image_id!r} reads {captions[index]!r}, not {line['old']!r} as the line says"
    captions = list(captions)
    if "new" in line:
        captions[index] = line["new"].strip()
        out.edited += 1
    else:
        del captions[index]
        out.dropped += 1
    out.captions[image_id] = captions
    return None


def apply_corrections(ds: DatasetDict, path: str | os.PathLike) -> tuple[DatasetDict, dict]:
    """`ds` with the corrections file `path` applied, and the counts data_summary.json records; a BadDataError
    listing every line that does not fit the data (nothing is applied then)."""
    from datasets import DatasetDict

    located = {s: dict(zip(ds[s][IMAGE_ID], ds[s][CAPTIONS])) for s in ds}
    references = {str(i): caps for refs in located.values() for i, caps in refs.items()}
    outcome = replay(path, references)
    if outcome.problems:
        shown = "\n  ".join(outcome.problems[:SHOW])
        more = f"\n  ... and {len(outcome.problems) - SHOW} more" if len(outcome.problems) > SHOW else ""
        raise BadDataError(f"corrections file {str(path)!r}: {len(outcome.problems)} line(s) do not fit the data, so "
                           f"none was applied:\n  {shown}{more}\nFix or remove those lines (each line's `old` must be "
                           "the reference's text after the lines above it), or set corrections=None.")
    changed = {i: caps for i, caps in outcome.captions.items() if caps != references[i]}
    out, removed = DatasetDict(), {}
    for split in ds:
        ids = [str(i) for i in located[split]]
        touched = [i for i in ids if i in changed]
        if not touched:
            out[split] = ds[split]
            continue
        kept = [n for n, i in enumerate(ids) if changed.get(i, True)]  # an empty list: every reference dropped
        if len(kept) < len(ids):
            removed[split] = len(ids) - len(kept)
        column = [changed.get(i, caps) for i, caps in zip(ids, located[split].values())]
        fixed = ds[split].remove_columns(CAPTIONS).add_column(CAPTIONS, column, feature=ds[split].features[CAPTIONS])
        fixed = fixed.select_columns(ds[split].column_names)
        fixed = fixed.select(kept) if len(kept) < len(ids) else fixed
        fixed.info.description = _marked(fixed.info.description, touched)
        out[split] = fixed
    counts = {"file": str(path), "sha256": file_sha256(path), "references_edited": outcome.edited,
              "references_dropped": outcome.dropped, "images_changed": len(changed),
              "images_removed": sum(removed.values()), "images_removed_by_split": removed}
    return out, counts


def continue_from(run_dir: str | os.PathLike, applied: str | os.PathLike | None) -> tuple[Path, str, int]:
    """The run's corrections file, where new corrections go, and its lines that the run's data has not applied yet
    (with the number of the first). When the data was loaded with another file (`applied`), the run's file starts as
    a copy of it, so that it alone holds every correction."""
    path = runs.RunDir(run_dir) / runs.CORRECTIONS
    base = Path(applied).read_text(encoding="utf-8") if applied and Path(applied).is_file() else ""
    if base and not path.exists():
        runs.write_text(path, base)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.startswith(base):
        raise BadDataError(f"{path} does not begin with the corrections this run's data applied ({applied}): "
                           f"record into another run directory, or rerun 01 to 03 with corrections={str(path)!r}")
    return path, text[len(base):], len(base.splitlines()) + 1


def _marked(description: str, ids: list[str]) -> str:
    kept = [line for line in (description or "").splitlines() if not line.startswith(MARK)]
    return "\n".join([*kept, MARK + json.dumps(sorted(ids))])


def corrected_ids(split) -> set[str]:
    """The images of `split` whose references corrections changed (apply_corrections marks them in its info)."""
    info = getattr(split, "info", None)  # a plain {column: values} mapping carries no corrections
    for line in ((info.description if info is not None else "") or "").splitlines():
        if line.startswith(MARK):
            return set(json.loads(line[len(MARK):]))
    return set()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, for provenance."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def describe(path: str | os.PathLike | None) -> dict | None:
    """{file, sha256} of a corrections file for provenance, or None without one."""
    if not path:
        return None
    return {"file": str(path), "sha256": file_sha256(path) if Path(path).is_file() else None}
