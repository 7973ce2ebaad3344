"""Notebook support: figures (viz), widgets, error-analysis tables, and the kernel setup every notebook calls.

Nothing here changes IPython on import: the notebooks' first cell calls `setup()`.
"""
from __future__ import annotations

import warnings

from ..config import PARAMETERS, Config, build_config
from ..errors import USER_ERRORS

_NOT_PARAMETERS = {"In", "Out", "exit", "quit", "get_ipython"}
_SEEN = "_blipnb_parameter_names"  # stored in the namespace by the first resolution


def setup() -> None:
    """Prepare the running IPython kernel: blipnb's user errors as one line, figures shown inline as PNG."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    _short_user_errors(shell)
    _show_figures_inline(shell)


def config_from_namespace(namespace: dict, base: Config | None = None) -> Config:
    """Build the Config from a notebook's globals: every public lower-case literal (str, number, bool, None).

    A parameters cell holds literals only and papermill injects overrides as literals, so a mistyped injected
    name shows up here as an unknown parameter (papermill itself only warns). When the cell is run again
    interactively, later cells' variables are in the namespace too: new unknown names then only warn.
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
    cfg = build_config(candidates, base=base)
    namespace[_SEEN] = frozenset(candidates)
    return cfg


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
