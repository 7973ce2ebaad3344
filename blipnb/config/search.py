"""A hyperparameter search space: which training parameters a sweep varies, and over what.

A space is a YAML mapping from blipnb parameter names to one of
- `{low: 1.0e-5, high: 1.0e-3, log: true}`: a float range (`log` samples the exponent); whole-number `low` and `high`
  make an integer range, with an optional `step`;
- `[full, lora]`: a choice between values;
- a single value: fixed for every trial.

`lora_r` and `lora_alpha` are searched only in trials that pick `finetune_method: lora`. An optional `pruner:
{n_startup_trials: 2, n_warmup_steps: 0}` tunes the median pruner. Everything else comes from the sweep's preset
and -p options. Each trial's values are checked by build_config, so a bad range fails naming the parameter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParameterError

SEARCHABLE = ("learning_rate", "epochs", "warmup_ratio", "weight_decay", "label_smoothing", "finetune_method",
              "lora_r", "lora_alpha")
ONLY_WITH_LORA = ("lora_r", "lora_alpha")
PRUNER_DEFAULTS = {"n_startup_trials": 2, "n_warmup_steps": 0}

# The built-in space (hp_space None): around the learning rates that move a captioner, and the methods' trade-off.
DEFAULT_SPACE = {
    "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "label_smoothing": [0.0, 0.1],
    "finetune_method": ["full", "freeze_vision", "lora"],
    "lora_r": [8, 16, 32],
}


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: a range (low, high, log, step) or a list of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    @property
    def is_int(self) -> bool:
        return not self.choices and all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))

    def describe(self) -> str:
        if self.choices:
            return f"one of {', '.join(map(str, self.choices))}"
        return f"{self.low} to {self.high}" + (" (log)" if self.log else "") + (f" step {self.step}" if self.step else "")


@dataclass(frozen=True)
class SearchSpace:
    """What a sweep varies (dimensions), what it fixes, and its pruner's settings."""

    dimensions: tuple[Dimension, ...]
    fixed: dict = field(default_factory=dict)
    pruner: dict = field(default_factory=lambda: dict(PRUNER_DEFAULTS))
    source: str = "the built-in space"

    def to_dict(self) -> dict:
        """The space as its YAML would write it (what a study records, to refuse resuming with another space)."""
        out: dict[str, Any] = dict(self.fixed)
        for d in self.dimensions:
            out[d.name] = list(d.choices) if d.choices else {
                k: v for k, v in (("low", d.low), ("high", d.high), ("log", d.log), ("step", d.step)) if v}
            if not d.choices and d.low == 0:
                out[d.name]["low"] = d.low
        return {**out, "pruner": dict(self.pruner)}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)


def load_space(path: str | Path | None) -> SearchSpace:
    """The search space in the YAML file `path`, or the built-in one (None); errors name the file and parameter."""
    if path is None or str(path) == "":
        return parse_space(DEFAULT_SPACE, "the built-in space")
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"parameter 'hp_space': no search space file {str(p)!r}")
    import yaml

    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ParameterError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise ParameterError(f"{p}: a search space is a mapping of parameter names to ranges or choices")
    return parse_space(loaded, str(p))


def parse_space(raw: dict, where: str) -> SearchSpace:
    """A SearchSpace from a mapping (see the module docstring); anything else raises naming `where` and the key."""
    raw = dict(raw)
    pruner = {**PRUNER_DEFAULTS, **(raw.pop("pruner", None) or {})}
    unknown = sorted(set(pruner) - set(PRUNER_DEFAULTS))
    if unknown:
        raise ParameterError(f"{where}: pruner takes {', '.join(PRUNER_DEFAULTS)}, not {', '.join(unknown)}")
    not_searchable = sorted(set(raw) - set(SEARCHABLE))
    if not_searchable:
        raise ParameterError(f"{where}: {', '.join(map(repr, not_searchable))} cannot be searched; a space takes "
                             f"{', '.join(SEARCHABLE)} (set the rest in the preset or with -p)")
    dimensions, fixed = [], {}
    for name, spec in raw.items():
        if isinstance(spec, dict):
            dimensions.append(_range(name, spec, where))
        elif isinstance(spec, list):
            if not spec:
                raise ParameterError(f"{where}: {name!r} lists no choices")
            if len(spec) == 1:
                fixed[name] = spec[0]
            else:
                dimensions.append(Dimension(name, choices=tuple(spec)))
        else:
            fixed[name] = spec
    if not dimensions:
        raise ParameterError(f"{where}: nothing to search: give at least one range or list of choices")
    return SearchSpace(tuple(dimensions), fixed, pruner, where)


def _range(name: str, spec: dict, where: str) -> Dimension:
    extra = sorted(set(spec) - {"low", "high", "log", "step"})
    if extra or not {"low", "high"} <= set(spec):
        raise ParameterError(f"{where}: {name!r} must be {{low: ..., high: ...}} with optional log and step, got "
                             f"{spec!r}")
    low, high = (_number(name, spec[k], where) for k in ("low", "high"))
    if not low < high:
        raise ParameterError(f"{where}: {name!r} needs low < high, got {low} and {high}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ParameterError(f"{where}: {name!r} on a log scale needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and (log or _number(name, step, where) <= 0):
        raise ParameterError(f"{where}: {name!r}: step must be > 0 and cannot go with log")
    return Dimension(name, low=low, high=high, log=log, step=step)


def _number(name: str, value: Any, where: str) -> float | int:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParameterError(f"{where}: {name!r} bounds must be numbers, got {value!r}")
    return value
