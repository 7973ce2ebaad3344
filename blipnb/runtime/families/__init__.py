"""Captioner families: what differs between the image-to-text models blipnb trains and evaluates.

One module per family holds how it builds training inputs (the prompt masked from the loss), how it captions from
pixels plus its fixed prompt and strips that prompt from the output, its default LoRA targets and which of
blipnb's fast paths apply. The family comes from the checkpoint's config.json `model_type`.
"""
from __future__ import annotations

import json
from importlib import import_module
from pathlib import Path

from ..family_names import NAMES
from .base import FAST_PATHS, Family, UnsupportedFamily

FAMILIES: dict[str, Family] = {name: getattr(import_module(f".{name}", __name__), name.upper()) for name in NAMES}
_BY_MODEL_TYPE = {t: f for f in FAMILIES.values() for t in f.model_types}


def supported() -> str:
    """The supported model_types, for messages."""
    return ", ".join(f"{t} ({f.title})" for t, f in _BY_MODEL_TYPE.items())


def family_for_type(model_type: str, where: str = "the model") -> Family:
    """The family of a config's model_type; one line naming the supported ones for any other."""
    family = _BY_MODEL_TYPE.get(model_type)
    if family is None:
        raise UnsupportedFamily(f"{where} is a {model_type!r} model; blipnb captions with these model_types: "
                                f"{supported()}")
    return family


def family_named(name: str) -> Family:
    """A family by its short name (NAMES)."""
    if name not in FAMILIES:
        raise UnsupportedFamily(f"no captioner family {name!r}; families: {', '.join(NAMES)}")
    return FAMILIES[name]


def family_of(model) -> Family:
    """The family of a loaded model (a peft wrapper answers for the model it wraps)."""
    return family_for_type(model.config.model_type, type(model).__name__)


def family_of_folder(model_dir: str | Path) -> Family | None:
    """The family of a local model folder from its config.json, or None where the folder has none."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    return family_for_type(json.loads(path.read_text()).get("model_type", ""), str(model_dir))


__all__ = ["FAMILIES", "FAST_PATHS", "NAMES", "Family", "UnsupportedFamily", "family_for_type", "family_named",
           "family_of", "family_of_folder", "supported"]
