"""A tiny GIT built offline: the sample's WordPiece tokenizer, a small GitConfig (CLIP vision tower + one
transformer over image and text tokens), and a PIL CLIP image processor at the model's resolution.

Its vision tower keeps transformers' initialisation. The tiny BLIP's (large position embeddings, a fixed patch
projection; blipnb.model.tiny.blip) does not carry over: CLIP's tower normalises patch + position before its first
layer, so position embeddings at that scale drowned the patch content. On the sample, colour accuracy fell from
0.97 to 0.24 and every attribute with it."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

from ...config import ModelConfig
from .blip import saved, train_tokenizer


def build(captions: list[str], out_dir, cfg: ModelConfig, seed: int = 0, pixel_stats=None) -> Path:
    """An untrained small GIT whose tokenizer is trained on `captions`, saved to `out_dir`. As the tiny BLIP does,
    it normalises with `pixel_stats` (the train images' per-channel mean and std) when given."""
    torch.manual_seed(seed)
    tok = train_tokenizer(captions, cfg.vocab_size)
    tok.bos_token = tok.cls_token  # GIT's text starts with [CLS] (BLIP's [DEC] is unused here)
    h, layers, heads = cfg.hidden_size, cfg.num_layers, cfg.num_heads
    config = GitConfig(
        vision_config=dict(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers,
                           num_attention_heads=heads, image_size=cfg.image_size, patch_size=cfg.patch_size),
        vocab_size=len(tok), hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers,
        num_attention_heads=heads, max_position_embeddings=128,
        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id)
    model = GitForCausalLM(config)
    model.generation_config.update(bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                                   pad_token_id=tok.pad_token_id)
    size = cfg.image_size
    normalise = dict(zip(("image_mean", "image_std"), map(list, pixel_stats))) if pixel_stats else {}
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                            **normalise)
    return saved(model, GitProcessor(image_processor=image_processor, tokenizer=tok), out_dir)
