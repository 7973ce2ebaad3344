"""Runs tracked in MLflow (report_to="mlflow"): 02's parameters and curves, 03's scores in the same run, and a
sweep's trials as child runs of one parent. Longer than most on purpose: all of blipnb's MLflow code is here, so
one file says where runs go and how they are named.

Where. The store is `tracking_uri`, else a local SQLite file beside the run directories,
`sqlite:///<run_dir's parent>/mlflow.db` (artifacts in `<parent>/mlartifacts`), so every run of one runs/ folder
lands in one store and `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db` shows them side by side. The
experiment is `tracking_experiment`, else the parent folder's name ("runs"); an MLflow run is named after its run
directory, which keeps the run's id in mlflow_run.json (runs.MLFLOW_RUN). Everything goes through an MlflowClient
bound to that store and run: mlflow's global tracking URI, active run and environment are never set, so a notebook
kernel, and the user's own MLflow calls in it, are left as they were. mlflow is imported only when used.

02. build_trainer adds `TrainingRun(cfg)`, transformers' MLflowCallback logging into that run: every Trainer log
(loss, learning rate, grad norm, eval_loss, eval_cider, ...) at its global step, and as parameters the flat blipnb
config (Config.flat(), under its own names), the TrainingArguments (`trainer/...`) and the model config
(`model_config/...`).
- A training from step 0 opens a new MLflow run; the one the run directory named before (the same config retrained,
  or another one after overwrite) stays in the store, tagged `blipnb.replaced_by` with the new run's id (and ended
  KILLED if it was still RUNNING: its process died).
- A resumed training (resume_from_checkpoint found a checkpoint) continues the run the directory names, when it is
  in this store: the curves go on from the checkpoint's step. Parameters keep their first values (MLflow never
  changes one); what differs now (resume_from_checkpoint, logging_steps, ...) is the tag `blipnb.resumed_with`, the
  step it resumed at `blipnb.resumed_at_step`.
- The run ends FINISHED with train(), FAILED when train() raises (train_model calls end_failed); a killed process
  leaves it RUNNING until it is resumed.

03. `log_evaluation(cfg, metrics)` logs into the run 02 opened: every metric of metrics.json with its CI bounds
(`test/CIDEr`, `test/CIDEr_ci_low`, `test/CIDEr_ci_high`), the baseline's (`test/baseline/...`), the human
ceiling's (`test/human_ceiling/...`) and the paired gain (`test/gain/...`); a null metric is no number but a tag
`unavailable/test/<metric>` holding its reason; and as artifacts metrics.json, figures/ and the model card
(model/README.md). A run that 02 did not track gets nothing, and 03 says nothing.

A sweep (one Trainer, Trainer.hyperparameter_search):

    parent = start_parent(sweep_dir, cfg)   # the sweep's own run; its id in sweep_dir/mlflow_run.json
    trainer.add_callback(TrialRuns(parent, run_dir=lambda state: sweep_dir / state.trial_name))
    trainer.hyperparameter_search(..., hp_name=lambda trial: f"trial-{trial.number}")
    parent.end()

Each train() of that Trainer (a trial) opens a child run (tag mlflow.parentRunId: the parent's id) named after its
run directory, with the trial's parameters (state.trial_params, or `params(state)`), logs its curves, writes its id
into its run directory and ends at on_train_end: FINISHED when training ran to its last step (or a callback stopped
it), KILLED when it stopped before, as a trial optuna prunes does (the Trainer calls on_train_end, then raises
TrialPruned). transformers' own MLflowCallback opens its run once per callback (`_initialized` stays True after the
first train()); TrialRuns opens one per train() instead.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from transformers.integrations import MLflowCallback

from .. import runs
from ..config import Config
from ..errors import ParameterError
from ..schema import HUMAN_CEILING

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests a child run under its parent
RUN_DIR_TAG = "blipnb.run_dir"
REPLACED_BY_TAG = "blipnb.replaced_by"
RESUMED_WITH_TAG, RESUMED_AT_TAG = "blipnb.resumed_with", "blipnb.resumed_at_step"
UNAVAILABLE = "unavailable"  # tag prefix of a metric that is null, with its reason as the value
_MAX_TAG = 5000  # MLflow keeps tag values up to 8000 characters
INSTALL = {"mlflow": "pip install 'mlflow-skinny>=3' sqlalchemy alembic (or blipnb[mlflow])",
           "trackio": "pip install trackio"}


def check_integration(report_to: str) -> None:
    """A ParameterError naming report_to and the install command when its package is missing (mlflow, trackio)."""
    if report_to in INSTALL and importlib.util.find_spec(report_to) is None:
        raise ParameterError(f"report_to={report_to!r} needs the {report_to} package, which is not installed: "
                             f"{INSTALL[report_to]}, or choose report_to='tensorboard' or 'none'")


def tracking_uri(run_dir, override: str | None = None) -> str:
    """`override`, else the local store beside `run_dir`: sqlite:///<its parent, absolute>/mlflow.db."""
    return override or f"sqlite:///{Path(run_dir).resolve().parent / runs.MLFLOW_DB}"


