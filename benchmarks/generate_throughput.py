"""Caption generation throughput: HF `generate` (eager attention, fp32) at batch 1 and 64 against blipnb's
batched path (SDPA, bf16 autocast as blipnb.model.generation runs it) at batch 64-256, beam 3 and 5, <= 20 tokens.

    python benchmarks/generate_throughput.py --out results.json         # BLIP base architecture on a GPU
    python benchmarks/generate_throughput.py --tiny --steps 1           # tiny BLIP on CPU (fp32 only)

Pixels are synthetic and already on the device: preprocessing is measured by benchmarks/data_throughput.py.
A random-init model rarely emits [SEP], so nearly every caption runs the full 20 tokens (the worst case).
"""
from __future__ import annotations

import time

import torch
from common import (
    Results,
    add_repo_to_path,
    blip_config,
    build_model,
    free,
    parser,
    peak_memory_gb,
    pick_device,
    reset_peak_memory,
    sync,
)

add_repo_to_path()
from blipnb.config import GenerationConfig  # noqa: E402  (after add_repo_to_path)
from blipnb.model.precision import autocast  # noqa: E402

MAX_NEW_TOKENS = 20  # the BLIP paper's caption length
BEAMS = (3, 5)


def variants(gpu: bool) -> list[tuple]:
    """(name, attention, precision, weights dtype, batch size): baselines first."""
    hf = ("hf_eager_fp32", "eager", "fp32", torch.float32)
    if gpu:
        fast = [("blipnb_sdpa_bf16", "sdpa", "bf16", torch.float32, b) for b in (64, 128, 256)]
        return [(*hf, 1), (*hf, 64), *fast, ("blipnb_sdpa_bf16_weights", "sdpa", "bf16", torch.bfloat16, 256)]
    fast = ("blipnb_sdpa_fp32", "sdpa", "fp32", torch.float32)
    return [(*hf, 1), (*hf, 16), (*fast, 16), (*fast, 32)]


def measure(model, config, device, precision: str, batch: int, beams: int, batches: int,
            warmup: bool = True) -> dict:
    """Images/s over `batches` generate calls, after one warm-up call."""
    vc = config.vision_config
    dtype = next(model.parameters()).dtype
    pixels = torch.randn(batch, 3, vc.image_size, vc.image_size, device=device, dtype=dtype)
    kwargs = GenerationConfig(num_beams=beams, max_new_tokens=MAX_NEW_TOKENS).generate_kwargs()
    with torch.inference_mode(), autocast(device, precision):
        if warmup:
            model.generate(pixel_values=pixels, **kwargs)
        sync(device)
        start = time.perf_counter()
        lengths = []
        for _ in range(batches):
            out = model.generate(pixel_values=pixels, **kwargs)
            lengths.append(out.shape[1] - 1)  # minus the [DEC] bos
        sync(device)
    seconds = time.perf_counter() - start
    return {"images": batch * batches, "seconds": seconds, "images_per_s": batch * batches / seconds,
            "new_tokens": max(lengths)}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=float, default=None, help="skip what is left after this many seconds")
    args = p.parse_args()
    device = pick_device(args)
    gpu = device.type == "cuda"
    batches = args.steps or 2
    config = blip_config(args.tiny)
    model_name = "tiny BLIP" if args.tiny else "BLIP base (BlipConfig(), random init)"
    results = Results("generate_throughput", args, device, model=model_name, max_new_tokens=MAX_NEW_TOKENS)
    models: dict = {}
    baseline: dict = {}
    for name, attn, precision, weights, batch in variants(gpu):
        for beams in BEAMS:
            label = f"{name}_b{batch}_beam{beams}"
            if args.budget_s is not None and results.elapsed() > args.budget_s:
                results.skip(label, f"time budget of {args.budget_s:.0f} s spent")
                continue
            key = (attn, weights)
            if key not in models:
                models.clear()
                free(device)
                models[key] = build_model(config, device, attn).to(weights).eval()
                # Once per model: lazy imports and the allocator's first blocks stay out of the timings.
                measure(models[key], config, device, precision, 1, 1, 1, warmup=False)
            reset_peak_memory(device)
            n = 8 if batch == 1 and gpu else batches  # batch 1 is noisy and fast to repeat
            row = {"name": label, "attn": attn, "precision": precision, "batch": batch, "num_beams": beams,
                   "weights": str(weights).split(".")[-1],
                   **measure(models[key], config, device, precision, batch, beams, n, warmup=gpu or n > 1)}
            row["peak_mem_gb"], row["peak_mem_kind"] = peak_memory_gb(device)
            if name.startswith("hf_"):
                baseline.setdefault((beams, batch), row["images_per_s"])
            for b in (1, 64 if gpu else 16):
                ref = baseline.get((beams, b))
                row[f"ratio_to_hf_b{b}"] = row["images_per_s"] / ref if ref else None
            results.add(row)
    results.save()


if __name__ == "__main__":
    main()
