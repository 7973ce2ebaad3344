"""The run directory: every file name a notebook reads or writes, and atomic I/O for them."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from .errors import ParameterError

# One folder per run carries everything between the notebooks. Notebooks use these names, never literals.
CONFIG = "config.json"  # the resolved config of the training run (02)
PROVENANCE = "provenance.json"  # package versions, git commit, data source, split hashes
DATA_SUMMARY = "data_summary.json"  # 01: split sizes, caption stats, leak check
BASE_MODEL_DIR = "base_model"  # the starting model when it was built from scratch (the baseline)
MODEL_DIR = "model"  # the fine-tuned export: model, processor, model card
ADAPTER_DIR = "adapter"  # finetune_method=lora: the LoRA adapter alone (peft), which MODEL_DIR holds merged
CHECKPOINTS_DIR = "checkpoints"  # Trainer checkpoints
LOGS_DIR = "logs"  # TensorBoard
LOG_HISTORY = "log_history.json"  # Trainer log history (losses, validation CIDEr)
TRAIN_RESULTS = "train_results.json"  # wall time, steps, best checkpoint
PREDICTIONS = "predictions.jsonl"  # fine-tuned model on the test split, one row per image
BASELINE_PREDICTIONS = "predictions_baseline.jsonl"  # the starting model on the same images
METRICS = "metrics.json"  # scores of both models, CIs, paired comparison
SWEEP = "decoding_sweep.json"  # validation grid over decoding settings
ERROR_ANALYSIS = "error_analysis.json"  # 04's tables
FIGURES_DIR = "figures"
NOTEBOOKS_DIR = "notebooks"  # executed notebooks written by `blipnb run-all`
MODEL_CARD = "README.md"  # inside MODEL_DIR
CAPTION_SUFFIXES = (".csv", ".jsonl")  # the file types a folder is captioned into


def check_caption_output(path: str | os.PathLike, name: str = "caption_output") -> Path:
    """`path` if it ends in .csv or .jsonl, else a ParameterError naming the parameter (before, not after, the work)."""
    path = Path(path)
    if path.suffix.lower() not in CAPTION_SUFFIXES:
        raise ParameterError(f"parameter {name!r} must end in .csv or .jsonl, got {str(path)!r}")
    return path


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

    def require(self, name: str, made_by: str) -> Path:
        """The path of `name`, or a FileNotFoundError saying which notebook writes it."""
        p = self.path / name
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist: run {made_by} with run_dir={str(self.path)!r} first")
        return p


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
