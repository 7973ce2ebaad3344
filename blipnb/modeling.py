"""Load BLIP and its processor from the hub or a local dir, or build a tiny one from scratch offline."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

from .config import ModelConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
SAMPLE_PRESET = "notebooks/params/sample.yaml"


class ModelUnavailable(RuntimeError):
    """The model could not be loaded (e.g. no hub access); the message says what to do instead."""


def load_model(model_id: str | Path, attn_implementation: str = "sdpa", device: str | None = None):
    """Load (model, processor) from a hub id or a local directory; safetensors only, never remote code."""
    model_id = str(model_id)
    try:
        processor = _load_processor(model_id)
        model = BlipForConditionalGeneration.from_pretrained(model_id, use_safetensors=True)
    except OSError as e:
        local = Path(model_id).exists()
        where = f"the local directory {model_id!r}" if local else f"the hub model {model_id!r}"
        hint = "" if local else (f" There is no Hugging Face hub access from here: run the offline sample preset"
                                 f" instead (papermill ... -f {SAMPLE_PRESET}), or point model_id at a local copy.")
        raise ModelUnavailable(f"could not load {where}: {str(e).splitlines()[0]}.{hint}") from e
    if attn_implementation == "sdpa":
        from .fast import enable_sdpa  # our own patch: HF's BLIP has no SDPA path

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


def train_tokenizer(captions: Iterable[str], vocab_size: int):
    """A BERT-style WordPiece tokenizer over `captions`, with [DEC] as bos, [SEP] as eos and [PAD] as pad.

    The vocabulary is the specials, every character (word-initial and ## continuation), then whole words by
    frequency (ties by spelling) up to `vocab_size`: any word still tokenizes, and the same captions always give
    the same ids. (tokenizers' WordPieceTrainer breaks ties in hash order, so two runs on the same captions gave
    different vocabularies, and therefore different models.)
    """
    from collections import Counter

    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertTokenizer

    normalize, split = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for c in captions for w, _ in split.pre_tokenize_str(normalize.normalize_str(c)))
    chars = sorted({ch for w in words for ch in w})
    tokens = list(SPECIAL_TOKENS) + chars + [f"##{ch}" for ch in chars]
    tokens += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    tokens = list(dict.fromkeys(tokens))[: max(vocab_size, 2 * len(chars) + len(SPECIAL_TOKENS))]
    # BertTokenizer(vocab_file=...) silently ignores the file in transformers 5.x; pass the dict.
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True, bos_token="[DEC]",
                        eos_token="[SEP]", model_max_length=512)
    assert tok.convert_tokens_to_ids("[DEC]") != tok.unk_token_id, "tokenizer lost its vocabulary"
    return tok


def build_tiny_blip(captions: Iterable[str], out_dir: str | Path, cfg: ModelConfig, seed: int = 0) -> Path:
    """Build an untrained small BLIP with a tokenizer trained on `captions`, save it to `out_dir`, return the path.

    Saved with save_pretrained so it loads through the same `load_model` path as a hub model.
    """
    from transformers import BlipImageProcessorPil

    torch.manual_seed(seed)
    tok = train_tokenizer(captions, cfg.vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("[DEC]", "[SEP]", "[PAD]")}
    h, layers, heads = cfg.hidden_size, cfg.num_layers, cfg.num_heads
    config = BlipConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers,
                         num_attention_heads=heads, encoder_hidden_size=h, max_position_embeddings=128,
                         bos_token_id=ids["[DEC]"], sep_token_id=ids["[SEP]"], eos_token_id=ids["[SEP]"],
                         pad_token_id=ids["[PAD]"]),
        # The vision config's initializer_range defaults to 1e-10, which stalls training from scratch.
        vision_config=dict(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers, num_attention_heads=heads,
                           image_size=cfg.image_size, patch_size=cfg.patch_size, initializer_range=0.02),
        projection_dim=h,
    )
    model = BlipForConditionalGeneration(config)
    image_processor = BlipImageProcessorPil(size={"height": cfg.image_size, "width": cfg.image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tok)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def prepare_for_training(model, freeze_vision: bool = False, label_smoothing: float = 0.0):
    """Freeze the vision tower if asked and set the decoder's label smoothing (BLIP used 0.1)."""
    model.vision_model.requires_grad_(not freeze_vision)
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
    """The model training starts from: a tiny BLIP built from the train captions (saved as the run's base model,
    the baseline 03 compares against), or `model_id` from the hub or a local dir. Returns (model, processor)."""
    from . import runs
    from .data import CAPTIONS

    if cfg.model.from_scratch:
        captions = [c for caps in ds["train"][CAPTIONS] for c in caps]
        path = build_tiny_blip(captions, Path(cfg.run_dir) / runs.BASE_MODEL_DIR, cfg.model, seed=cfg.train.seed)
    else:
        path = cfg.model.model_id
    model, processor = load_model(path, attn_implementation=cfg.model.attn_implementation)
    prepare_for_training(model, freeze_vision=cfg.train.freeze_vision, label_smoothing=cfg.train.label_smoothing)
    return model, processor
