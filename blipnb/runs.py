"""The run directory: every file name a notebook reads or writes, atomic I/O for them, and the check that keeps
one directory to one run (a new config never mixes its files with an old run's)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .errors import MissingRunFile, ParameterError

# One folder per run carries everything between the notebooks. Notebooks use these names, never literals.
CONFIG = "config.json"  # the resolved config of the training run (02)
PROVENANCE = "provenance.json"  # package versions, git commit, data source, split hashes
DATA_SUMMARY = "data_summary.json"  # 01: split sizes, caption stats, leak check
IMAGE_CHECKS = "cache/image_checks.json"  # each local image's check and dHash, by path, size and mtime (data.checks)
CORRECTIONS = "corrections.jsonl"  # 04's corrections to reference captions, one per line (data.corrections)
SKIPPED = "skipped.jsonl"  # on_bad_data=skip: one object per image, caption or row left out (file, line, reason)
BASE_MODEL_DIR = "base_model"  # the starting model when it was built from scratch (the baseline)
MODEL_DIR = "model"  # the fine-tuned export: model, processor, model card
ADAPTER_DIR = "adapter"  # finetune_method=lora: the LoRA adapter alone (peft), which MODEL_DIR holds merged
CHECKPOINTS_DIR = "checkpoints"  # Trainer checkpoints
LOGS_DIR = "logs"  # TensorBoard
MLFLOW_RUN = "mlflow_run.json"  # report_to=mlflow: the MLflow run 02 logged into (03 logs into it too), its store
LOG_HISTORY = "log_history.json"  # Trainer log history (losses, validation CIDEr)
TRAIN_RESULTS = "train_results.json"  # wall time, steps, best checkpoint
PREDICTIONS = "predictions.jsonl"  # fine-tuned model on the test split, one row per image
BASELINE_PREDICTIONS = "predictions_baseline.jsonl"  # the starting model on the same images
METRICS = "metrics.json"  # scores of both models, CIs, paired comparison
SWEEP = "decoding_sweep.json"  # validation grid over decoding settings
# A hyperparameter sweep's directory (`blipnb sweep --out`, or HP_SWEEP_DIR inside a run when 02 has hp_trials):
HP_SWEEP_DIR = "sweep"
HP_STUDY = "study.db"  # the optuna study (SQLite): the same command goes on with the trials not yet done
HP_TRIALS = "trials.json"  # one row per trial: number, state, validation objective, parameters, run directory
HP_TRIALS_TABLE = "trials.md"  # the same as a Markdown table
HP_FIGURE = "trials.png"  # the objective against each parameter, and by trial
HP_BEST = "best.yaml"  # the best trial's parameters as a preset (-f)
TRIAL_PREFIX = "trial-"  # each trial's run directory: trial-000, trial-001, ...
ERROR_ANALYSIS = "error_analysis.json"  # 04's tables
FIGURES_DIR = "figures"
NOTEBOOKS_DIR = "notebooks"  # executed notebooks written by `blipnb run-all`
MODEL_CARD = "README.md"  # inside MODEL_DIR
# The deployable export inside MODEL_DIR (blipnb.model.deploy): one thin entry point per host, each with blipnb.runtime
HANDLER = "handler.py"  # Hugging Face Inference Endpoints' custom handler
SAGEMAKER_ENTRY = "code/inference.py"  # SageMaker inference toolkits' model_fn / input_fn / predict_fn / output_fn
REQUIREMENTS = "requirements.txt"  # what they import; Inference Endpoints reads it at the root, SageMaker in code/
CAPTION_SUFFIXES = (".csv", ".jsonl")  # the file types a folder is captioned into
# Beside the run directories, in their parent folder: report_to=mlflow's local store, shared by every run there
MLFLOW_DB = "mlflow.db"  # the SQLite tracking store: `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`
MLFLOW_ARTIFACTS = "mlartifacts"  # the artifacts its runs log (metrics.json, figures, the model card)
# What `blipnb compare` writes into its --out folder (several runs side by side; not a run directory of its own)
COMPARISON_DIR = "comparison"  # 03's comparison with other runs (compare_with); blipnb compare writes where told
# Inside a comparison folder:
COMPARISON = "comparison.json"  # each run's scores and CIs, every pair's paired differences, the human ceiling
COMPARISON_REPORT = "comparison.md"  # the same as Markdown tables
COMPARISON_FIGURE = "comparison.png"  # each run's scores with CIs, and the paired differences

# What the notebooks write into a run directory: `overwrite` removes these and nothing else. Figures and executed
# notebooks go file by file (*.png, *.ipynb), so a user's own files stay; so do the pixel cache and the image
# checks (both keyed by content).
OUTPUTS = (CONFIG, PROVENANCE, DATA_SUMMARY, SKIPPED, BASE_MODEL_DIR, MODEL_DIR, ADAPTER_DIR, CHECKPOINTS_DIR,
           LOGS_DIR, MLFLOW_RUN, LOG_HISTORY, TRAIN_RESULTS, PREDICTIONS, BASELINE_PREDICTIONS, METRICS, SWEEP,
           ERROR_ANALYSIS, FIGURES_DIR, NOTEBOOKS_DIR, COMPARISON_DIR, HP_SWEEP_DIR)
# Kept by `overwrite`: every entry is keyed by the content it describes, so an old one is never wrong, only unused.
KEYED_BY_CONTENT = (IMAGE_CHECKS,)
# Kept by `overwrite`: what a person recorded in the run directory, which no notebook could write again.
RECORDED_BY_HAND = (CORRECTIONS,)
# 01's figures (a test holds this list to notebook 01).
DATA_FIGURES = ("caption_lengths.png", "top_words.png", "image_sizes.png", "gallery.png", "near_duplicates.png")
# What 02 keeps when it clears an old run: 01's outputs (01 has just run before it), and the executed notebooks of
# a `blipnb run-all` in progress (run-all itself clears the old run before 01).
KEPT_BY_TRAINING = (DATA_SUMMARY, SKIPPED, *(f"{FIGURES_DIR}/{name}" for name in DATA_FIGURES), NOTEBOOKS_DIR)
# The stages of config.json that shape what 02 trains (generation: validation picks the checkpoint by its captions).
TRAINED_BY = ("data", "model", "train", "generation")
# Parameters of those stages that may differ between runs sharing a directory: how a run is executed, logged or
# resumed, not what it learns. 03-05's own parameters (eval, sweep, analysis, hub, demo) are never compared.
MAY_DIFFER = frozenset({"resume_from_checkpoint", "dataloader_workers", "logging_steps", "report_to", "tracking_uri",
                        "tracking_experiment", "compile", "pixel_cache", "cache_dir", "save_total_limit",
                        "eval_batch_size", "gen_batch_size"})


def check_caption_output(path: str | os.PathLike, name: str = "caption_output") -> Path:
    """`path` if it ends in .csv or .jsonl, else a ParameterError naming the parameter (before, not after, the work)."""
    path = Path(path)
    if path.suffix.lower() not in CAPTION_SUFFIXES:
        raise ParameterError(f"parameter {name!r} must end in .csv or .jsonl, got {str(path)!r}")
    return path


def shown(path: str | os.PathLike) -> str:
    """`path` as a person would type it here: relative to the working directory when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def trial_dir_name(number: int) -> str:
    """The run directory name of a sweep's trial `number` (optuna's, from 0)."""
    return f"{TRIAL_PREFIX}{number:03d}"


