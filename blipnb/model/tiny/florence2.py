"""A tiny Florence-2 built offline: a byte-level BPE tokenizer trained on the sample's captions (BART's special
tokens plus the <image> token Florence2Processor needs), a Florence2Config with a one- or two-stage DaViT and a
small BART, and a PIL CLIP image processor at the model's resolution.

The DaViT stages follow the real checkpoint's pattern (kernel 2*stride-1, padding stride-1, so each stage divides
the grid by its stride) with strides multiplying to cfg.patch_size. The projector emits one token per cell of the
last stage's grid plus one pooled token, which is the processor's image_seq_length. Task and <loc_*> tokens are
left out: the processor replaces <CAPTION> with its text prompt, and captions need no locations.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (BartConfig, BartTokenizer, CLIPImageProcessorPil, Florence2Config,
                          Florence2ForConditionalGeneration, Florence2Processor)

from ...config import ModelConfig
from .blip import saved

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # BART's ids 0-4, as in the real checkpoint
IMAGE_TOKEN = "<image>"
IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])  # the real checkpoint's normalisation
CAPTION_PROMPT = "What does the image describe?"  # what Florence2Processor puts in place of <CAPTION>


def train_tokenizer(captions: list[str], merges: int) -> BartTokenizer:
    """A BART byte-level BPE tokenizer: specials, 256 bytes, up to `merges` merges, then <image>."""
    # the prompt joins the corpus so the encoder's prompt is a few tokens, not 30 bytes
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(SPECIAL_TOKENS) + len(alphabet) + merges, min_frequency=2,
                                  special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator(sorted(captions) + [CAPTION_PROMPT], trainer)
    learnt = json.loads(bpe.to_str())["model"]
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learnt["merges"]]
    return BartTokenizer(vocab=learnt["vocab"], merges=pairs, model_max_length=1024,
                         extra_special_tokens={"image_token": IMAGE_TOKEN})


def _heads(dim: int, want: int) -> int:
    """The most heads, at most `want`, that divide `dim`."""
    return max(h for h in range(1, max(want, 1) + 1) if dim % h == 0)


def vision_config(cfg: ModelConfig) -> tuple[dict, int]:
    """A DaViT of two stages (strides patch_size/2, 2) or one (odd or <4 patch_size), and its grid's side."""
    p, h = cfg.patch_size, cfg.hidden_size
    strides = [p // 2, 2] if p % 2 == 0 and p >= 4 else [p]
    dims = [h // 2, h] if len(strides) == 2 else [h]
    heads = [_heads(d, cfg.num_heads * d // h) for d in dims]
    grid = cfg.image_size // p
    vision = dict(
        depths=[1] * (len(dims) - 1) + [cfg.num_layers], embed_dim=dims, num_heads=heads, num_groups=heads,
        patch_size=[2 * s - 1 for s in strides], patch_stride=strides, patch_padding=[s - 1 for s in strides],
        patch_prenorm=[False, True][: len(dims)], window_size=grid, projection_dim=h,
        max_position_embeddings=grid)
    return vision, grid


def build(captions: list[str], out_dir, cfg: ModelConfig, seed: int = 0, pixel_stats=None) -> Path:
    """An untrained small Florence-2 with a tokenizer trained on `captions`, saved to `out_dir`."""
    # pixel_stats (the train images' channel mean, std) as in the tiny BLIP; else ImageNet's, as the real model
    torch.manual_seed(seed)
    tok = train_tokenizer(list(captions), cfg.vocab_size)
    vision, grid = vision_config(cfg)
    image_tokens = grid * grid + 1  # one per cell of the last stage, and the pooled one
    h, ids = cfg.hidden_size, dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                   pad_token_id=tok.pad_token_id, decoder_start_token_id=tok.eos_token_id)
    text = BartConfig(vocab_size=len(tok), d_model=h, encoder_layers=cfg.num_layers, decoder_layers=cfg.num_layers,
                      encoder_attention_heads=cfg.num_heads, decoder_attention_heads=cfg.num_heads,
                      encoder_ffn_dim=4 * h, decoder_ffn_dim=4 * h, forced_eos_token_id=tok.eos_token_id,
                      max_position_embeddings=image_tokens + 128, **ids)
    config = Florence2Config(text_config=text.to_dict(), vision_config=vision, image_token_id=tok.image_token_id,
                             **ids)
    model = Florence2ForConditionalGeneration(config)
    model.generation_config.update(**ids)
    mean, std = map(list, pixel_stats) if pixel_stats else IMAGENET_STATS
    size = {"height": cfg.image_size, "width": cfg.image_size}
    image_processor = CLIPImageProcessorPil(size=size, crop_size=size, do_center_crop=False, resample=3,
                                            image_mean=mean, image_std=std, image_seq_length=image_tokens)
    return saved(model, Florence2Processor(image_processor=image_processor, tokenizer=tok), out_dir)