def experiment_name(run_dir, override: str | None = None) -> str:
    """`override`, else the name of `run_dir`'s parent folder."""
    return override or Path(run_dir).resolve().parent.name or "blipnb"


class TrackedRun:
    """One MLflow run of one store, written through an MlflowClient; what MLflowCallback calls on `mlflow`."""

    def __init__(self, client, run_id: str, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri

    def log_params(self, params: dict) -> dict:
        """Log the parameters the run does not have yet; returns {name: (logged, new)} of those it has with
        another value, which MLflow keeps as first logged."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        have = self.client.get_run(self.run_id).data.params
        new = {k: str(v) for k, v in params.items() if len(str(v)) <= MAX_PARAM_VAL_LENGTH}
        self._batch(params=[Param(k, v) for k, v in new.items() if k not in have])
        return {k: (have[k], v) for k, v in new.items() if k in have and have[k] != v}

    def log_metrics(self, metrics: dict, step: int | None = None, synchronous: bool | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._batch(metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items()])

    def set_tags(self, tags: dict) -> None:
        from mlflow.entities import RunTag

        self._batch(tags=[RunTag(k, str(v)[:_MAX_TAG]) for k, v in tags.items()])

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)

    def _batch(self, metrics=(), params=(), tags=()) -> None:
        for start in range(0, max(len(metrics), len(params), len(tags)), 100):  # MLflow's limit per batch
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 100], params=params[start:start + 100],
                                  tags=tags[start:start + 100])


@contextmanager
def _quiet():
    """Keep the store's first-use chatter (creating and migrating its tables) out of notebook output."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def client_for(uri: str):
    """An MlflowClient on `uri` (a new SQLite store gets its tables quietly)."""
    check_integration("mlflow")
    from mlflow import MlflowClient

    with _quiet():
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)  # creates a new SQLite store's tables now, quietly
    return client


