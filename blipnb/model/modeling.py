"""Load BLIP and its processor from the hub or a local dir, or build a tiny one from scratch offline."""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import BlipForConditionalGeneration, BlipProcessor

from ..errors import ModelUnavailable, offline_hint


def load_model(model_id: str | Path, attn_implementation: str = "sdpa", device: str | None = None):
    """Load (model, processor) from a hub id or a local directory; safetensors only, never remote code."""
    model_id = str(model_id)
    try:
        processor = _load_processor(model_id)
        model = BlipForConditionalGeneration.from_pretrained(model_id, use_safetensors=True)
    except OSError as e:
        local = Path(model_id).exists()
        where = f"the local directory {model_id!r}" if local else f"the hub model {model_id!r}"
        hint = "" if local else f" {offline_hint()}, or point model_id at a local copy."
        raise ModelUnavailable(f"could not load {where}: {str(e).splitlines()[0]}.{hint}") from e
    if attn_implementation == "sdpa":
        from .sdpa import enable_sdpa  # our own patch: HF's BLIP has no SDPA path

        enable_sdpa(model)
    if device:
        model.to(device)
    return model, processor


def _load_processor(model_id: str) -> BlipProcessor:
    from transformers import BlipImageProcessorPil

    processor = BlipProcessor.from_pretrained(model_id)
    if not isinstance(processor.image_processor, BlipImageProcessorPil):
        # Without torchvision the torchvision-backed processor is unusable; the PIL one computes the same transform.
        try:
            import torchvision  # noqa: F401
        except Exception:
            ip = processor.image_processor
            processor.image_processor = BlipImageProcessorPil(
                size=ip.size, image_mean=ip.image_mean, image_std=ip.image_std, do_rescale=ip.do_rescale,
                rescale_factor=ip.rescale_factor, do_normalize=ip.do_normalize, do_resize=ip.do_resize,
                do_convert_rgb=True)
    return processor


def prepare_for_training(model, freeze_vision: bool = False, label_smoothing: float = 0.0):
    """Freeze the vision tower if asked and set the decoder's label smoothing (BLIP used 0.1). A tiny BLIP built
    from scratch keeps its patch projection fixed (blipnb.model.tiny says why)."""
    from .tiny import FIXED_PATCH_PROJECTION

    model.vision_model.requires_grad_(not freeze_vision)
    if getattr(model.config.vision_config, FIXED_PATCH_PROJECTION, False):
        model.vision_model.embeddings.patch_embedding.requires_grad_(False)
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
    """The model training starts from: a tiny BLIP built from the train captions and normalising with the train
    images' pixel statistics (saved as the run's base model, the baseline 03 compares against), or `model_id`
    from the hub or a local dir. Returns (model, processor)."""
    from .. import runs
    from ..data.stats import channel_stats
    from ..schema import CAPTIONS
    from .tiny import build_tiny_blip

    if cfg.model.from_scratch:
        captions = [c for caps in ds["train"][CAPTIONS] for c in caps]
        stats = channel_stats(ds["train"])
        print(f"a tiny BLIP from scratch, normalising pixels (r, g, b) with the train images' mean {stats[0]} and "
              f"std {stats[1]}")
        path = build_tiny_blip(captions, Path(cfg.run_dir) / runs.BASE_MODEL_DIR, cfg.model, seed=cfg.train.seed,
                               pixel_stats=stats)
    else:
        path = cfg.model.model_id
    model, processor = load_model(path, attn_implementation=cfg.model.attn_implementation)
    prepare_for_training(model, freeze_vision=cfg.train.vision_frozen, label_smoothing=cfg.train.label_smoothing)
    return model, processor


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module):
    """Put `module` in eval mode for the block, then restore the train/eval mode it had."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
