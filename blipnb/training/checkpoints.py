"""Which checkpoint a run resumes from: the newest that loads, checked before the Trainer touches it.

A run killed while writing a checkpoint, a disk that filled up, or a copy that stopped half-way leaves a folder
that looks like a checkpoint but does not load; the Trainer then fails deep inside safetensors or torch.load.
Each file resuming needs is checked here by what is cheap and certain: the JSON parses, a safetensors header
covers the whole file, a torch zip has its central directory (written last, so a truncated file lacks it).
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from .. import runs
from ..errors import CheckpointUnusable, ParameterError
from .distributed import is_main_process

TRAINER_STATE = "trainer_state.json"
# Model weights as the Trainer saves them: one file, a sharded index, or LoRA's adapter alone.
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "adapter_model.safetensors",
           "adapter_model.bin")
REQUIRED_STATES = ("optimizer.pt", "scheduler.pt")  # without them a resume would not continue the same run
_STEP = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why the checkpoint `folder` cannot be resumed from (the first file at fault and what is wrong), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return "it is not a folder"
    state = folder / TRAINER_STATE
    if not state.is_file():
        return f"it has no {TRAINER_STATE}"
    try:
        json.loads(state.read_text())
    except (OSError, ValueError) as e:
        return f"{TRAINER_STATE} does not parse ({type(e).__name__}: {e})"
    weights = [folder / name for name in WEIGHTS if (folder / name).is_file()]
    if not weights:
        return f"it has no model weights (none of {', '.join(WEIGHTS)})"
    for path in weights + sorted(folder.glob("model-*.safetensors")):
        if (problem := _file_problem(path)) is not None:
            return f"{path.name} {problem}"
    for name in REQUIRED_STATES:
        if not (folder / name).is_file():
            return f"it has no {name}"
    for path in [folder / name for name in REQUIRED_STATES] + sorted(folder.glob("rng_state*.pth")):
        if (problem := _file_problem(path)) is not None:
            return f"{path.name} {problem}"
    return None


def newest_usable(checkpoints_dir: str | Path, log=print) -> str | None:
    """The newest checkpoint-N under `checkpoints_dir` that loads (None if there is none at all). Each newer one
    that does not load is named with its reason through `log`; when none loads, CheckpointUnusable says so."""
    folder = Path(checkpoints_dir)
    found = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if p.is_dir() and (m := _STEP.match(p.name))) if folder.is_dir() else []
    refused = []
    for _, path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            if refused:
                log(f"resume_from_checkpoint='auto': resuming from {path.name}, the newest checkpoint that loads")
            return str(path)
        refused.append(f"{path.name} ({problem})")
        log(f"resume_from_checkpoint='auto': cannot resume from {path}: {problem}")
    if refused:
        raise CheckpointUnusable(
            f"resume_from_checkpoint='auto': no checkpoint in {folder} loads: {'; '.join(refused)}. Delete the "
            "broken folders, or start afresh with resume_from_checkpoint=False.")
    return None


def _file_problem(path: Path) -> str | None:
    """What is wrong with one checkpoint file, judged by its kind; None if it looks whole."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "is empty"
        if path.suffix == ".safetensors":
            return _safetensors_problem(path, size)
        if path.suffix == ".json":
            json.loads(path.read_text())
            return None
        if zipfile.is_zipfile(path):  # torch.save's format: the central directory sits at the end
            with zipfile.ZipFile(path) as z:
                z.infolist()
            return None
        return "is not a torch checkpoint file (no zip directory: truncated, or written by something else)"
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        return f"does not load ({type(e).__name__}: {e})"


def _safetensors_problem(path: Path, size: int) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes to the end."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"is truncated ({size} bytes)"
        n = int.from_bytes(head, "little")
        if n > size - 8:
            return f"is truncated: its header alone claims {n} bytes but the file has {size}"
        header = json.loads(f.read(n))
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        return f"is truncated: its tensors need {8 + n + end} bytes but the file has {size}"
    if 8 + n + end < size:
        return f"does not match its header: {size - 8 - n - end} bytes past the last tensor"
    return None


def resume_checkpoint(cfg) -> str | None:
    """The checkpoint folder cfg.train.resume_from_checkpoint names: 'auto' is the run's newest that loads (None if
    it has none; see training.checkpoints), a path must be a checkpoint folder that loads, False is None."""
    wanted = cfg.train.resume_from_checkpoint
    if wanted is False:
        return None
    if wanted == "auto":
        return newest_usable(Path(cfg.run_dir) / runs.CHECKPOINTS_DIR, log=print if is_main_process() else _quiet)
    path = Path(wanted)
    if not (path / TRAINER_STATE).is_file():
        raise ParameterError(f"parameter 'resume_from_checkpoint': {str(path)!r} is not a checkpoint folder (it has "
                             f"no {TRAINER_STATE}); use 'auto' for the run's latest checkpoint")
    if (problem := checkpoint_problem(path)) is not None:
        raise ParameterError(f"parameter 'resume_from_checkpoint': cannot resume from {str(path)!r}: {problem}; "
                             "use 'auto' for the run's newest checkpoint that loads")
    return str(path)


def _quiet(_message: str) -> None:
    """Other ranks than 0 resolve the same checkpoint without repeating what rank 0 says."""
