"""Training throughput of BLIP captioning, in one run on one device: the seed project's configuration, plain
HF bf16, and blipnb's fast, shared-vision and frozen-vision paths. Pairs/s, MFU, peak memory, ratio to seed.

    python benchmarks/train_throughput.py --out results.json            # BLIP base architecture on a GPU
    python benchmarks/train_throughput.py --tiny --steps 1              # tiny BLIP on CPU (a smoke run)

Synthetic data (random pixels and token ids, already on the device): this measures the model step, not the
loader; benchmarks/data_throughput.py measures what the loader can feed.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch
from common import (
    SEQ_LEN,
    Results,
    add_repo_to_path,
    blip_config,
    build_model,
    free,
    measured_peak_flops,
    parser,
    peak_memory_gb,
    pick_device,
    reset_peak_memory,
    sync,
)

add_repo_to_path()
from blipnb.model.precision import dtype_name, observed_dtypes  # noqa: E402
from blipnb.training import forward_loss  # noqa: E402  (after add_repo_to_path)

# name, attention, precision, gradient checkpointing, path, images per step, captions per image, compile
GPU_CONFIGS = [
    ("seed_fp16_ckpt_b8", "eager", "fp16", True, "pairs", 8, 1, False),  # the project blipnb replaces
    ("hf_bf16_b64", "eager", "bf16", False, "pairs", 64, 1, False),  # plain HF BLIP
    # The notebooks' defaults (batch 8, SDPA) on a 16 GB fp16 card: does dropping checkpointing still fit?
    ("defaults_sdpa_fp16_ckpt_b8", "sdpa", "fp16", True, "pairs", 8, 1, False),
    ("defaults_sdpa_fp16_b8", "sdpa", "fp16", False, "pairs", 8, 1, False),
    ("fast_sdpa_bf16_b64", "sdpa", "bf16", False, "pairs", 64, 1, False),
    ("fast_sdpa_bf16_b128", "sdpa", "bf16", False, "pairs", 128, 1, False),
    ("shared_sdpa_bf16_32x5", "sdpa", "bf16", False, "shared", 32, 5, False),
    ("shared_sdpa_bf16_64x5", "sdpa", "bf16", False, "shared", 64, 5, False),
    ("shared_sdpa_bf16_128x5", "sdpa", "bf16", False, "shared", 128, 5, False),  # gpu_large.yaml's batch
    ("frozen_cached_bf16_b256", "sdpa", "bf16", False, "frozen", 256, 1, False),
    ("frozen_cached_bf16_64x5", "sdpa", "bf16", False, "frozen", 64, 5, False),
    # Compiled last: each pays a warm-up, reported separately.
    ("fast_sdpa_bf16_b128_compile", "sdpa", "bf16", False, "pairs", 128, 1, True),
    ("shared_sdpa_bf16_128x5_compile", "sdpa", "bf16", False, "shared", 128, 5, True),  # gpu_large.yaml
]
# CPU: fp32 only (fp16/bf16 are GPU formats here); compile only with --compile.
CPU_CONFIGS = [
    ("seed_fp32_ckpt_b8", "eager", "fp32", True, "pairs", 8, 1, False),
    ("hf_fp32_b32", "eager", "fp32", False, "pairs", 32, 1, False),
    ("fast_sdpa_fp32_b32", "sdpa", "fp32", False, "pairs", 32, 1, False),
    ("shared_sdpa_fp32_8x4", "sdpa", "fp32", False, "shared", 8, 4, False),
    ("frozen_cached_fp32_b32", "sdpa", "fp32", False, "frozen", 32, 1, False),
    ("frozen_cached_fp32_8x4", "sdpa", "fp32", False, "frozen", 8, 4, False),
    ("fast_sdpa_fp32_b32_compile", "sdpa", "fp32", False, "pairs", 32, 1, True),
    ("shared_sdpa_fp32_8x4_compile", "sdpa", "fp32", False, "shared", 8, 4, True),
]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def synthetic_batch(config, device, path: str, n_images: int, per_image: int, embeds_dtype) -> dict:
    """Random pixels (or cached embeddings) and full-length random captions, as the collator shapes them."""
    g = torch.Generator(device="cpu").manual_seed(0)
    n = n_images * per_image
    tc, vc = config.text_config, config.vision_config
    ids = torch.randint(1000 if tc.vocab_size > 2000 else 6, tc.vocab_size - 1, (n, SEQ_LEN), generator=g)
    ids[:, 0] = tc.bos_token_id
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    pixels = torch.randn(n_images, 3, vc.image_size, vc.image_size, generator=g)
    if path == "frozen":  # the vision tower's output, cached once per image in the training precision
        tokens = (vc.image_size // vc.patch_size) ** 2 + 1
        batch["image_embeds"] = torch.randn(n_images, tokens, vc.hidden_size, generator=g).to(embeds_dtype)
    else:
        batch["pixel_values"] = pixels
    if per_image > 1:
        batch["image_index"] = torch.arange(n_images).repeat_interleave(per_image)
    return {k: v.to(device) for k, v in batch.items()}


def count_flops(model, batch, device, autocast) -> float:
    """FLOPs of one forward+backward, counted by torch (model FLOPs: no recomputation, no compile)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with autocast():
            loss = forward_loss(model, batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    sync(device)
    return float(counter.get_total_flops())


def computed_in(seen: dict) -> str:
    """One dtype name when the vision tower and the decoder agree, else both ("-" for a part that did not run)."""
    names = {part: dtype_name(dtype) or "-" for part, dtype in seen.items()}
    ran = {n for n in names.values() if n != "-"}
    return ran.pop() if len(ran) == 1 else f"vision {names['vision']}, decoder {names['decoder']}"


def run_config(spec, config, device, steps: int, peak: float, compile_: bool) -> dict:
    name, attn, precision, ckpt, path, n_images, per_image, compiled = spec
    reset_peak_memory(device)
    model = build_model(config, device, attn).train()
    dtype = DTYPES[precision]
    if path == "frozen":
        model.vision_model.requires_grad_(False)
    batch = synthetic_batch(config, device, path, n_images, per_image, dtype)

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    flops = count_flops(model, batch, device, autocast)
    if ckpt:  # as the Trainer's gradient_checkpointing=True does
        (getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable)()
    if compiled:
        # What blipnb's Trainer does: the whole forward when batches are pairs (TrainingArguments'
        # torch_compile), the vision tower in place when forward_loss calls it directly (shared vision).
        torch._dynamo.reset()
        (model.vision_model if path == "shared" else model).compile(dynamic=False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step():
        with autocast():
            loss = forward_loss(model, batch)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    start = time.perf_counter()
    with observed_dtypes(model, model.vision_model) as seen:  # what the step computed in, not what it was asked
        step()
    sync(device)
    first_step_s = time.perf_counter() - start
    for _ in range(2 if steps > 1 else 0):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    step_s = (time.perf_counter() - start) / steps
    mem, mem_kind = peak_memory_gb(device)
    pairs = n_images * per_image
    row = {"name": name, "attn": attn, "precision": precision, "gradient_checkpointing": ckpt, "path": path,
           "compile": compiled, "images_per_step": n_images, "pairs_per_step": pairs, "steps": steps,
           "step_s": step_s, "pairs_per_s": pairs / step_s, "images_per_s": n_images / step_s,
           "flops_per_pair": flops / pairs, "mfu": flops / step_s / peak, "peak_mem_gb": mem,
           "peak_mem_kind": mem_kind, "first_step_s": first_step_s,
           "warmup_s": max(0.0, first_step_s - step_s) if compiled else None, "final_loss": float(loss),
           # "bf16" where both towers computed in bf16; "vision fp32, decoder bf16" where they differ ("-": not run)
           "compute_dtype": computed_in(seen)}
    return row


def precision_check(config, device, steps: int) -> dict:
    """bf16 autocast vs fp32 losses over the same batches from the same init: does bf16 track fp32?"""
    losses = {}
    tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")  # a true fp32 reference, not TF32
    torch.backends.cudnn.allow_tf32 = False
    for precision in ("fp32", "bf16"):
        model = build_model(config, device, "sdpa").train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        losses[precision] = []
        for s in range(steps):
            batch = synthetic_batch(config, device, "pairs", 8, 1, torch.float32)
            batch["pixel_values"] += 0.01 * s  # another batch each step, the same batches in both runs
            bf16 = precision == "bf16"
            with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                loss = forward_loss(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses[precision].append(loss.item())
        del model, opt
        free(device)
    torch.set_float32_matmul_precision(tf32[0])
    torch.backends.cudnn.allow_tf32 = tf32[1]
    rel = [abs(a - b) / abs(a) for a, b in zip(losses["fp32"], losses["bf16"], strict=True)]
    return {"steps": steps, "batch": 8, "lr": 1e-4, "fp32_losses": losses["fp32"],
            "bf16_losses": losses["bf16"], "max_rel_diff": max(rel)}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="include the torch.compile configurations (default: on a GPU yes, on CPU no)")
    p.add_argument("--only", default=None, help="comma-separated configuration names to run")
    p.add_argument("--budget-s", type=float, default=None,
                   help="skip the remaining configurations once this many seconds are spent")
    p.add_argument("--precision-check-steps", type=int, default=None,
                   help="steps of the bf16-vs-fp32 loss check (0: off)")
    args = p.parse_args()
    device = pick_device(args)
    gpu = device.type == "cuda"
    steps = args.steps or (10 if gpu else 5)
    compile_ = args.compile if args.compile is not None else gpu
    if gpu:
        from blipnb.model.precision import enable_tf32

        enable_tf32()
    config = blip_config(args.tiny)
    peak = measured_peak_flops(device)
    model_name = "tiny BLIP" if args.tiny else "BLIP base (BlipConfig(), random init)"
    results = Results("train_throughput", args, device, model=model_name, seq_len=SEQ_LEN, peak=peak)
    check_steps = args.precision_check_steps if args.precision_check_steps is not None else (10 if gpu else 2)
    if check_steps > 0:  # first: short, and wanted whatever the budget
        results.data["precision_check"] = precision_check(config, device, check_steps)
        results.save()
    specs = GPU_CONFIGS if gpu else CPU_CONFIGS
    only = set(args.only.split(",")) if args.only else None
    seed_rate = None
    for spec in specs:
        name = spec[0]
        if only is not None and name not in only:
            continue
        if spec[7] and not compile_:
            results.skip(name, "compile off (--compile to include)")
            continue
        if args.budget_s is not None and results.elapsed() > args.budget_s:
            results.skip(name, f"time budget of {args.budget_s:.0f} s spent")
            continue
        try:
            row = run_config(spec, config, device, steps, peak["flops_per_s"], compile_)
            free(device)  # the model and its optimizer state died with run_config
        except torch.OutOfMemoryError as e:
            free(device)
            results.skip(name, f"out of memory: {str(e).splitlines()[0]}")
            continue
        if name.startswith("seed"):
            seed_rate = row["pairs_per_s"]
        row["ratio_to_seed"] = row["pairs_per_s"] / seed_rate if seed_rate else None
        results.add(row)
    results.save()


if __name__ == "__main__":
    main()
