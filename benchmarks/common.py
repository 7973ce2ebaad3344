"""Shared by the benchmark scripts: device facts and versions, a measured peak FLOP/s, timing, model configs,
JSON written after every measurement (so a run cut short still leaves its numbers)."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

SEQ_LEN = 24  # caption tokens per pair: a full-length caption, for the FLOP and MFU figures


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--tiny", action="store_true", help="tiny BLIP on CPU, fp32 (a smoke run)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (or batches) per configuration")
    p.add_argument("--out", type=Path, default=None, help="write results JSON here")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available; cpu with --tiny)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default on CPU: 1; on shared cores thread teams stall)")
    return p


def pick_device(args) -> torch.device:
    """The device to measure on; on CPU also pins torch to --threads threads."""
    if args.device:
        device = torch.device(args.device)
    else:
        device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if args.threads or device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    return device


def device_info(device: torch.device) -> dict:
    """What ran the numbers: device name, library versions, date."""
    import transformers

    now = datetime.datetime.now(datetime.timezone.utc)
    info = {"device": str(device), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "date_utc": now.isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gb=round(props.total_memory / 1e9, 1), cuda=torch.version.cuda,
                    multiprocessors=props.multi_processor_count)
    else:
        info["name"] = platform.processor() or platform.machine() or "cpu"
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> tuple[float, str]:
    """Peak memory since the last reset: CUDA allocator on GPU; on CPU only the process's max RSS exists."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, "process_max_rss"


def measured_peak_flops(device: torch.device) -> dict:
    """Matmul FLOP/s measured here: bf16 8192^3 on a GPU, fp32 512^3 on CPU (what MFU is relative to)."""
    n, dtype, reps = (8192, torch.bfloat16, 10) if device.type == "cuda" else (512, torch.float32, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    seconds = time.perf_counter() - start
    return {"dtype": str(dtype).replace("torch.", ""), "n": n, "flops_per_s": 2 * n**3 * reps / seconds}


def blip_config(tiny: bool):
    """BLIP base's architecture (random init) for a GPU; a tiny BLIP for CPU smoke runs."""
    from transformers import BlipConfig

    if not tiny:
        return BlipConfig()
    h = 64  # seconds per script on 2 shared cores; the tests run every script once
    return BlipConfig(
        text_config={"vocab_size": 200, "hidden_size": h, "intermediate_size": 4 * h, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "encoder_hidden_size": h, "max_position_embeddings": 64,
                     "bos_token_id": 5, "sep_token_id": 3, "eos_token_id": 3, "pad_token_id": 0},
        vision_config={"hidden_size": h, "intermediate_size": 4 * h, "num_hidden_layers": 2, "image_size": 32,
                       "num_attention_heads": 4, "patch_size": 16, "initializer_range": 0.02},
        projection_dim=h)


def build_model(config, device: torch.device, attn: str, seed: int = 0):
    """A randomly initialised BLIP on `device`, with HF's eager attention or blipnb's SDPA patch."""
    from transformers import BlipForConditionalGeneration

    from blipnb.model.sdpa import enable_sdpa

    torch.manual_seed(seed)
    with torch.device(device):
        model = BlipForConditionalGeneration(config)
    return enable_sdpa(model) if attn == "sdpa" else model


def free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class Results:
    """The JSON a script writes: rewritten after every measurement."""

    def __init__(self, name: str, args, device: torch.device, **extra):
        self.path = args.out
        self.data = {"benchmark": name, "argv": sys.argv[1:], "tiny": bool(args.tiny), **device_info(device),
                     **extra, "configs": [], "skipped": []}
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def add(self, row: dict) -> None:
        self.data["configs"].append(row)
        print(json.dumps(row), flush=True)
        self.save()

    def skip(self, name: str, reason: str) -> None:
        self.data["skipped"].append({"name": name, "reason": reason})
        print(f"skipped {name}: {reason}", flush=True)
        self.save()

    def save(self) -> None:
        self.data["wall_s"] = round(self.elapsed(), 1)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def add_repo_to_path() -> None:
    """Import blipnb from this checkout even where it is not installed (the GPU machine)."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
