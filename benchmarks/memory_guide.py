"""The memory guide (docs/results.md), computed: which training settings fit BLIP base and large on 8, 16, 24 and 80 GB.

Computed, not measured on a GPU:
- static memory from parameter counts: fp32 weights (the Trainer keeps fp32 master weights under bf16/fp16
  autocast), plus fp32 gradients and two fp32 AdamW moments for the trainable parameters;
- activation memory per (image, caption) pair: the bytes of the tensors autograd saves for the backward pass,
  counted with torch.autograd.graph.saved_tensors_hooks during one real forward at batch 1 on CPU (384 px, a
  24-token caption), under bf16 autocast or fp32;
- a fixed reserve for the CUDA context, the allocator's fragmentation and temporaries (RESERVE_GB).
Max batch = (card - reserve - static) / activations per pair, per device, rounded down.

    python benchmarks/memory_guide.py --out benchmarks/results/memory_guide.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import torch

CARDS_GB = (8, 16, 24, 80)
RESERVE_GB = 1.5  # CUDA context (~0.5 GB), allocator fragmentation and temporaries
SEQ_LEN = 24
LARGE_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
SETTINGS = (  # name, precision, activation checkpointing, what trains
    ("full, fp32", "fp32", False, "full"),
    ("full, bf16", "bf16", False, "full"),
    ("full, bf16, checkpointing", "bf16", True, "full"),
    ("freeze_vision, bf16", "bf16", False, "freeze_vision"),
    ("lora (query,value r16), bf16", "bf16", False, "lora"),
)


def build(large: bool):
    from transformers import BlipConfig, BlipForConditionalGeneration

    config = BlipConfig(vision_config=LARGE_VISION if large else {})
    torch.manual_seed(0)
    return BlipForConditionalGeneration(config).train()


def set_trainable(model, how: str):
    model.requires_grad_(how == "full")
    if how == "freeze_vision":
        model.text_decoder.requires_grad_(True)
    if how == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        model = inject_adapter_in_model(LoraConfig(r=16, lora_alpha=32, target_modules=["query", "value"]), model)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
    return model


def saved_bytes(model, precision: str, checkpointing: bool) -> int:
    """Bytes autograd keeps for backward after one forward of one (image, caption) pair."""
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    size = model.config.vision_config.image_size
    pixels = torch.randn(1, 3, size, size)
    ids = torch.randint(1000, 2000, (1, SEQ_LEN))
    seen: dict[int, int] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            try:
                key = t.untyped_storage().data_ptr()
                seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
            except (RuntimeError, NotImplementedError):
                pass
        return t

    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        out = model(pixel_values=pixels, input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)
    del out
    # Weights are saved too (for matmul backward) but are already counted as static memory.
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    if checkpointing:
        model.gradient_checkpointing_disable()
    return sum(n for k, n in seen.items() if k not in weights)


def static_bytes(model) -> tuple[int, int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable, 4 * total + (4 + 8) * trainable


def max_batch(card_gb: float, static: int, per_pair: int) -> int | None:
    free = card_gb * 1e9 - RESERVE_GB * 1e9 - static
    return None if free <= per_pair else math.floor(free / per_pair)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--models", default="base,large")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    rows = []
    for name in args.models.split(","):
        for setting, precision, checkpointing, how in SETTINGS:
            model = set_trainable(build(large=name == "large"), how)
            total, trainable, static = static_bytes(model)
            per_pair = saved_bytes(model, precision, checkpointing)
            row = {"model": f"BLIP {name}", "setting": setting, "parameters_m": round(total / 1e6, 1),
                   "trainable_m": round(trainable / 1e6, 2), "static_gb": round(static / 1e9, 2),
                   "activations_mb_per_pair": round(per_pair / 1e6, 1),
                   **{f"max_batch_{c}gb": max_batch(c, static, per_pair) for c in CARDS_GB}}
            rows.append(row)
            print(json.dumps(row), flush=True)
            del model
    print("\n| model | setting | static GB | activations MB/pair | " + " | ".join(f"{c} GB" for c in CARDS_GB)
          + " |\n|---|---|---|---|" + "---|" * len(CARDS_GB))
    for r in rows:
        cells = [str(r[f"max_batch_{c}gb"]) if r[f"max_batch_{c}gb"] else "does not fit" for c in CARDS_GB]
        print(f"| {r['model']} | {r['setting']} | {r['static_gb']} | {r['activations_mb_per_pair']} | "
              + " | ".join(cells) + " |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"method": __doc__, "reserve_gb": RESERVE_GB, "seq_len": SEQ_LEN,
                                        "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
