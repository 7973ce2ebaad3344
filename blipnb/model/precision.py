"""Mixed precision: which dtype a precision name means on a device, autocast, TF32, and which dtype a model's
layers actually computed in."""
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


def _last_linear(module: torch.nn.Module, skip: torch.nn.Module | None = None) -> torch.nn.Module | None:
    """The last nn.Linear in `module` that is not inside `skip` (for a captioner without its vision tower: the
    language model's output layer)."""
    inside = {id(m) for m in skip.modules()} if skip is not None else set()
    found = None
    for m in module.modules():
        if isinstance(m, torch.nn.Linear) and id(m) not in inside:
            found = m
    return found


@contextlib.contextmanager
def observed_dtypes(model: torch.nn.Module, vision: torch.nn.Module | None):
    """Within the block, record the dtype of the first output of a linear layer of the vision tower (`vision`) and of
    the language side (the last linear layer outside it): {"vision": dtype or None if it did not run, "decoder": ...}.
    What a path really computed in, whatever it was asked."""
    seen: dict = {"vision": None, "decoder": None}
    layers = {"vision": _last_linear(vision) if vision is not None else None, "decoder": _last_linear(model, vision)}
    handles = []
    for name, layer in layers.items():
        if layer is not None:
            def hook(_module, _inputs, output, name=name):
                if seen[name] is None and isinstance(output, torch.Tensor):
                    seen[name] = output.dtype
            handles.append(layer.register_forward_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def dtype_name(dtype: torch.dtype | None) -> str | None:
    """'bf16', 'fp16', 'fp32' (None stays None): how blipnb names a dtype."""
    return None if dtype is None else {v: k for k, v in DTYPES.items()}.get(dtype, str(dtype))
