"""Several training processes (torchrun, accelerate launch, SageMaker): who builds the shared files, who writes the
run directory, and the launcher notebook 02 uses for num_processes > 1.

Under a launcher every process runs the same code. Rank 0 builds what the others then read (the sample, a tiny
base model, the pixel and embedding caches) and is the only writer of the run directory; the HF Trainer shards the
training batches and averages the gradients (DDP).
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .. import runs
from ..errors import WorkerFailed  # noqa: F401  (re-exported: launch raises it)

# Lines a failed worker leaves: our one-line user errors first, else the last line of a Python traceback.
_USER_ERROR = re.compile(r"blipnb (?:train|sweep): .+")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt)\b(?::.*)?$")
_RANK_PREFIX = re.compile(r"^\[(?:default)?(?:rank)?\d+\]:\s?")
# What the other ranks report once one has died: the consequence, not the cause.
_PEER_FAILURE = re.compile(r"closed by peer|reset by peer|remote worker|DistBackendError|NCCL|Broken pipe|SIGTERM|"
                           r"ChildFailedError|torch\.distributed\.elastic")


def launched() -> bool:
    """Whether this process is one of several started by torchrun, accelerate launch or SageMaker."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Whether this process writes the run directory: always in one process, rank 0 under a launcher."""
    return not launched() or int(os.environ.get("RANK", "0")) == 0


def ddp_backend() -> str | None:
    """gloo without CUDA (CPU processes), else None: the Trainer's default (nccl on GPUs)."""
    return "gloo" if launched() and not torch.cuda.is_available() else None


def process_state():
    """accelerate's PartialState, joining the launcher's process group with the backend the Trainer uses."""
    from accelerate import PartialState

    backend = ddp_backend()
    return PartialState(cpu=backend == "gloo", **({"backend": backend} if backend else {}))


@contextlib.contextmanager
def main_process_first():
    """Rank 0 runs the block first, the others after it: they find what it built on disk. One process: no-op."""
    if not launched():
        yield
        return
    with process_state().main_process_first():
        yield


def world_size() -> int:
    """Training processes: the launcher's WORLD_SIZE, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def token_share(labels: torch.Tensor, shifted: bool = True) -> torch.Tensor:
    """World size x this rank's share of the predicted tokens of all ranks' batches (`shifted`: the family's
    labels_shifted).

    A rank's loss is a mean over its tokens, and DDP averages the ranks' gradients: scaled by this factor, the
    step is the token mean over all ranks' batches, as one process with the whole batch takes it.
    """
    from ..runtime.families.base import IGNORE_INDEX

    # A decoder predicts labels[:, 1:] (the model shifts them); an encoder-decoder's labels are all predicted.
    mine = ((labels[:, 1:] if shifted else labels) != IGNORE_INDEX).sum().to(torch.float32)
    total = mine.clone()
    torch.distributed.all_reduce(total)
    return mine * torch.distributed.get_world_size() / total.clamp(min=1)


def forward_inside_ddp(ddp_model, fn, batch: dict):
    """fn(model, batch) run as the forward of the DDP wrapper around `model`, so DDP syncs the gradients of what
    it used: blipnb's loss calls the vision tower and the decoder directly (shared_vision, cached embeddings),
    past the model's own forward that DDP wraps."""
    inner = ddp_model.module
    own = inner.__dict__.get("forward")  # accelerate's autocast wrapper, when mixed precision is on

    def restore():
        if own is not None:
            inner.forward = own
        else:
            inner.__dict__.pop("forward", None)

    def forward(**kwargs):
        restore()  # fn may call the model's own forward (the per-pair loss does)
        return fn(inner, kwargs)

    inner.forward = forward
    try:
        return ddp_model(**batch)
    finally:
        restore()


def finish() -> None:
    """Leave the process group cleanly at the end of a launched run (no-op otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launch(cfg, nproc: int, log=None) -> dict:
    """Train `cfg` in `nproc` processes on this machine: `torchrun --standalone --nproc_per_node nproc -m
    blipnb.train -f <cfg's parameters>`, its log streamed to `log` (default: stdout, i.e. a notebook cell).
    Returns the run's train results; raises WorkerFailed with the worker's error message if a process fails."""
    torchrun(cfg, nproc, "blipnb.train", log=log, what="training")
    return runs.read_json(runs.RunDir(cfg.run_dir) / runs.TRAIN_RESULTS)


def torchrun(cfg, nproc: int, module: str, extra: tuple = (), log=None, what: str = "training") -> None:
    """`torchrun --standalone --nproc_per_node nproc -m MODULE -f <cfg's parameters> EXTRA...`, its log streamed to
    `log`; a WorkerFailed names the failing worker's message."""
    import yaml

    log = log or sys.stdout
    runs.RunDir(cfg.run_dir).ensure()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="blipnb-train-", delete=False) as f:
        yaml.safe_dump(cfg.flat(), f, sort_keys=False)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", module, "-f", f.name, *extra]
    print("$ torchrun " + " ".join(cmd[3:]), file=log, flush=True)
    # Unbuffered, so the log arrives as it is written; progress bars at most every 10 s, not per step.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "10")}
    tail: list[str] = []
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
            for line in proc.stdout:
                print(line, end="", file=log, flush=True)
                tail = (tail + [line.rstrip("\n")])[-400:]
        rc = proc.returncode
    finally:
        Path(f.name).unlink(missing_ok=True)
    if rc != 0:
        raise WorkerFailed(f"{what} with {nproc} processes failed (exit code {rc}): {worker_error(tail)}")


def worker_error(lines: list[str]) -> str:
    """The failing worker's message in a torchrun log: a `blipnb train:` line, else the first exception line that
    is not another rank losing its peer."""
    stripped = [_RANK_PREFIX.sub("", line).strip() for line in lines]
    for line in stripped:
        m = _USER_ERROR.search(line)
        if m:
            return m.group(0)
    errors = [line for line in stripped if _EXCEPTION.match(line)]
    causes = [line for line in errors if not _PEER_FAILURE.search(line)]
    return (causes or errors or [line for line in stripped if line] or ["no output"])[0]
