"""The memory guide (docs/results.md), computed: which training settings fit each captioner family blipnb supports on
8, 16, 24 and 80 GB cards, at its real checkpoint's size.

Computed, not measured on a GPU:
- static memory from exact parameter counts of the full-size model, built on the meta device: fp32 weights (the
  Trainer keeps fp32 master weights under bf16/fp16 autocast), plus fp32 gradients and two fp32 AdamW moments for
  the trainable parameters;
- activation memory: the bytes of the tensors autograd saves for the backward pass (parameters themselves
  excluded), counted with torch.autograd.graph.saved_tensors_hooks during real forwards on CPU of one image at the
  checkpoint's resolution and a 24-token caption, under bf16 autocast or fp32. Each forward runs at batch 1 and at
  batch 2: the difference is the activations per (image, caption) pair; the rest does not grow with the batch
  (mostly the bf16 copies of weights that autocast makes and saves for the backward) and is counted once per step;
- BLIP base and large run that forward at full size. Every other family runs it on depth-reduced copies and
  extrapolates per layer: one forward with every transformer stack (vision encoder, Q-Former, text decoder or
  encoder and decoder) at 1 layer (A_base), and one per stack with that stack at 2 layers (A_s); a stack's
  per-layer cost is d_s = A_s - A_base, and the full model's is A_base + sum over stacks of (L_s - 1) * d_s, with
  L_s the stack's real depth (Florence-2's DaViT: its third stage, 9 blocks; the other stages have 1 block each
  in the real model). BLIP-2's Q-Former alternates layers with and without cross-attention to the image,
  so its unit is a pair of layers (2 and 4 layers, L_s = 6 pairs);
- the image's tokens lead the text as the model's own forward takes them (the image token ids in input_ids for
  the decoder-only families); the text is the caption's 24 tokens, without the family's prompt (Florence-2's
  encoder gets its 8-token caption prompt, since its caption goes to the decoder);
- a fixed reserve for the CUDA context, the allocator's fragmentation and temporaries (RESERVE_GB).
Max batch = (card - reserve - static - per-step) / activations per pair, per device, rounded down.

    python benchmarks/memory_guide.py --out benchmarks/results/memory_guide_cpu_computed.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Callable

import torch

CARDS_GB = (8, 16, 24, 80)
RESERVE_GB = 1.5  # CUDA context (~0.5 GB), allocator fragmentation and temporaries
SEQ_LEN = 24
TEXT_IDS = (1000, 2000)  # caption token ids: ordinary tokens in every family's vocabulary
LARGE_VISION = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16)
BLIP_SETTINGS = (  # name, precision, activation checkpointing, what trains
    ("full, fp32", "fp32", False, "full"),
    ("full, bf16", "bf16", False, "full"),
    ("full, bf16, checkpointing", "bf16", True, "full"),
    ("freeze_vision, bf16", "bf16", False, "freeze_vision"),
    ("lora (query,value r16), bf16", "bf16", False, "lora"),
)
SETTINGS = (  # the other families: fp32 left out (bf16 is how they are trained)
    ("full, bf16", "bf16", False, "full"),
    ("full, bf16, checkpointing", "bf16", True, "full"),
    ("freeze_vision, bf16", "bf16", False, "freeze_vision"),
    ("lora (family defaults r16), bf16", "bf16", False, "lora"),
)


# --- the captioners at their real checkpoints' sizes ---------------------------------------------------------------

@dataclass(frozen=True)
class Captioner:
    """One family's real checkpoint: its config at any depth per stack, and one batch of its training inputs."""

    family: str  # blipnb family name
    title: str  # the checkpoint, as the table names it
    model_class: str  # transformers class the checkpoint loads as
    layers: dict[str, int]  # real depth of each transformer stack, in units
    config: Callable[[dict[str, int]], object]  # layers per stack (in layers) -> config
    inputs: Callable[[object, int], dict]  # (config, batch) -> forward kwargs
    unit: dict[str, int] = field(default_factory=dict)  # layers per repeating unit, where not 1


def caption(batch: int) -> torch.Tensor:
    """A batch of 24-token captions."""
    return torch.randint(*TEXT_IDS, (batch, SEQ_LEN))