class RunDir:
    """A run directory; `run / name` gives the path of one of the constants above."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def ensure(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def figure(self, name: str) -> Path:
        d = self.path / FIGURES_DIR
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def save_figure(self, fig, name: str):
        """Save a matplotlib figure as figures/`name` (PNG, 100 dpi, cropped to its content); returns `fig`, so a
        notebook cell can save and show it in one line."""
        fig.savefig(self.figure(name), dpi=100, bbox_inches="tight")
        return fig

    def require(self, name: str, made_by: str, what: str | None = None) -> Path:
        """The path of `name`, or a MissingRunFile (a FileNotFoundError) saying which notebook writes it."""
        p = self.path / name
        if not p.exists():
            missing = f"no {what} in {p}" if what else f"{p} does not exist"
            raise MissingRunFile(f"{missing}: run {made_by} with run_dir={str(self.path)!r} first")
        return p

    def require_model(self, name: str, made_by: str, what: str) -> Path:
        """The path of the model folder `name` (one holding a config.json), or a MissingRunFile naming `made_by`."""
        p = self.path / name
        if not is_model_dir(p):
            raise MissingRunFile(f"no {what} in {p}: run {made_by} with run_dir={str(self.path)!r} first"
                                 + (" (the folder exists but holds no config.json: did that run stop early?)"
                                    if p.is_dir() else ""))
        return p


def is_model_dir(path: str | os.PathLike) -> bool:
    """Whether `path` is a saved model folder (save_pretrained writes its config.json)."""
    return (Path(path) / "config.json").is_file()


def config_differences(saved: dict, new: dict, keys: Iterable[str] | None = None) -> list[str]:
    """`stage.name: old -> new` for each parameter of the TRAINED_BY stages where two config.json dicts differ.

    MAY_DIFFER is left out, and so is a parameter the saved file lacks (it predates that parameter); `keys`, if
    given, limits the comparison to those names.
    """
    old = {k: v for stage in saved.values() if isinstance(stage, dict) for k, v in stage.items()}  # any layout
    wanted = None if keys is None else set(keys)
    diffs = []
    for stage in TRAINED_BY:
        for name, value in (new.get(stage) or {}).items():
            if name in MAY_DIFFER or name not in old or (wanted is not None and name not in wanted):
                continue
            if _normal(old[name]) != _normal(value):
                diffs.append(f"{stage}.{name}: {old[name]!r} -> {value!r}")
    return diffs


def prepare_run_dir(cfg, keys: Iterable[str] | None = None, keep: Iterable[str] = KEPT_BY_TRAINING) -> "RunDir":
    """The run directory of `cfg` (a blipnb Config), made ready for a training run.

    If it holds the run of another config (its config.json differs, see config_differences), this raises a
    ParameterError naming the differing parameters, unless cfg.overwrite is set: then that run's outputs (but
    `keep`) are removed first. The same config again, or a resumed run, goes on untouched.
    """
    run = RunDir(cfg.run_dir)
    if not (run / CONFIG).is_file():
        return run.ensure()
    try:
        diffs = config_differences(read_json(run / CONFIG), cfg.to_dict(), keys)
    except (ValueError, AttributeError) as e:  # not JSON, or not a config
        diffs = [f"{CONFIG} is unreadable ({type(e).__name__})"]
    if diffs and not cfg.overwrite:
        raise ParameterError(f"run_dir {str(run.path)!r} holds a run of another config ({'; '.join(diffs)}): choose "
                             f"another run_dir, or set overwrite=True (-p overwrite true) to clear that run first")
    if diffs:
        extra = [cfg.demo.caption_output] if not Path(cfg.demo.caption_output).is_absolute() else []
        removed = clear_outputs(run, keep=keep, extra=extra)
        print(f"overwrite=True: removed the previous run's {', '.join(removed)} from {run.path}")
    return run.ensure()


def clear_outputs(run_dir: str | os.PathLike, keep: Iterable[str] = (), extra: Iterable[str] = ()) -> list[str]:
    """Remove the notebooks' outputs (OUTPUTS, plus `extra` names) from a run directory, except those in `keep`
    (names relative to it, e.g. "figures/gallery.png"); returns what was removed. Nothing else is touched."""
    root = Path(run_dir)
    kept = {Path(k) for k in keep}
    removed = []
    for name in (*OUTPUTS, *extra):
        path = root / name
        if Path(name) in kept or not path.exists() or not path.resolve().is_relative_to(root.resolve()):
            continue
        if name in (FIGURES_DIR, NOTEBOOKS_DIR):
            pattern = "*.png" if name == FIGURES_DIR else "*.ipynb"
            files = [f for f in path.glob(pattern) if f.relative_to(root) not in kept]
            for f in files:
                f.unlink()
            removed += [str(f.relative_to(root)) for f in sorted(files)]
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
            removed.append(name)
        else:
            path.unlink()
            removed.append(name)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp's 0600 would hide the result from a teammate
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the process umask (0644 under the usual 022)."""
    try:  # Linux shows the umask without changing it (os.umask must set it to read it)
        with open("/proc/self/status", encoding="ascii") as f:
            mask = next((int(line.split()[1], 8) for line in f if line.startswith("Umask:")), None)
    except OSError:
        mask = None
    if mask is None:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically (temp file, then rename), so a crash never leaves half a file."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Write one JSON object per line, atomically."""
    return write_text(path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {lineno}: not valid JSON ({e.msg})") from None
    return rows


def _normal(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples as lists, paths as strings), for comparing configs."""
    return json.loads(json.dumps(value, default=_jsonable))


def _jsonable(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):  # numpy / torch scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