def _experiment_id(client, name: str, uri: str) -> str:
    """The id of experiment `name`, created when missing; a SQLite store keeps its artifacts beside its file (MLflow
    would put them under the current folder, a notebook's)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / runs.MLFLOW_ARTIFACTS / name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def open_run(run_dir, uri: str, experiment: str, tags: dict | None = None) -> TrackedRun:
    """A new MLflow run named after `run_dir` in `experiment`, its id written into run_dir/mlflow_run.json."""
    client = client_for(uri)
    experiment_id = _experiment_id(client, experiment, uri)
    run_dir = Path(run_dir)
    made = client.create_run(experiment_id, run_name=run_dir.name,
                             tags={RUN_DIR_TAG: str(run_dir.resolve()), **(tags or {})})
    run = TrackedRun(client, made.info.run_id, uri)
    _remember(run_dir, run, experiment)
    return run


def _remember(run_dir: Path, run: TrackedRun, experiment: str) -> None:
    runs.write_json(runs.RunDir(run_dir).ensure() / runs.MLFLOW_RUN,
                    {"run_id": run.run_id, "experiment": experiment, "tracking_uri": run.uri,
                     "run_name": Path(run_dir).name})


def stored_run(run_dir, uri: str) -> TrackedRun | None:
    """The run that run_dir/mlflow_run.json names, when it is in the store at `uri`; else None."""
    path = Path(run_dir) / runs.MLFLOW_RUN
    if not path.is_file():
        return None
    from mlflow.exceptions import MlflowException

    client = client_for(uri)
    try:
        run_id = runs.read_json(path)["run_id"]
        client.get_run(run_id)
    except (MlflowException, KeyError, TypeError, ValueError):  # another store, deleted, or an unreadable file
        return None
    return TrackedRun(client, run_id, uri)


class _RunCallback(MLflowCallback):
    """transformers' MLflowCallback, logging into a TrackedRun instead of mlflow's global active run: its on_log
    (numbers only, names sanitised, the global step as step) writes through `self._ml_flow`. A run opens at every
    on_train_begin (see `open`) and ends at on_train_end (see `status`)."""

    def __init__(self):
        check_integration("mlflow")
        super().__init__()
        self._async_log = False  # set by the setup() this class replaces; the client writes synchronously
        self._ml_flow = None
        self._running = False

    def open(self, args, state, model) -> TrackedRun:
        raise NotImplementedError

    def status(self, args, state, control) -> str:
        return "FINISHED"

    def setup(self, args, state, model):
        if state.is_world_process_zero:
            self.fail()  # a train() before this one raised without ending its run
            self._ml_flow, self._running = self.open(args, state, model), True
        self._initialized = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.setup(args, state, model)  # every train(), not only the first

    def on_log(self, args, state, control, logs, model=None, **kwargs):
        if self._ml_flow is not None:  # rank 0; a log after train() goes to the run train() used
            super().on_log(args, state, control, logs, model=model, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self._running:
            self._ml_flow.end(self.status(args, state, control))
            self._running = False

    def fail(self) -> None:
        """End the current run FAILED, if it is still running (train() raised)."""
        if self._running:
            self._ml_flow.end("FAILED")
            self._running = False


def trainer_params(args, model) -> dict:
    """The Trainer's side of the parameters: TrainingArguments as `trainer/...`, the model config as
    `model_config/...` (prefixed, so they never clash with blipnb's own names)."""
    out = {f"trainer/{k}": v for k, v in args.to_dict().items()}
    config = getattr(getattr(model, "config", None), "to_dict", None)
    return out | ({f"model_config/{k}": v for k, v in config().items()} if config else {})


class TrainingRun(_RunCallback):
    """02's run: new at step 0 (replacing the directory's previous run), continued when training resumes."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg

    def open(self, args, state, model) -> TrackedRun:
        cfg, run_dir = self.cfg, Path(self.cfg.run_dir)
        uri, experiment = tracking_uri(run_dir, cfg.train.tracking_uri), experiment_name(
            run_dir, cfg.train.tracking_experiment)
        previous = stored_run(run_dir, uri)
        params = cfg.flat() | trainer_params(args, model)
        if state.global_step > 0 and previous is not None:
            run = previous
            run.client.update_run(run.run_id, status="RUNNING")
            changed = run.log_params(params)
            run.set_tags({RESUMED_AT_TAG: state.global_step} | ({RESUMED_WITH_TAG: "; ".join(
                f"{k}: {a} -> {b}" for k, (a, b) in sorted(changed.items()))} if changed else {}))
            print(f"MLflow: continuing run {run.run_id} at step {state.global_step} ({uri})")
            return run
        run = open_run(run_dir, uri, experiment)
        run.log_params(params)
        if previous is not None:
            previous.set_tags({REPLACED_BY_TAG: run.run_id})
            if previous.client.get_run(previous.run_id).info.status == "RUNNING":  # its process was killed
                previous.end("KILLED")
        print(f"MLflow: run {run.run_id} in experiment {experiment!r} ({uri})")
        return run


def end_failed(trainer) -> None:
    """End the MLflow runs of `trainer`'s tracking callbacks FAILED: its train() raised."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, _RunCallback):
            callback.fail()


def start_parent(run_dir, cfg: Config | None = None, uri: str | None = None, experiment: str | None = None,
                 params: dict | None = None) -> TrackedRun:
    """A sweep's parent run, named after `run_dir` (its id in run_dir/mlflow_run.json), in the store and experiment
    `cfg` names (tracking_uri, tracking_experiment) unless given, with `params` (default: cfg's flat config)."""
    t = cfg.train if cfg is not None else None
    uri = tracking_uri(run_dir, uri or (t.tracking_uri if t else None))
    run = open_run(run_dir, uri, experiment_name(run_dir, experiment or (t.tracking_experiment if t else None)))
    run.log_params(params if params is not None else (cfg.flat() if cfg is not None else {}))
    return run


class TrialRuns(_RunCallback):
    """Each train() of a Trainer (a trial of hyperparameter_search) as a child run of `parent`, with its own
    run directory, `run_dir(state)` (default: the parent's folder / state.trial_name, or trial-<n>, n counting
    this callback's trials), and parameters `params(state)` (default: state.trial_params)."""

    def __init__(self, parent: TrackedRun, run_dir: Callable | None = None, params: Callable | None = None):
        super().__init__()
        self.parent, self.run_dir, self.params = parent, run_dir, params
        self.trials = 0

    def open(self, args, state, model) -> TrackedRun:
        parent = self.parent.client.get_run(self.parent.run_id)
        if self.run_dir is not None:
            run_dir = Path(self.run_dir(state))
        else:
            run_dir = Path(parent.data.tags[RUN_DIR_TAG]) / (state.trial_name or f"trial-{self.trials}")
        self.trials += 1
        experiment = self.parent.client.get_experiment(parent.info.experiment_id).name
        run = open_run(run_dir, self.parent.uri, experiment, tags={PARENT_TAG: self.parent.run_id})
        run.log_params(self.params(state) if self.params is not None else (state.trial_params or {}))
        return run

    def status(self, args, state, control) -> str:
        finished = state.global_step >= state.max_steps or control.should_training_stop
        return "FINISHED" if finished else "KILLED"


def log_evaluation(cfg: Config, metrics: dict, main: str) -> str | None:
    """Log 03's `metrics` (metrics.json; `main` names the model whose scores go unprefixed) and, as artifacts,
    metrics.json, figures/ and the model card into the MLflow run 02 tracked the run directory in; returns its id.
    None, silently, when 02 did not track it (report_to)."""
    if cfg.train.report_to != "mlflow":
        return None
    run_dir = runs.RunDir(cfg.run_dir)
    # The store the run was opened in (mlflow_run.json says; a sweep's trial shares its parent's), unless overridden
    stored = runs.read_json(run_dir / runs.MLFLOW_RUN) if (run_dir / runs.MLFLOW_RUN).is_file() else {}
    run = stored_run(run_dir, cfg.train.tracking_uri or stored.get("tracking_uri") or tracking_uri(run_dir))
    if run is None:
        print(f"MLflow: not logged: no run of {run_dir / runs.MLFLOW_RUN} in the store; run 02 again to track it")
        return None
    values, reasons = evaluation_metrics(metrics, main)
    stale = f"{UNAVAILABLE}/{metrics['split']}/"
    for key in [k for k in run.client.get_run(run.run_id).data.tags if k.startswith(stale)]:
        run.client.delete_tag(run.run_id, key)  # a metric null before may have a number now
    run.log_metrics(values)
    run.set_tags(reasons)
    artifacts = [(run_dir / runs.METRICS, None), (run_dir / runs.MODEL_DIR / runs.MODEL_CARD, runs.MODEL_DIR)]
    artifacts += [(f, runs.FIGURES_DIR) for f in sorted((run_dir / runs.FIGURES_DIR).glob("*.png"))]
    artifacts = [(path, folder) for path, folder in artifacts if path.is_file()]
    for path, folder in artifacts:
        run.log_artifact(path, folder)
    print(f"MLflow: {len(values)} metrics ({len(reasons)} unavailable, their reasons as tags) and {len(artifacts)} "
          f"artifacts into run {run.run_id} ({run.uri})")
    return run.run_id


def evaluation_metrics(metrics: dict, main: str) -> tuple[dict, dict]:
    """metrics.json as MLflow metrics and tags: ({"test/CIDEr": v, "test/CIDEr_ci_low": ..., "test/baseline/...",
    "test/human_ceiling/...", "test/gain/..."}, {"unavailable/test/<metric>": reason}) for the `main` model, the
    others (the baseline), the human ceiling and the paired gain; a null value is no number, its reason a tag."""
    split = metrics["split"]
    values, reasons = {f"{split}/n_images": metrics["n_images"]}, {}
    scored = {("" if name == main else f"{name}/"): result for name, result in metrics["results"].items()}
    scored[f"{HUMAN_CEILING}/"] = metrics.get(HUMAN_CEILING)
    for prefix, result in scored.items():
        if result is None:
            continue
        for key, value in result["metrics"].items():
            ci = result.get("ci", {}).get(key, {})
            _add(values, reasons, f"{split}/{prefix}{key}", value, ci,
                 result.get("unavailable", {}).get(key) or ci.get("note"))
    for key, row in (metrics.get("comparison") or {}).items():
        _add(values, reasons, f"{split}/gain/{key}", row.get("diff"), row, row.get("note"))
    for key, reason in metrics.get("unavailable", {}).items():
        reasons[f"{UNAVAILABLE}/{split}/{key}"] = reason
    return values, reasons


def _add(values: dict, reasons: dict, name: str, value, ci: dict, reason) -> None:
    """`name`'s value and CI bounds into `values` where they are numbers; else `reason` into `reasons`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        reasons[f"{UNAVAILABLE}/{name}"] = reason or "null"
        return
    values[name] = value
    for bound in ("low", "high"):
        if isinstance(ci.get(bound), (int, float)):
            values[f"{name}_ci_{bound}"] = ci[bound]