def image_led(image_id: int, n_image: int, batch: int) -> dict:
    """input_ids with n_image image tokens before the caption, and labels on the caption only."""
    ids = torch.cat([torch.full((batch, n_image), image_id), caption(batch)], dim=1)
    labels = ids.clone()
    labels[:, :n_image] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def git_config(d):
    """microsoft/git-base: GitConfig's defaults (CLIP ViT-B/16 at 224 px, a 6-layer text transformer)."""
    from transformers import GitConfig

    return GitConfig(vision_config=dict(num_hidden_layers=d["vision"]), num_hidden_layers=d["text"])


def git_inputs(config, batch):
    """Pixels and the caption: GIT puts the image's tokens before the text itself."""
    ids = caption(batch)
    size = config.vision_config.image_size
    return {"pixel_values": torch.randn(batch, 3, size, size), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": ids}


def blip2_config(d):
    """Salesforce/blip2-opt-2.7b: Blip2Config's ViT-g and Q-Former defaults, OPT-2.7b as the text config."""
    from transformers import Blip2Config

    # image_token_index 50265 (the <image> the processor adds after OPT's 50265 tokens) is from memory of the
    # checkpoint's config.json; which id marks the image changes no byte counted here.
    text = dict(model_type="opt", hidden_size=2560, word_embed_proj_dim=2560, num_hidden_layers=d["text"],
                num_attention_heads=32, ffn_dim=10240, vocab_size=50272)
    return Blip2Config(vision_config=dict(num_hidden_layers=d["vision"]),
                       qformer_config=dict(num_hidden_layers=d["qformer"]), text_config=text, num_query_tokens=32,
                       image_token_index=50265)


def blip2_inputs(config, batch):
    """Pixels, then one image token per Q-Former query before the caption."""
    size = config.vision_config.image_size
    return {"pixel_values": torch.randn(batch, 3, size, size),
            **image_led(config.image_token_index, config.num_query_tokens, batch)}


FLORENCE2_PX = 768
FLORENCE2_PROMPT = 8  # <s>What does the image describe?</s>: the encoder's text for <CAPTION>


def florence2_config(d):
    """Florence-2 base: Florence2VisionConfig's defaults are the base DaViT; the BART text config is base's."""
    from transformers import Florence2Config

    # The checkpoint's dropout and activation_dropout (0.1; BartConfig's default activation_dropout is 0): their
    # masks are activation memory too. Its attention_dropout (0.1) is left at 0: with dropout, SDPA on CPU falls
    # back to the math kernel and keeps every attention matrix, which the fused kernels on a GPU do not.
    text = dict(model_type="bart", d_model=768, encoder_layers=d["encoder"], decoder_layers=d["decoder"],
                encoder_attention_heads=12, decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
                vocab_size=51289, max_position_embeddings=1024, dropout=0.1, activation_dropout=0.1)
    # The default image_token_id (51289) lies outside a 51289-token vocabulary; the port's embedding size is not
    # verified here, so the last id marks the image (one row, 768 parameters, at most).
    return Florence2Config(vision_config=dict(depths=[1, 1, d["vision"], 1], projection_dim=768),
                           text_config=text, image_token_id=51288)


def florence2_inputs(config, batch):
    """The encoder's image tokens and prompt; the caption as the decoder's labels."""
    stride = math.prod(config.vision_config.patch_stride)
    n_image = (FLORENCE2_PX // stride) ** 2 + 1  # one token per cell of the last stage's grid, and a pooled one
    ids = torch.cat([torch.full((batch, n_image), config.image_token_id),
                     torch.randint(*TEXT_IDS, (batch, FLORENCE2_PROMPT))], dim=1)
    return {"pixel_values": torch.randn(batch, 3, FLORENCE2_PX, FLORENCE2_PX), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": caption(batch)}


def paligemma_config(d):
    """google/paligemma-3b-pt-224: SigLIP So400m/14 at 224 px, Gemma-2B."""
    from transformers import PaliGemmaConfig

    # PaliGemmaConfig's defaults differ from the checkpoint (vision intermediate 4096, vocab 257152); these are
    # the checkpoint's. image_token_index 257152 (the id after Gemma's tokens and PaliGemma's <loc>/<seg> ones) is
    # from memory, not verified.
    vocab = 257216
    vision = dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                  num_hidden_layers=d["vision"], num_attention_heads=16, image_size=224, patch_size=14,
                  vision_use_head=False)
    text = dict(model_type="gemma", hidden_size=2048, num_hidden_layers=d["text"], num_attention_heads=8,
                num_key_value_heads=1, head_dim=256, intermediate_size=16384, vocab_size=vocab)
    return PaliGemmaConfig(vision_config=vision, text_config=text, vocab_size=vocab, projection_dim=2048,
                           hidden_size=2048, image_token_index=257152)


def paligemma_inputs(config, batch):
    """Pixels, then one image token per SigLIP patch before the caption."""
    size = config.vision_config.image_size
    n_image = config.text_config.num_image_tokens
    inputs = image_led(config.image_token_index, n_image, batch)
    # token_type_ids 0: the prefix (full attention), 1: the caption (causal), as PaliGemmaProcessor marks them
    inputs["token_type_ids"] = (inputs["labels"] != -100).long()
    return {"pixel_values": torch.randn(batch, 3, size, size), **inputs}


def smolvlm_config(d):
    """HuggingFaceTB/SmolVLM-256M-Instruct (model_type idefics3): SigLIP-B/16 at 512 px, SmolLM2-135M."""
    from transformers import Idefics3Config

    # tie_word_embeddings False: with an untied LM head the parameters come to the checkpoint's 256M (tied they
    # would be 228M); image_token_id 49190 is from memory, not verified.
    vision = dict(hidden_size=768, num_hidden_layers=d["vision"], num_attention_heads=12, intermediate_size=3072,
                  image_size=512, patch_size=16)
    text = dict(hidden_size=576, num_hidden_layers=d["text"], num_attention_heads=9, num_key_value_heads=3,
                intermediate_size=1536, vocab_size=49280, max_position_embeddings=8192, tie_word_embeddings=False)
    return Idefics3Config(vision_config=vision, text_config=text, scale_factor=4, image_token_id=49190,
                          tie_word_embeddings=False)


def smolvlm_inputs(config, batch):
    """One 512 px image: its processor splits larger images into 512 px tiles plus a downscaled whole, each
    another 64 tokens and another vision forward, so a split image costs a multiple of this."""
    size, patch = config.vision_config.image_size, config.vision_config.patch_size
    n_image = (size // patch) ** 2 // config.scale_factor ** 2
    return {"pixel_values": torch.randn(batch, 1, 3, size, size), **image_led(config.image_token_id, n_image, batch)}


CAPTIONERS = (
    Captioner("git", "GIT base", "GitForCausalLM", {"vision": 12, "text": 6}, git_config, git_inputs),
    Captioner("blip2", "BLIP-2 OPT-2.7b", "Blip2ForConditionalGeneration", {"vision": 39, "qformer": 6, "text": 32},
              blip2_config, blip2_inputs, unit={"qformer": 2}),
    Captioner("florence2", "Florence-2 base", "Florence2ForConditionalGeneration",
              {"vision": 9, "encoder": 6, "decoder": 6}, florence2_config, florence2_inputs),
    Captioner("paligemma", "PaliGemma 3B 224", "PaliGemmaForConditionalGeneration", {"vision": 27, "text": 18},
              paligemma_config, paligemma_inputs),
    Captioner("smolvlm", "SmolVLM 256M", "Idefics3ForConditionalGeneration", {"vision": 12, "text": 30},
              smolvlm_config, smolvlm_inputs),
)
FAMILY_NAMES = ("blip",) + tuple(c.family for c in CAPTIONERS)


def family(name: str):
    """blipnb's family `name`: its vision tower's path and default LoRA targets."""
    from blipnb.runtime.families import FAMILIES

    # every family module holds its constant, whether FAMILIES lists it or not
    return FAMILIES.get(name) or getattr(import_module(f"blipnb.runtime.families.{name}"), name.upper())


def build(c: Captioner, units: dict[str, int], device: str = "cpu"):
    """The captioner with each stack `units` deep, in train mode (dropout on, as in training)."""
    import transformers

    config = c.config({s: n * c.unit.get(s, 1) for s, n in units.items()})
    torch.manual_seed(0)
    with torch.device(device):
        return getattr(transformers, c.model_class)(config).train()


# --- settings ------------------------------------------------------------------------------------------------------

def lora_config(name: str):
    """blipnb's LoRA defaults (TrainConfig) on the family's default targets, the vision tower excluded."""
    from peft import LoraConfig

    from blipnb.config import TrainConfig

    t, f = TrainConfig(), family(name)
    return LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                      target_modules=f.lora_targets.split(","),
                      exclude_modules=rf"{re.escape(f.vision_path)}\..*", bias="none")


def set_trainable(model, name: str, how: str):
    """`model` trained as `how` says: everything, all but the vision tower, or LoRA adapters alone."""
    model.requires_grad_(how == "full")
    if how == "freeze_vision":
        model.requires_grad_(True)
        family(name).vision_tower(model).requires_grad_(False)
    if how == "lora":
        from peft import inject_adapter_in_model

        model = inject_adapter_in_model(lora_config(name), model)
        for pname, p in model.named_parameters():
            p.requires_grad_("lora_" in pname)
    return model


# --- counting ------------------------------------------------------------------------------------------------------

def saved_bytes(model, inputs: dict, precision: str) -> int:
    """Bytes autograd keeps for backward after one forward of `inputs`."""
    seen: dict[int, int] = {}

    def pack(t):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            try:
                key = t.untyped_storage().data_ptr()
                seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
            except (RuntimeError, NotImplementedError):
                pass
        # A detached alias keeps the storage alive (so addresses stay unique while counting) without the
        # reference cycle a node's own saved output would make with its grad_fn, which would leak every graph.
        return t.detach() if isinstance(t, torch.Tensor) else t

    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext())
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        out = model(**inputs)
    del out
    # Weights are saved too (for matmul backward) but are already counted as static memory.
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for k, n in seen.items() if k not in weights)


