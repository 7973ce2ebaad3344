"""The one training sequence: data -> starting model -> Trainer -> export and provenance. Notebook 02, `blipnb
train`, `python -m blipnb.train` under torchrun / accelerate launch, and a SageMaker job all call `train_run`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .. import runs
from ..config import Config
from .distributed import is_main_process, launch, launched, main_process_first, world_size


def train_run(cfg: Config, ds=None, model=None, processor=None) -> dict:
    """Train `cfg` and write its run directory; returns the train results.

    `ds`, `model` and `processor` may come from the caller (02 shows them first); what is missing is built here.
    With num_processes > 1, outside a launcher, this starts torchrun on this machine and the processes build
    their own (the caller's model is not used). Under a launcher, rank 0 builds the shared files first, every rank
    trains its shard, and only rank 0 writes the run directory. A run directory that holds the run of another config
    is refused unless cfg.overwrite (runs.prepare_run_dir; 02 calls it before it builds the model).
    """
    from ..data import load_captions
    from ..model.modeling import start_model
    from .provenance import provenance
    from .trainer import train_model

    if is_main_process():  # a run directory holding another config's run is refused, or cleared with overwrite
        runs.prepare_run_dir(cfg)
    if launches_torchrun(cfg):
        return launch(cfg, cfg.train.num_processes)
    if ds is None:
        with main_process_first():  # the sample (and any datasets cache) is written once
            ds = load_captions(cfg.data, run_dir=cfg.run_dir if is_main_process() else None)
    if cfg.train.hp_trials:
        results = sweep_run(cfg, ds)
    else:
        if model is None:
            with main_process_first():
                model, processor = start_model(_loading_base_model(cfg), ds)
        results = train_model(cfg, model, processor, ds)
    if is_main_process():
        runs.write_json(runs.RunDir(cfg.run_dir) / runs.PROVENANCE,
                        {**provenance(cfg, ds), "num_processes": world_size()})
    return results


def sweep_run(cfg: Config, ds) -> dict:
    """02 with hp_trials > 0: a sweep of that many trials into <run_dir>/sweep (going on with one a kill
    interrupted), then its best trial made the run in run_dir; returns the best trial's train results."""
    from ..config.search import load_space
    from .search import adopt_best, run_sweep

    out = Path(cfg.run_dir) / runs.HP_SWEEP_DIR
    run_sweep(cfg, cfg.train.hp_trials, load_space(cfg.train.hp_space), out, ds=ds)
    return adopt_best(out, cfg.run_dir) if is_main_process() else {}


def launches_torchrun(cfg: Config) -> bool:
    """Whether train_run starts torchrun for cfg (num_processes > 1) rather than training in this process."""
    return cfg.train.num_processes > 1 and not launched()


def _loading_base_model(cfg: Config) -> Config:
    """Rank 0 builds a from-scratch base model into the run dir; the other ranks load what it saved."""
    if is_main_process() or not cfg.model.from_scratch:
        return cfg
    base = Path(cfg.run_dir) / runs.BASE_MODEL_DIR
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, from_scratch=False, model_id=str(base)))
