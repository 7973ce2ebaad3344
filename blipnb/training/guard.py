"""The divergence guard: a NaN or infinite loss or gradient norm stops training at that step, with advice.

fp16 BLIP runs are known to diverge (LAVIS#111, transformers#30789); without a guard a run goes on for hours
producing NaN weights. Under fp16 an infinite gradient norm alone is routine (the loss scaler skips that step and
lowers its scale), so there only the loss is checked.
"""
from __future__ import annotations

import math

import torch

from ..errors import TrainingDiverged


def all_finite(value: torch.Tensor | float) -> bool:
    """Whether `value` is finite on every process (a collective under DDP, so all ranks stop together)."""
    ok = torch.tensor(float(bool(torch.isfinite(torch.as_tensor(value, dtype=torch.float32)).all())))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_backend() == "nccl":
            ok = ok.cuda()
        torch.distributed.all_reduce(ok, op=torch.distributed.ReduceOp.MIN)
    return bool(ok.item())


def diverged(what: str, value, step: int, args, last_checkpoint: str | None) -> TrainingDiverged:
    """The error to raise: names the step, the value, the last good checkpoint and what to try."""
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    advice = {"fp16": "precision='bf16' (or 'fp32' where the GPU has no bf16), or a lower learning_rate",
              "bf16": "a lower learning_rate, or precision='fp32'",
              "fp32": "a lower learning_rate, or a longer warmup_ratio"}[precision]
    shown = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
    kept = (f"The last good checkpoint is kept: {last_checkpoint}; resume from it with "
            f"resume_from_checkpoint='auto' after changing the settings." if last_checkpoint
            else "No checkpoint had been saved yet.")
    return TrainingDiverged(f"training diverged at step {step}: the {what} is {shown} ({precision}, learning_rate "
                            f"{args.learning_rate:g}). Try {advice}. {kept}")


def is_finite_number(value) -> bool:
    """A float (or 0-d tensor) that is neither NaN nor infinite."""
    return math.isfinite(float(value))
