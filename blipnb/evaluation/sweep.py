"""The decoding sweep: each setting of a grid scored on VALIDATION; the best is then used on test."""
from __future__ import annotations

import dataclasses
import itertools

from .. import runs
from ..config import Config
from ..data import validation_subset
from ..progress import progress_bar
from ..schema import BLEU, CIDER
from ..training.validation import caption_and_score


def decoding_sweep(model, processor, validation, cfg: Config, progress: bool = True) -> dict:
    """Score each decoding setting of the sweep grid on VALIDATION (CIDEr); test is never used to choose.

    Returns {"grid": [{setting..., "CIDEr", "Bleu_4"}], "best": {setting...}, "n_images"}; writes runs.SWEEP.
    """
    axes = cfg.sweep.grid()
    if not axes:
        raise ValueError("no decoding sweep requested: set sweep_num_beams, sweep_length_penalty or "
                         "sweep_max_new_tokens")
    validation = validation_subset(validation, cfg.sweep.sweep_max_images, cfg.data.split_seed)
    grid = []
    settings = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    if {"num_beams", "length_penalty"} & set(axes) and cfg.generation.samples:
        # Beam settings change nothing while captions are drawn at random: this grid is a beam search's.
        settings = [{**s, "do_sample": False, "consensus_samples": 0} for s in settings]
    for setting in progress_bar(settings, desc="decoding sweep (validation)", disable=not progress):
        _, scores = caption_and_score(model, processor, validation, cfg.generation.merged(**setting))
        grid.append({**setting, CIDER: scores[CIDER], BLEU[3]: scores[BLEU[3]]})
    best = max(grid, key=lambda row: row[CIDER])
    sweep = {"split": "validation", "n_images": len(validation), "grid": grid,
             "best": {k: v for k, v in best.items() if k not in (CIDER, BLEU[3])}, "chosen_by": CIDER}
    runs.write_json(runs.RunDir(cfg.run_dir) / runs.SWEEP, sweep)
    return sweep


def apply_decoding(cfg: Config, setting: dict) -> Config:
    """A copy of `cfg` whose decoding uses `setting` (e.g. the sweep's best on validation)."""
    return dataclasses.replace(cfg, generation=cfg.generation.merged(**setting))
