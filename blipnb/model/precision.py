"""Mixed precision outside the Trainer: which dtype a precision name means on a device, autocast, TF32."""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve(precision: str, device: torch.device | str | None = None) -> str:
    """auto -> bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU; other names pass through."""
    if precision != "auto":
        return precision
    device = torch.device(device) if device is not None else None
    if (device is None or device.type == "cuda") and torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def compute_dtype(precision: str, device: torch.device | str | None = None) -> torch.dtype:
    """The dtype activations are computed in for `precision` on `device`."""
    return DTYPES[resolve(precision, device)]


def autocast(device: torch.device | str, precision: str = "auto"):
    """An autocast context for `precision` on `device` (nothing for fp32)."""
    device = torch.device(device)
    dtype = compute_dtype(precision, device)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def enable_tf32() -> None:
    """Let fp32 matmuls and convolutions use TF32 tensor cores (Ampere and later); a no-op on CPU."""
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True
