"""The building blocks of every stage's config: a parameter field (its default and help in one place) and the
checks that name the parameter at fault."""
from __future__ import annotations

import types
import typing
from dataclasses import field
from typing import Any, Optional

from ..errors import ParameterError


def param(default: Any, help: str) -> Any:  # noqa: A002 - the name Hugging Face's argument dataclasses use
    """A dataclass field whose default and help text are the parameter's one home."""
    return field(default=default, metadata={"help": help})


def parse_list(name: str, text: str, kind: type) -> list:
    """Parse a comma-separated parameter such as "1,3,5"; a bad item raises naming the parameter."""
    try:
        values = [kind(item) for item in text.replace(" ", "").split(",") if item]
    except ValueError:
        raise ParameterError(f"parameter {name!r} must be comma-separated {kind.__name__}s, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise ParameterError(f"parameter {name!r} must hold positive values, got {text!r}")
    return values


def check_type(name: str, value: Any, hint: Any) -> Any:
    allowed = _allowed_types(hint)
    if value is None:
        if type(None) in allowed:
            return None
        raise ParameterError(f"parameter {name!r} must not be None")
    if bool in allowed and isinstance(value, bool):
        return value
    if isinstance(value, bool):  # bool is an int subclass: True is never a valid number here
        raise ParameterError(f"parameter {name!r} must be {_describe(allowed)}, got bool {value!r}")
    if float in allowed and isinstance(value, int):
        return float(value)
    for t in allowed:
        if t is not type(None) and isinstance(value, t):
            return value
    raise ParameterError(f"parameter {name!r} must be {_describe(allowed)}, got {type(value).__name__} {value!r}")


def _allowed_types(hint: Any) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _describe(allowed: tuple) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in allowed)


def one_of(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ParameterError(f"parameter {name!r} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def in_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ParameterError(f"parameter {name!r} must be in [{lo}, {hi}], got {value}")


def at_least(name: str, value: int, lo: int) -> None:
    if value < lo:
        raise ParameterError(f"parameter {name!r} must be >= {lo}, got {value}")


def positive_or_none(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise ParameterError(f"parameter {name!r} must be a positive integer or None, got {value}")
