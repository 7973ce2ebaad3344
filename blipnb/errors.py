"""The errors a user sees: each names the parameter, file or model at fault and says what to do instead."""
from __future__ import annotations

import os
from pathlib import Path

# Raised by the standalone runtime (which cannot import blipnb), shown to users like the errors below.
from .runtime.decoding import DecodingError as DecodingError
from .runtime.images import BadImageError as BadImageError

OFFLINE_PRESET = "notebooks/params/sample.yaml"  # the offline preset, inside the blipnb repository
HEADLESS = "BLIPNB_HEADLESS"  # "1": nobody watches (papermill, run-all): progress as plain text, command-line hints


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel a person is using (not one papermill or run-all started, and not a
    process that merely imported IPython, such as a test runner)."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell" and os.environ.get(HEADLESS, "").strip() != "1"


def offline_hint(cwd: str | os.PathLike | None = None, notebook: bool | None = None) -> str:
    """The one hint for running without the Hugging Face hub, shown by every offline failure, where the user is: in
    a notebook, the `preset` parameter and `make lab`; on the command line, the sample preset by a path that works
    from `cwd` (default: the current directory)."""
    if notebook if notebook is not None else in_notebook():
        return ("There is no Hugging Face hub access from here: run on the built-in synthetic sample instead. Set "
                'preset = "sample" in the parameters cell and run the notebook again (each notebook, 01 to 05), '
                "or start JupyterLab with `make lab`, which opens the notebooks with the sample's parameters")
    cwd = Path(cwd or os.getcwd())
    repo_preset = Path(__file__).resolve().parents[1] / OFFLINE_PRESET  # an editable install or a checkout
    for candidate in (cwd / OFFLINE_PRESET, cwd / "params" / "sample.yaml", repo_preset):
        if candidate.is_file():
            path = min(os.path.relpath(candidate.resolve(), cwd.resolve()), str(candidate.resolve()), key=len)
            break
    else:
        path = f"<blipnb repository>/{OFFLINE_PRESET}"
    return (f"There is no Hugging Face hub access from here: run on the built-in synthetic sample instead "
            f"(papermill ... -f {path}, or blipnb run-all -f {path})")


class ParameterError(ValueError):
    """A parameter is unknown, mistyped or out of range; the message names it."""


class DataSourceUnavailable(RuntimeError):
    """A hub dataset could not be loaded (offline, or not in the local cache)."""


class ModelUnavailable(RuntimeError):
    """The model could not be loaded (e.g. no hub access); the message says what to do instead."""




class BadDataError(ValueError):
    """Bad rows or images in a data source, all listed at once by reason; `problems` holds them one by one."""

    def __init__(self, message: str, problems: list | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class MissingRunFile(FileNotFoundError):
    """A file a notebook needs is not in the run directory; the message says which notebook writes it."""


class RunsNotComparable(ValueError):
    """Runs that `blipnb compare` cannot pair: scored on other images or references, or with unreadable files; the
    message names the runs."""


# Shown in notebooks as one line instead of a traceback (see blipnb.notebook.setup).
USER_ERRORS = (ParameterError, DecodingError, DataSourceUnavailable, ModelUnavailable, BadImageError, BadDataError,
               MissingRunFile, RunsNotComparable)


class MissingExtra(ImportError):
    """An optional part of blipnb is used without its extra installed; the message gives the pip command."""


# The optional extras of pyproject.toml: what each brings, by the module a feature imports first.
EXTRAS = {"litserve": "serve", "papermill": "notebooks", "jupyter_client": "notebooks", "ipywidgets": "notebooks",
          "pandas": "notebooks", "nbval": "notebooks", "jupyterlab": "notebooks", "optuna": "sweep"}


def require(module: str, feature: str):
    """import_module(module), or MissingExtra naming `feature` and the pip command of the extra that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != module.split(".")[0]:
            raise  # something else is missing: not ours to rename
        extra = EXTRAS.get(module.split(".")[0])
        install = f"pip install 'blipnb[{extra}]' (in a checkout: pip install -e '.[{extra}]')" if extra else \
            f"pip install {module.split('.')[0]}"
        raise MissingExtra(f"{feature} needs {module.split('.')[0]}, which is not installed: {install}") from None


class CheckpointUnusable(RuntimeError):
    """No checkpoint of the run can be resumed from; the message names each one and what is wrong with it."""


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; training stopped at that step."""


class WorkerFailed(RuntimeError):
    """A training process started by blipnb's torchrun launcher failed; the message is the worker's own error."""


USER_ERRORS = (*USER_ERRORS, MissingExtra, CheckpointUnusable, TrainingDiverged, WorkerFailed)
