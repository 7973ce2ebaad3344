"""Hyperparameter sweeps: `Trainer.hyperparameter_search` with optuna, chosen on validation, one run per trial.

`run_sweep(cfg, trials, space, out)` trains up to `trials` trials of `cfg` with values drawn from `space`
(blipnb.config.search). Each trial is a run directory of its own, `out/trial-NNN`, with its config, model, log
history and train results, so 03 evaluates it like any run. The objective is the validation score the checkpoint is
chosen by (`best_metric`: CIDEr by default), the best the trial reached; test is never touched. The optuna study
lives in `out/study.db` (SQLite): the same call after a kill goes on with the trials not yet done, and a trial the
kill interrupted is marked failed. The median pruner stops a trial whose validation score at an evaluation is below
the median of earlier trials' at the same step. Under torchrun, rank 0 draws each trial and the Trainer hands its
values to the other ranks (the Trainer's DDP rules); pruning is off there, as a pruned rank 0 would leave the
others training.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

from transformers import TrainerCallback

from .. import runs
from ..config import Config, build_config, default_of
from ..config.search import ONLY_WITH_LORA, SearchSpace
from ..config.training import LORA
from ..errors import ParameterError, require
from .study import STUDY_NAME, best_trial, open_study, trials_done
from .distributed import is_main_process, main_process_first, process_state, world_size

# Searched names that the Trainer sets on its TrainingArguments per trial; the rest shape the model (model_init).
TRAINING_ARGUMENTS = {"learning_rate": "learning_rate", "epochs": "num_train_epochs",
                      "warmup_ratio": "warmup_steps",  # < 1 is read as a share of all steps
                      "weight_decay": "weight_decay"}


def suggest(trial, space: SearchSpace, base: Config) -> dict:
    """The values of `space` for an optuna trial (or a FixedTrial), by blipnb parameter name; LoRA's rank and alpha
    only where the trial fine-tunes with LoRA."""
    values: dict = {}
    method = space.fixed.get("finetune_method", base.train.finetune_method)
    for d in sorted(space.dimensions, key=lambda d: d.name in ONLY_WITH_LORA):
        if d.name in ONLY_WITH_LORA and values.get("finetune_method", method) != "lora":
            continue
        if d.choices:
            values[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        elif d.is_int:
            values[d.name] = trial.suggest_int(d.name, d.low, d.high, step=d.step or 1)
        else:
            values[d.name] = trial.suggest_float(d.name, d.low, d.high, log=d.log, step=d.step)
    return values


def trial_config(base: Config, space: SearchSpace, values: dict, run_dir) -> Config:
    """The validated Config of one trial: the sweep's, the space's fixed values, the trial's values, its own run dir
    (a single run: hp_trials 0)."""
    lora = {**space.fixed, **values}.get("finetune_method", base.train.finetune_method) == "lora"
    flat = {k: v for k, v in base.flat().items() if lora or k not in LORA or v == default_of(k)}
    fixed = {k: v for k, v in space.fixed.items() if lora or k not in LORA}
    try:
        return build_config({**flat, **fixed, **values, "run_dir": str(run_dir), "hp_trials": 0})
    except ParameterError as e:
        raise ParameterError(f"{space.source}: {e}") from None


class TrialRun(TrainerCallback):
    """Gives each trial its run directory: its config and starting model at the start; at the end its model (a
    finished trial), log history and train results. It also makes a finished trial's objective the best validation
    score it reached (the checkpoint its model is), not the last evaluation's."""

    def __init__(self, base: Config, space: SearchSpace, out: Path, processor, start_model_dir: Path | None, ds):
        self.base, self.space, self.out, self.processor, self.ds = base, space, out, processor, ds
        self.start_model_dir = start_model_dir
        self.trainer = None  # set by run_sweep once the Trainer exists
        self.cfg: Config | None = None
        self.started = 0.0
        self.parameters: dict = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from ..model.modeling import count_parameters

        number = int(state.trial_name.split("/")[0].removeprefix(runs.TRIAL_PREFIX))
        self.cfg = trial_config(self.base, self.space, state.trial_params or {}, self.out / runs.trial_dir_name(number))
        self.started, self.parameters = time.time(), count_parameters(model)
        if is_main_process():
            run = runs.RunDir(self.cfg.run_dir).ensure()
            runs.write_json(run / runs.CONFIG, self.cfg.to_dict())
            if self.start_model_dir is not None and not (run / runs.BASE_MODEL_DIR).exists():
                _link_tree(self.start_model_dir, run / runs.BASE_MODEL_DIR)  # 03's baseline, as in any run
            shown = ", ".join(f"{k}={_short(v)}" for k, v in (state.trial_params or {}).items())
            print(f"trial {number}: {shown} -> {run.path}", flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        from .provenance import provenance
        from .trainer import export_model, run_results

        finished = state.max_steps > 0 and state.global_step >= state.max_steps
        run = runs.RunDir(self.cfg.run_dir)
        if finished:
            export_model(self.trainer, self.cfg, self.processor)
            if state.best_metric is not None:
                self.trainer.objective = state.best_metric
        elif is_main_process():
            runs.write_json(run / runs.LOG_HISTORY, state.log_history)
        if is_main_process():
            loss = next((h["train_loss"] for h in reversed(state.log_history) if "train_loss" in h), None)
            results = {"train_loss": loss, **run_results(self.trainer, self.cfg, self.parameters,
                                                         time.time() - self.started),
                       "sweep": str(self.out), "trial_params": state.trial_params,
                       "trial_state": "finished" if finished else "pruned"}
            runs.write_json(run / runs.TRAIN_RESULTS, results)
            runs.write_json(run / runs.PROVENANCE, {**provenance(self.cfg, self.ds), "num_processes": world_size()})


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a folder as hard links where the filesystem allows (a model's weights are not duplicated)."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)
    shutil.copytree(src, dst, copy_function=link)


def run_sweep(cfg: Config, trials: int, space: SearchSpace, out, callbacks=(), ds=None) -> int:
    """Train the trials of a sweep not yet done (up to `trials` completed or pruned in all) into `out`; returns how
    many it started. `callbacks` are extra TrainerCallbacks, given every trial; `ds` the data, else loaded here."""
    import torch

    optuna = require("optuna", "a hyperparameter sweep (blipnb sweep, hp_trials > 0)")

    from ..data import load_captions
    from ..model.modeling import start_model
    from .trainer import best_metric_key, build_trainer

    out = Path(out).resolve()
    base = dataclasses.replace(cfg, run_dir=str(out))
    runs.RunDir(out).ensure()
    todo = [None]
    if is_main_process():
        study, storage = open_study(out, base, space)
        todo = [max(0, trials - trials_done(study))]
        print(f"sweep {out}: {trials - todo[0]} of {trials} trials done, {todo[0]} to go", flush=True)
    if world_size() > 1:  # every rank runs as many trials as rank 0 draws
        process_state()  # joins the launcher's process group
        torch.distributed.broadcast_object_list(todo, src=0)
    if todo[0]:
        if ds is None:
            with main_process_first():
                ds = load_captions(cfg.data, run_dir=str(out) if is_main_process() else None)
        start_dir = out / runs.BASE_MODEL_DIR if cfg.model.from_scratch else None
        with main_process_first():  # rank 0 builds the starting model once; the others load what it saved
            first = base if is_main_process() or start_dir is None else _loading(base, start_dir)
            model, processor = start_model(first, ds)

        def model_init(trial=None):
            from .trainer import prepare_model

            # The Trainer builds the model before it asks hp_space for the trial's values: draw them here (optuna
            # gives the same value when asked again; a FixedTrial on the other ranks gives rank 0's).
            values = suggest(trial, space, base) if trial is not None else {}
            tcfg = trial_config(base, space, values, out)
            return prepare_model(tcfg, start_model(_loading(tcfg, start_dir) if start_dir else tcfg, ds)[0])

        first_cfg = trial_config(base, space, {}, out)
        trial_run = TrialRun(base, space, out, processor, start_dir, ds)
        parent, tracking = _tracking(cfg, base, out)
        trainer = build_trainer(first_cfg, model, processor, ds, callbacks=[*callbacks, *tracking, trial_run],
                                model_init=model_init)
        trial_run.trainer = trainer
        trainer.args.output_dir = str(out)  # each trial's checkpoints in its own run dir: out/trial-NNN/checkpoints
        key = best_metric_key(first_cfg)
        settings = {}
        if is_main_process():
            pruner = (optuna.pruners.MedianPruner(**space.pruner) if world_size() == 1 else optuna.pruners.NopPruner())
            # Seeded by how far the study is, so a resumed sweep does not draw its first trials' values again.
            sampler = optuna.samplers.TPESampler(seed=cfg.train.seed + len(study.trials))
            settings = dict(storage=storage, study_name=STUDY_NAME, load_if_exists=True, pruner=pruner,
                            sampler=sampler)
        trainer.hyperparameter_search(
            hp_space=lambda trial: {TRAINING_ARGUMENTS[k]: v for k, v in suggest(trial, space, base).items()
                                    if k in TRAINING_ARGUMENTS},
            compute_objective=lambda metrics: metrics[key], n_trials=todo[0], direction="maximize",
            backend="optuna", hp_name=lambda trial: f"{runs.trial_dir_name(trial.number)}/{runs.CHECKPOINTS_DIR}",
            **settings)
        if parent is not None:
            best = best_trial(out)
            parent.log_metrics({f"best_validation_{best_metric_key(first_cfg).removeprefix('eval_')}": best.value})
            parent.set_tags({"blipnb.best_trial": runs.trial_dir_name(best.number)})
            parent.end()
    return todo[0]


def _tracking(cfg: Config, base: Config, out: Path) -> tuple:
    """With report_to mlflow (rank 0): the sweep's parent run (the one a stopped sweep opened, if any) and the
    callback that logs each trial as its child run; else (None, [])."""
    if cfg.train.report_to != "mlflow" or not is_main_process():
        return None, []
    from .tracking import TrialRuns, experiment_name, start_parent, stored_run, tracking_uri

    # The store and experiment of the run directory the sweep serves (02's run, or the sweep's --out itself)
    uri = tracking_uri(cfg.run_dir, cfg.train.tracking_uri)
    parent = stored_run(out, uri) or start_parent(out, base, uri=uri, experiment=experiment_name(
        cfg.run_dir, cfg.train.tracking_experiment))
    return parent, [TrialRuns(parent, run_dir=lambda state: out / state.trial_name.split("/")[0])]


def adopt_best(out, run_dir) -> dict:
    """Make the sweep's best trial the run in `run_dir` (02 with hp_trials): its config, model, log history and
    train results, hard-linked where possible; returns its train results."""
    best = best_trial(out)
    trial = Path(out) / runs.trial_dir_name(best.number)
    run = runs.RunDir(run_dir)
    for name in (runs.MODEL_DIR, runs.ADAPTER_DIR):
        if (run / name).exists():
            shutil.rmtree(run / name)
        if (trial / name).exists():
            _link_tree(trial / name, run / name)
    cfg = runs.read_json(trial / runs.CONFIG)
    cfg["run_dir"] = str(run.path)
    runs.write_json(run / runs.CONFIG, cfg)
    for name in (runs.LOG_HISTORY, runs.TRAIN_RESULTS, runs.MLFLOW_RUN):  # 03 then logs into the trial's MLflow run
        if (trial / name).is_file():
            shutil.copy2(trial / name, run / name)
    print(f"the sweep's best trial, {best.number} (validation {best.value:.4f}), is now the run in {run.path}")
    return runs.read_json(run / runs.TRAIN_RESULTS)


def _loading(cfg: Config, start_dir: Path) -> Config:
    """`cfg` loading its starting model from `start_dir` (the sweep's from-scratch model) instead of building one."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, from_scratch=False, model_id=str(start_dir)))