def activations(model, make_inputs: Callable[[object, int], dict], precision: str,
                checkpointing: bool) -> tuple[int, int]:
    """(bytes per pair, bytes per step): from the forwards at batch 1 and batch 2 of make_inputs(model, batch)."""
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(0)
    one, two = (saved_bytes(model, make_inputs(model, b), precision) for b in (1, 2))
    if checkpointing:
        model.activation_checkpointing_disable()
        # enabling made the input embeddings' output require grad; later settings on this model run without
        model.disable_input_require_grads()
    return two - one, 2 * one - two


def static_bytes(model) -> tuple[int, int, int]:
    """(parameters, trainable parameters, bytes of fp32 weights plus fp32 grads and AdamW moments of what trains)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable, 4 * total + (4 + 8) * trainable


def max_batch(card_gb: float, static: int, per_step: int, per_pair: int) -> int | None:
    """The largest per-device batch that fits a card, or None where not even one pair does."""
    free = card_gb * 1e9 - RESERVE_GB * 1e9 - static - per_step
    return None if free <= per_pair else math.floor(free / per_pair)


def row(family_name, model, setting, counts, per_pair, per_step) -> dict:
    """One row of the guide."""
    total, trainable, static = counts
    return {"family": family_name, "model": model, "setting": setting, "parameters_m": round(total / 1e6, 1),
            "trainable_m": round(trainable / 1e6, 2), "static_gb": round(static / 1e9, 2),
            "activations_mb_per_pair": round(per_pair / 1e6, 1), "per_step_gb": round(per_step / 1e9, 2),
            **{f"max_batch_{c}gb": max_batch(c, static, per_step, per_pair) for c in CARDS_GB}}


# --- rows ----------------------------------------------------------------------------------------------------------

def build_blip(large: bool):
    """BLIP base, or large (ViT-L), at full size in train mode."""
    from transformers import BlipConfig, BlipForConditionalGeneration

    config = BlipConfig(vision_config=LARGE_VISION if large else {})
    torch.manual_seed(0)
    return BlipForConditionalGeneration(config).train()


def blip_inputs(model, batch: int) -> dict:
    """Pixels at 384 px and the caption."""
    size = model.config.vision_config.image_size
    ids = caption(batch)
    return {"pixel_values": torch.randn(batch, 3, size, size), "input_ids": ids,
            "attention_mask": torch.ones_like(ids), "labels": ids}


def blip_rows() -> list[dict]:
    """BLIP base and large: one full-size forward per setting, as BLIP is small enough."""
    rows = []
    for size in ("base", "large"):
        for setting, precision, checkpointing, how in BLIP_SETTINGS:
            model = set_trainable(build_blip(large=size == "large"), "blip", how)
            per_pair, per_step = activations(model, blip_inputs, precision, checkpointing)
            rows.append(row("blip", f"BLIP {size}", setting, static_bytes(model), per_pair, per_step))
            print(json.dumps(rows[-1]), flush=True)
            del model
    return rows


def measured(c: Captioner, units: dict[str, int]) -> list[tuple[int, int]]:
    """(per pair, per step) bytes of every setting, on the captioner `units` deep."""
    model, out = build(c, units), []
    for _, precision, checkpointing, how in SETTINGS:  # lora last: it changes the model
        model = set_trainable(model, c.family, how)
        out.append(activations(model, lambda m, b: c.inputs(m.config, b), precision, checkpointing))
    return out


def extrapolated(c: Captioner) -> list[tuple[int, int]]:
    """(per pair, per step) bytes of every setting at full depth: A_base + sum over stacks of (L_s - 1) * d_s."""
    ones = {s: 1 for s in c.layers}
    base = measured(c, ones)
    full = [list(b) for b in base]
    for stack, depth in c.layers.items():
        deeper = measured(c, {**ones, stack: 2})
        for i, (a, b) in enumerate(zip(deeper, base)):
            for k in range(2):
                full[i][k] += (depth - 1) * (a[k] - b[k])
    return [tuple(f) for f in full]


def captioner_rows(c: Captioner) -> list[dict]:
    """One row per setting of SETTINGS for the captioner at its real size."""
    counts = []
    for _, _, _, how in SETTINGS:
        counts.append(static_bytes(set_trainable(build(c, c.layers, device="meta"), c.family, how)))
    rows = [row(c.family, c.title, setting, n, per_pair, per_step)
            for (setting, *_), n, (per_pair, per_step) in zip(SETTINGS, counts, extrapolated(c))]
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    """The rows as a markdown table."""
    print("\n| model | setting | static GB | per-step GB | activations MB/pair | "
          + " | ".join(f"{c} GB" for c in CARDS_GB) + " |\n|---|---|---|---|---|" + "---|" * len(CARDS_GB))
    for r in rows:
        cells = [str(r[f"max_batch_{c}gb"]) if r[f"max_batch_{c}gb"] else "does not fit" for c in CARDS_GB]
        print(f"| {r['model']} | {r['setting']} | {r['static_gb']} | {r['per_step_gb']} | "
              f"{r['activations_mb_per_pair']} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    """Compute the rows of the families --models names, print them as a table and write them to --out."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--models", default="all",
                    help=f"all, or families separated by commas: {', '.join(FAMILY_NAMES)} (blip: base and large)")
    args = ap.parse_args(argv)
    names = FAMILY_NAMES if args.models == "all" else tuple(args.models.split(","))
    unknown = [n for n in names if n not in FAMILY_NAMES]
    if unknown:
        ap.error(f"--models: no family {', '.join(unknown)}; families: {', '.join(FAMILY_NAMES)}")
    torch.set_num_threads(2)
    start, rows = time.perf_counter(), []
    if "blip" in names:
        rows += blip_rows()
    for c in CAPTIONERS:
        if c.family in names:
            rows += captioner_rows(c)
    print_table(rows)
    print(f"\n{time.perf_counter() - start:.0f} s", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"method": __doc__, "reserve_gb": RESERVE_GB, "seq_len": SEQ_LEN,
                                        "torch": torch.__version__, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
