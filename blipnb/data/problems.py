"""Bad data found while loading, collected in one pass: fail lists it all at once, skip goes on without it.

A loader reports each problem (file, metadata line, reason) to a `BadData` instead of raising at the first. At
the end `BadData.settle` either raises one BadDataError grouped by reason (on_bad_data=fail) or returns the
records that are still usable (on_bad_data=skip); `BadData.report` then says what was left out.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from ..errors import BadDataError

SHOW = 5  # problems listed per reason in one error message
SKIP_HINT = ("Fix them, or go on without them: on_bad_data='skip' (-p on_bad_data skip, or `on_bad_data: skip` "
             "in a preset) leaves them out and lists them in skipped.jsonl in the run directory.")

# Reasons, the words a user reads and skipped.jsonl groups by.
MISSING = "missing file"
ESCAPES = "path outside the data folder"
NO_FILE_NAME = "no file_name"
NOT_IMAGE = "not an image"
TRUNCATED = "truncated image"
TOO_LARGE = "too many pixels"
BOMB = "decompression bomb"
UNREADABLE = "unreadable image"
EMPTY_CAPTION = "empty caption"
NO_CAPTION = "no caption"
BAD_ROW = "malformed row"
TOO_MANY_FIELDS = "more fields than the header"
UNKNOWN_SPLIT = "unknown split"
SPLIT_CONFLICT = "conflicting split"
UNKNOWN_ID = "unknown image_id"


class DataWarning(UserWarning):
    """Loading went on but changed something: bad items skipped, duplicate rows merged."""


class RowProblem(ValueError):
    """One metadata row or caption that cannot be used; `reason` is one of the reasons above."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Problem:
    """One thing loading could not use: a whole image, one row (its captions) or one caption."""

    reason: str
    where: str  # "metadata.csv line 4", "captions.json annotations[7]"
    detail: str  # the message, naming the file or the value at fault
    image: str | None = None  # the image's key (its file_name or id) when known
    file: str | None = None  # the image file, relative to the data folder, for image problems
    scope: str = "image"  # image, row or caption: what this problem alone takes out
    split: str | None = None

    def line(self) -> str:
        if self.scope == "image" and self.file:
            return f"{self.file} ({self.where}): {self.detail}" if self.detail else f"{self.file} ({self.where})"
        return f"{self.where}: {self.detail}"

    def record(self, skipped_image: bool) -> dict:
        """One line of skipped.jsonl."""
        match = re.search(r"line (\d+)$", self.where)
        return {"file": self.file or self.image, "line": int(match.group(1)) if match else None,
                "where": self.where, "reason": self.reason, "detail": self.detail, "split": self.split,
                "left_out": "image" if skipped_image else self.scope}


@dataclass
class BadData:
    """The problems and merged duplicates of one load, and what on_bad_data does with them."""

    policy: str = "fail"  # fail or skip
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # "metadata.csv line 9 repeats line 3"
    images_total: int = 0
    images_kept: int = 0
    kept_ids: set = field(default_factory=set)

    def add(self, reason: str, where: str, detail: str, **kw) -> None:
        self.problems.append(Problem(reason, where, detail, **kw))

    def add_row(self, e: RowProblem, where: str, image: str | None = None, scope: str = "row",
                split: str | None = None) -> None:
        # The message already starts with where; keep the rest as the detail.
        detail = str(e).removeprefix(f"{where}: ")
        self.add(e.reason, where, detail, image=image, scope=scope, split=split)

    def settle(self, records: list, origin: str) -> list:
        """fail: raise one BadDataError listing every problem; skip: the records still usable (with a caption).

        Records need `image_id` and `captions`; the total is every image named, usable or not.
        """
        bad_ids = {p.image for p in self.problems if p.scope == "image"}
        named = {r.image_id for r in records} | {p.image for p in self.problems if p.image is not None}
        kept = [r for r in records if r.image_id not in bad_ids and r.captions]
        self.images_total, self.images_kept = len(named), len(kept)
        self.kept_ids = {r.image_id for r in kept}
        if self.problems and self.policy != "skip":
            raise BadDataError(self.message(origin) + "\n" + SKIP_HINT, self.problems)
        return kept

    def message(self, origin: str) -> str:
        """All problems grouped by reason, at most SHOW of each, with counts."""
        by_reason: dict[str, list[Problem]] = {}
        for p in self.problems:
            by_reason.setdefault(p.reason, []).append(p)
        n_images = len({p.image for p in self.problems if p.image is not None})
        lines = [f"{origin}: {len(self.problems)} problem(s), touching {n_images} of {self.images_total} images:"]
        for reason, items in by_reason.items():
            shown = "; ".join(p.line() for p in items[:SHOW])
            more = f" ... and {len(items) - SHOW} more" if len(items) > SHOW else ""
            lines.append(f"  {reason} ({len(items)}): {shown}{more}")
        return "\n".join(lines)

    @property
    def images_skipped(self) -> int:
        return self.images_total - self.images_kept

    def captions_dropped(self) -> int:
        """Captions (or caption rows) left out of images that were kept."""
        return sum(1 for p in self.problems if p.scope != "image" and p.image in self.kept_ids)

    def records(self) -> list[dict]:
        """skipped.jsonl: one object per problem."""
        return [p.record(p.image not in self.kept_ids) for p in self.problems]

    def counts(self) -> dict:
        """What data_summary.json and 01's split table record."""
        skipped = {p.image: p.split for p in self.problems if p.image is not None and p.image not in self.kept_ids}
        return {"on_bad_data": self.policy, "images_total": self.images_total, "images_skipped": self.images_skipped,
                "captions_dropped": self.captions_dropped(), "duplicates_merged": len(self.duplicates),
                "problems_by_reason": dict(Counter(p.reason for p in self.problems)),
                "images_skipped_by_split": dict(Counter(s or "unassigned" for s in skipped.values()))}

    def summary_line(self) -> str:
        """'skipped N of M images (reasons)', plus dropped captions and merged duplicates when there are any."""
        reasons = ", ".join(f"{r} {n}" for r, n in Counter(p.reason for p in self.problems).items())
        parts = [f"skipped {self.images_skipped} of {self.images_total} images ({reasons or 'none'})"]
        if self.captions_dropped():
            parts.append(f"dropped {self.captions_dropped()} caption(s) of images that were kept")
        return "; ".join(parts)
