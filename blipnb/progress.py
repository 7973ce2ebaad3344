"""Progress bars: tqdm's (a widget in a watched notebook), or plain text on stdout when nobody watches.

Every bar of blipnb's comes from `progress_bar`, which reads BLIPNB_HEADLESS when the bar is made:
`notebook.setup()` sets it to "1" in a kernel that runs unwatched (papermill, nbval, blipnb run-all), and a user
may set it either way. Headless, a tqdm widget is saved as its first frame: "Writing model shards: 0% 0/1" is what
a reader sees until the notebook is trusted, which reads as a stalled save. As text, the saved output is the final
state.
"""
from __future__ import annotations

import os
import sys

from tqdm.asyncio import tqdm_asyncio

from .errors import HEADLESS  # "1": progress as plain text, as under papermill; "0": as widgets, whoever runs it

PROGRESS_REFRESH_S = 10.0  # headless progress: a line every 10 s at most, and always the final state


class PlainTqdm(tqdm_asyncio):
    """A text bar on stdout (stderr shows as a red block in Jupyter): a line every PROGRESS_REFRESH_S at most, and
    only the final state for a bar quicker than that."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("file") is None:
            kwargs["file"] = sys.stdout
        kwargs.setdefault("mininterval", PROGRESS_REFRESH_S)
        kwargs.setdefault("delay", PROGRESS_REFRESH_S)  # no "0%" frame: a quick bar shows only its end
        super().__init__(*args, **kwargs)

    def close(self):
        self.delay = 0  # print the final state, also of a bar that ended before its first frame
        super().close()


def plain() -> bool:
    """Whether bars are plain text now (BLIPNB_HEADLESS=1)."""
    return os.environ.get(HEADLESS, "").strip() == "1"


def bar_class() -> type:
    """PlainTqdm when bars are plain text, else tqdm.auto's bar (a widget in a notebook)."""
    if plain():
        return PlainTqdm
    from tqdm.auto import tqdm

    return tqdm


def progress_bar(*args, **kwargs):
    """A tqdm bar (tqdm's arguments) of the kind this process shows now: see bar_class."""
    return bar_class()(*args, **kwargs)
