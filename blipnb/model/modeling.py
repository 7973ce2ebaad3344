"""Load a captioner and its processor from the hub or a local dir, or build a tiny one from scratch offline."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from ..errors import ModelUnavailable, ParameterError, offline_hint
from ..runtime.captioner import load_captioner
from ..runtime.families import UnsupportedFamily, family_named, family_of


def load_model(model_id: str | Path, attn_implementation: str = "sdpa", device: str | None = None):
    """Load (model, processor) of any supported family (blipnb.runtime.families) from a hub id or a local
    directory; safetensors only, never remote code. attn_implementation sdpa is blipnb's patch on BLIP and
    transformers' own SDPA elsewhere."""
    model_id = str(model_id)
    local = Path(model_id).exists()
    try:
        model, processor = load_captioner(model_id, attn_implementation)
    except UnsupportedFamily as e:
        raise ModelUnavailable(str(e)) from None
    except (OSError, ValueError) as e:  # no such folder or hub id, or a folder without a model
        where = f"the local directory {model_id!r}" if local else f"the hub model {model_id!r}"
        hint = "" if local else f" {offline_hint()}, or point model_id at a local copy."
        raise ModelUnavailable(f"could not load {where}: {str(e).splitlines()[0]}.{hint}") from e
    if attn_implementation == "sdpa" and "sdpa_patch" in family_of(model).fast_paths:
        from .sdpa import enable_sdpa  # our own patch: HF's BLIP has no SDPA path

        enable_sdpa(model)
    if device:
        model.to(device)
    return model, processor


def prepare_for_training(model, freeze_vision: bool = False, label_smoothing: float = 0.0):
    """Freeze the vision tower if asked and set the decoder's label smoothing (BLIP used 0.1; BLIP's decoder
    alone has the setting). A tiny model built from scratch keeps its patch projection fixed (blipnb.model.tiny
    says why)."""
    from .tiny import FIXED_PATCH_PROJECTION, patch_projection

    family = family_of(model)
    vision = family.vision_tower(model)
    vision.requires_grad_(not freeze_vision)
    if getattr(model.config.vision_config, FIXED_PATCH_PROJECTION, False):
        patch_projection(vision).requires_grad_(False)
    if family.name != "blip":
        if label_smoothing:
            raise ParameterError(f"parameter 'label_smoothing' applies to BLIP only (its decoder has the setting), "
                                 f"not {family.title}: leave it 0")
        return model
    model.config.text_config.label_smoothing = label_smoothing
    model.text_decoder.label_smoothing = label_smoothing  # read at forward time, set at init
    return model


def count_parameters(model) -> dict:
    """Total and trainable parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "trainable_share": trainable / total if total else 0.0}


def default_device() -> str:
    """cuda if available, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def start_model(cfg, ds):
    """The model training starts from: a tiny captioner of cfg.model.family built from the train captions and
    normalising with the train images' pixel statistics (saved as the run's base model, the baseline 03 compares
    against), or `model_id` from the hub or a local dir. Settings that do not apply to its family fail here, in
    one line. Returns (model, processor)."""
    from .. import runs
    from ..data.stats import channel_stats
    from ..schema import CAPTIONS
    from .tiny import build_tiny

    if cfg.model.from_scratch:
        captions = [c for caps in ds["train"][CAPTIONS] for c in caps]
        stats = channel_stats(ds["train"])
        print(f"a tiny {family_named(cfg.model.family).title} from scratch, normalising pixels (r, g, b) with the "
              f"train images' mean {stats[0]} and std {stats[1]}")
        path = build_tiny(cfg.model.family, captions, Path(cfg.run_dir) / runs.BASE_MODEL_DIR, cfg.model,
                          seed=cfg.train.seed, pixel_stats=stats)
    else:
        path = cfg.model.model_id
    model, processor = load_model(path, attn_implementation=cfg.model.attn_implementation)
    check_family_settings(cfg, family_of(model))
    prepare_for_training(model, freeze_vision=cfg.train.vision_frozen, label_smoothing=cfg.train.label_smoothing)
    return model, processor


def check_family_settings(cfg, family) -> None:
    """A ParameterError, in one line, for a setting of `cfg` that `family` cannot take: a BLIP-only fast path, a
    decoding it cannot run."""
    try:
        for name in ("shared_vision", "cache_embeddings", "pixel_cache"):
            if getattr(cfg.train, name):
                family.check_fast_path(name)
        family.check_decoding(cfg.generation)
    except UnsupportedFamily as e:
        raise ParameterError(str(e)) from None


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """Put `module` in eval mode for the block, then restore the train/eval mode it had."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
