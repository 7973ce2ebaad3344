"""Notebook support: figures (viz), widgets, error-analysis tables, and the kernel setup every notebook calls.

Nothing here changes IPython on import: the notebooks' first cell calls `setup()`.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path

from ..config import PARAMETERS, Config, GenerationConfig, build_config, default_of
from ..errors import USER_ERRORS
from ..progress import HEADLESS, progress_bar

_NOT_PARAMETERS = {"In", "Out", "exit", "quit", "get_ipython"}
_SEEN = "_blipnb_parameter_names"  # stored in the namespace by the first resolution
_DECODING = frozenset(f.name for f in dataclasses.fields(GenerationConfig))  # None: the run's, given a base
# Programs that run a notebook with nobody watching; the kernel's parent process tells which one started it.
RUNNERS = frozenset({"papermill", "blipnb", "pytest", "py.test", "nbval", "nbclient", "nbconvert",
                     "jupyter-nbconvert", "jupyter-execute"})


def setup() -> None:
    """Prepare the running IPython kernel: blipnb's user errors as one line, figures shown inline as PNG, and
    (headless) progress bars as plain text."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    _short_user_errors(shell)
    _show_figures_inline(shell)
    if headless():
        plain_progress()


def headless() -> bool:
    """Whether this kernel runs unwatched (papermill, nbval, nbconvert --execute, blipnb run-all), judged by the
    program that started it; BLIPNB_HEADLESS=1 or 0 decides instead."""
    forced = os.environ.get(HEADLESS, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return program_name(os.getppid()) in RUNNERS


def program_name(pid: int) -> str:
    """The program process `pid` runs, looking through `python [-m]` ("papermill", "jupyter-lab"); "" if unknown
    (no /proc: then progress stays a widget unless BLIPNB_HEADLESS=1)."""
    try:
        argv = [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return ""
    i = 0
    while i < len(argv) and re.fullmatch(r"python[\d.]*(\.exe)?", Path(argv[i]).name):
        i += 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-m":
        if argv[i] == "-c":  # python -c "code": no program name
            return ""
        i += 2 if argv[i] in ("-W", "-X") else 1
    if i < len(argv) and argv[i] == "-m":
        i += 1
    return Path(argv[i]).stem if i < len(argv) else ""


def plain_progress() -> None:
    """Progress bars as plain text on stdout from now on, in this kernel (see blipnb.progress): blipnb's own, which
    read BLIPNB_HEADLESS (set here) when made, and transformers' (loading and saving models), through its tqdm hook.
    """
    from transformers.utils import logging as hf_logging

    os.environ[HEADLESS] = "1"
    hf_logging.set_tqdm_hook(_transformers_bar)


def _transformers_bar(factory, args, kwargs):
    """transformers' tqdm hook: its bars as blipnb's are, unless it disabled them (factory is then its empty bar)."""
    from transformers.utils import logging as hf_logging

    return progress_bar(*args, **kwargs) if hf_logging.is_progress_bar_enabled() else factory(*args, **kwargs)


def config_from_run(namespace: dict) -> Config:
    """03-05's config: the run's stored one (config.json: what 02 trained and validated with) with the notebook's
    parameters on top (config_from_namespace); a MissingRunFile saying to run 02 first when the run has none."""
    from .. import runs
    from ..config import load_config

    values = _with_preset(namespace, run_decoding=True)
    run = runs.RunDir(values.get("run_dir", default_of("run_dir")))
    return config_from_namespace(namespace, base=load_config(run.require(runs.CONFIG, "02_finetune")))


def config_from_namespace(namespace: dict, base: Config | None = None) -> Config:
    """Build the Config from a notebook's globals: every public lower-case literal (str, number, bool, None).

    A parameters cell holds literals only and papermill injects overrides as literals, so a mistyped injected
    name shows up here as an unknown parameter (papermill itself only warns). When the cell is run again
    interactively, later cells' variables are in the namespace too: new unknown names then only warn.
    With `base` (03-05 read the run's config.json), a decoding parameter left at None keeps the run's value, the
    decoding 02 validated with; one given a value wins (03 then reports how it differs from validation).
    """
    candidates = {k: v for k, v in namespace.items()
                  if not k.startswith("_") and k not in _NOT_PARAMETERS and k == k.lower()
                  and (v is None or isinstance(v, (str, int, float, bool)))}
    seen = namespace.get(_SEEN)
    if seen is not None:
        later = sorted(k for k in candidates if k not in seen and k not in PARAMETERS)
        if later:
            warnings.warn(f"ignoring non-parameter variables defined after the parameters cell: {later}",
                          stacklevel=2)
        candidates = {k: v for k, v in candidates.items() if k in seen or k in PARAMETERS}
    given = _with_preset(candidates, run_decoding=base is not None)
    if base is not None:
        given = {k: v for k, v in given.items() if not (v is None and k in _DECODING)}
    cfg = build_config(given, base=base)
    namespace[_SEEN] = frozenset(candidates)
    return cfg


def _with_preset(values: dict, run_decoding: bool) -> dict:
    """The notebook's parameters with its `preset` applied (presets.with_preset): the preset replaces what is still
    at the cell's default, and a value changed in the cell or given with -p wins. In 03-05 (`run_decoding`) the
    decoding stays the run's, as 02 validated it, unless a value is given."""
    from ..presets import with_preset

    applied = with_preset(values, {k: default_of(k) for k in PARAMETERS})
    if run_decoding:  # the preset's decoding is dropped; a decoding value given in the cell or by -p stays
        applied = {k: v for k, v in applied.items() if k not in _DECODING or values.get(k) is not None}
    return applied


def _short_user_errors(shell) -> None:
    """Show blipnb's user-facing errors as one clear message instead of a long traceback."""
    if getattr(shell, "_blipnb_short_errors", False):
        return

    def handler(self, etype, value, tb, tb_offset=None):
        stb = [f"{etype.__name__}: {value}"]
        self._showtraceback(etype, value, stb)  # still an error: papermill and nbval stop here
        return stb

    shell.set_custom_exc(USER_ERRORS, handler)
    shell._blipnb_short_errors = True


def _show_figures_inline(shell) -> None:
    """Register a PNG formatter for Figure: pyplot, which usually does it, is never imported by blipnb."""
    from IPython.core.pylabtools import print_figure
    from matplotlib.figure import Figure

    shell.display_formatter.formatters["image/png"].for_type(
        Figure, lambda fig: print_figure(fig, "png", bbox_inches="tight"))
