"""The errors a user sees: each names the parameter, file or model at fault and says what to do instead."""
from __future__ import annotations

# The one hint for running without the Hugging Face hub, shown by every offline failure.
OFFLINE_PRESET = "notebooks/params/sample.yaml"
OFFLINE_HINT = (f"There is no Hugging Face hub access from here: run on the built-in synthetic sample instead "
                f"(papermill ... -f {OFFLINE_PRESET}, or blipnb run-all -f {OFFLINE_PRESET})")


class ParameterError(ValueError):
    """A parameter is unknown, mistyped or out of range; the message names it."""


class DataSourceUnavailable(RuntimeError):
    """A hub dataset could not be loaded (offline, or not in the local cache)."""


class ModelUnavailable(RuntimeError):
    """The model could not be loaded (e.g. no hub access); the message says what to do instead."""


class BadImageError(ValueError):
    """An image that cannot be decoded; the message names the file or image id."""


# Shown in notebooks as one line instead of a traceback (see blipnb.notebook.setup).
USER_ERRORS = (ParameterError, DataSourceUnavailable, ModelUnavailable, BadImageError)


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; training stopped at that step."""


class WorkerFailed(RuntimeError):
    """A training process started by blipnb's torchrun launcher failed; the message is the worker's own error."""


USER_ERRORS = (*USER_ERRORS, TrainingDiverged, WorkerFailed)
