"""Correcting references from 04's browser: mark one as wrong (drop) or replace its text, for the image shown.

Each change goes through `blipnb.data.corrections.record_correction` into the run directory's corrections.jsonl;
the data folder is never written to. 01-03 apply the file with the data parameter `corrections`.
"""
from __future__ import annotations

import html
import os

from ..data.corrections import continue_from, record_correction, replay_text
from ..errors import ParameterError, require

widgets = require("ipywidgets", "blipnb's notebook widgets")


def pending_references(rows: list[dict], run_dir: str | os.PathLike, applied: str | None) -> tuple[dict, str]:
    """{image id: references} of `rows` after the run's corrections file's lines that their data has not applied
    yet (recorded since), and a sentence saying what was found."""
    path, text, first = continue_from(run_dir, applied)
    refs = {str(r["image_id"]): list(r["references"]) for r in rows}
    if not text.strip():
        return refs, f"corrections go to {path}"
    outcome = replay_text(text, refs, first)
    refs |= {i: caps for i, caps in outcome.captions.items()}
    shown = outcome.edited + outcome.dropped
    skipped = f"; {len(outcome.problems)} concern other images" if outcome.problems else ""
    return refs, f"corrections go to {path} ({shown} recorded since these predictions, shown here{skipped})"


class ReferenceEditor(widgets.VBox):
    """Pick a reference of the image shown, then drop it or replace its text; a status line says what was recorded.

    `row` is the prediction row on screen; its `references` are updated in place, so the next correction of the same
    image counts its references as they now stand (a drop moves the later ones up), as the corrections file does.
    """

    def __init__(self, run_dir: str | os.PathLike, rows: list[dict], applied: str | None = None, on_change=None):
        self.run_dir, self.on_change = run_dir, on_change
        current, message = pending_references(rows, run_dir, applied)
        for row in rows:
            row["references"] = current[str(row["image_id"])]
        self.row: dict | None = None
        self.reference = widgets.Dropdown(description="reference", style={"description_width": "initial"},
                                          layout=widgets.Layout(width="420px"))
        self.text = widgets.Text(description="new text", placeholder="the corrected reference",
                                 style={"description_width": "initial"}, layout=widgets.Layout(width="420px"))
        self.replace_button = widgets.Button(description="replace", tooltip="record the new text for this reference")
        self.drop_button = widgets.Button(description="drop", button_style="warning",
                                          tooltip="record this reference as wrong")
        self.status = widgets.HTML(value=f"<i>{html.escape(message)}</i>")
        self.replace_button.on_click(lambda _: self.replace())
        self.drop_button.on_click(lambda _: self.drop())
        self.reference.observe(lambda _: self._fill(), "value")
        self.recorded: list[dict] = []
        self.path = continue_from(run_dir, applied)[0]
        super().__init__([widgets.HBox([self.reference, self.replace_button, self.drop_button]), self.text,
                          self.status])

    def show_row(self, row: dict | None) -> None:
        """Offer the references of `row` (None: nothing to correct)."""
        self.row = row
        refs = row["references"] if row else []
        self.reference.options = [(f"{n + 1}: {text}", n) for n, text in enumerate(refs)]
        self.reference.value = 0 if refs else None
        for control in (self.reference, self.text, self.replace_button, self.drop_button):
            control.disabled = not refs
        self._fill()

    def _fill(self) -> None:
        refs = self.row["references"] if self.row else []
        index = self.reference.value
        self.text.value = refs[index] if index is not None and index < len(refs) else ""

    def replace(self) -> dict | None:
        """Record the text box's text for the chosen reference."""
        return self._record(self.text.value)

    def drop(self) -> dict | None:
        """Record the chosen reference as wrong."""
        return self._record(None)

    def _record(self, new: str | None) -> dict | None:
        if self.row is None or self.reference.value is None:
            return None
        index, refs = self.reference.value, self.row["references"]
        try:
            line = record_correction(self.run_dir, self.row["image_id"], index, refs[index], new)
        except ParameterError as e:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
            return None
        if new is None:
            del refs[index]
            what = f"dropped reference {index + 1}"
        else:
            refs[index] = line["new"]
            what = f"reference {index + 1} now reads {line['new']!r}"
        self.recorded.append(line)
        self.status.value = (f"recorded for <code>{html.escape(str(line['image_id']))}</code>: {html.escape(what)} "
                             f"({len(self.recorded)} since this browser opened; run the suite again with -p corrections "
                             f"{html.escape(str(self.path))})")
        self.show_row(self.row)
        if self.on_change is not None:
            self.on_change()
        return line
