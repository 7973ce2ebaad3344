"""Tiny untrained captioners built offline, one module per family: a tokenizer trained on the train captions and a
small model from the family's config class, saved with save_pretrained so they load through the same path as a
hub checkpoint. Each module's `build(captions, out_dir, cfg, seed, pixel_stats)` returns the folder."""
from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Iterable

from ...config import ModelConfig
from .blip import FIXED_PATCH_PROJECTION, POSITION_STD, patch_projection, readable_position, train_tokenizer
from .blip import build as build_tiny_blip


def build_tiny(family: str, captions: Iterable[str], out_dir: str | Path, cfg: ModelConfig, seed: int = 0,
               pixel_stats: tuple[tuple, tuple] | None = None) -> Path:
    """A tiny untrained model of `family` (blipnb.runtime.families) saved in `out_dir`."""
    return import_module(f".{family}", __name__).build(list(captions), out_dir, cfg, seed=seed,
                                                       pixel_stats=pixel_stats)


__all__ = ["FIXED_PATCH_PROJECTION", "POSITION_STD", "build_tiny", "build_tiny_blip", "patch_projection",
           "readable_position", "train_tokenizer"]
