"""finetune_method="lora": peft LoRA adapters on BLIP, trained through the Trainer, merged into a plain model at
export.

Targets. PEFT ships no default target modules for BLIP v1, so blipnb names them: lora_targets=auto takes the
family's own (blipnb.runtime.families), and for BLIP "query,value" adapts the text decoder: HF's BLIP uses one class, BlipTextSelfAttention, for both the
decoder's causal self-attention (`...layer.N.attention.self.{query,value}`) and its cross-attention to the image
(`...layer.N.crossattention.self.{query,value}`), so these two names reach both, as LoRA's paper adapts W_q and
W_v. The vision tower has no query/value layers: its attention projection is one fused Linear, `qkv`
(`vision_model.encoder.layers.N.self_attn.qkv`), adapted only when named. Every weight that is not an adapter
is frozen, so without qkv the vision tower stays as it was (and its embeddings can be cached).

Why get_peft_model's wrapper and not inject_adapter_in_model: both replace the Linear layers in place, so the
caller's `model`, `model.vision_model` and `model.text_decoder` (forward_loss's shared-vision and cached-embedding
paths) run the adapters either way (PeftModel forwards attribute lookups to the wrapped model). The wrapper is
what the Trainer knows: its checkpoints hold the adapter alone (small), and load_best_model_at_end and
resume_from_checkpoint load adapters back; merge_and_unload then leaves the caller's object a plain model.
"""
from __future__ import annotations

import warnings

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ..config import TrainConfig, did_you_mean
from ..errors import ParameterError
from ..runtime.families import family_of


def lora_targetable(model: torch.nn.Module) -> list[str]:
    """The short names of the layers LoRA can adapt in `model`: its Linear layers, except a weight tied to
    another (BLIP's LM head shares the word embeddings: merging into it would change the embeddings too)."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    return sorted({name.rpartition(".")[2] for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and seen[id(m.weight)] == 1})


def check_lora_targets(model: torch.nn.Module, targets: list[str]) -> None:
    """A ParameterError naming lora_targets and the names that exist, for each target no layer has; peft
    itself only fails when no target matches at all."""
    known = lora_targetable(model)
    # peft matches a list entry against the full module name or its dotted suffix; the layer names are suffixes
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
             and n.rpartition(".")[2] in known]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if not missing:
        return
    raise ParameterError(f"parameter 'lora_targets' names no layer of {type(model).__name__}: "
                         f"{did_you_mean(missing, known)}. "
                         f"Layers LoRA can adapt here: {', '.join(known)}")


def lora_targets(model, t: TrainConfig) -> list[str]:
    """The layer names cfg.train.lora_targets names; auto is the model family's own (blipnb.runtime.families)."""
    return t.lora_target_modules(family_of(model).lora_targets)


def lora_config(model, t: TrainConfig) -> LoraConfig:
    """The peft LoraConfig of cfg.train for `model`: rank, alpha, dropout and target layer names; biases stay
    frozen."""
    # auto adapts the language side only: the families' default names (q_proj, ...) are also layers of some vision
    # towers, which then stay frozen as lora's vision_frozen says; targets named explicitly reach every match.
    vision = family_of(model).vision_path.replace(".", r"\.")
    exclude = rf"{vision}\..*" if t.lora_targets == "auto" else None
    return LoraConfig(r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                      target_modules=lora_targets(model, t), exclude_modules=exclude, bias="none")


def apply_lora(model, t: TrainConfig) -> PeftModel:
    """Wrap a loaded BlipForConditionalGeneration in LoRA adapters (in place: `model` itself runs them), their
    initialisation seeded by cfg.train.seed; every other weight is frozen."""
    if is_lora(model):
        raise ValueError("the model already carries LoRA adapters")
    check_lora_targets(model, lora_targets(model, t))
    # lora_A starts random: seeded here, or the adapters (and every step after the first) would depend on what
    # the process drew before (the Trainer seeds only once it is built); a forked RNG leaves the caller's stream.
    with torch.random.fork_rng(), warnings.catch_warnings():
        torch.manual_seed(t.seed)
        # peft 0.21 probes `is_gradient_checkpointing`, deprecated in transformers 5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return get_peft_model(model, lora_config(model, t))


def is_lora(model) -> bool:
    """Whether `model` is a peft-wrapped model (as build_trainer hands it to the Trainer with lora)."""
    return isinstance(model, PeftModel)


def lora_layers(model) -> list[str]:
    """Full names of the layers that carry adapters (empty once merged)."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model() if is_lora(model) else model
    return [name for name, m in base.named_modules() if isinstance(m, LoraLayer)]


def merge_lora(model: PeftModel):
    """Fold the adapters into the weights and drop them: returns the wrapped model, a plain
    BlipForConditionalGeneration (the same object the caller passed to apply_lora) whose state_dict has no
    peft keys and whose weights are all trainable again, as from_pretrained gives them."""
    merged = model.merge_and_unload()
    merged.requires_grad_(True)
    return merged
