"""A tiny BLIP-2 built offline: an OPT-style byte-level BPE tokenizer trained on the sample's captions, a small
Blip2Config (ViT, Q-Former, OPT decoder) and a PIL BLIP image processor at the model's resolution, wrapped in the
real Blip2Processor, which adds the `<image>` token and expands it into `num_query_tokens` copies before the text.

The Q-Former's query tokens start random: transformers initialises them to zeros, and identical queries get
identical outputs and gradients, so a model trained from scratch would never tell them apart (the real checkpoint
arrives pretrained). The vision tower starts as the tiny BLIP's does (readable_position; blipnb.model.tiny.blip
says why): BLIP-2's ViT is BLIP's.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (BlipImageProcessorPil, Blip2Config, Blip2ForConditionalGeneration, Blip2Processor,
                          GPT2Tokenizer)

from ...config import ModelConfig
from .blip import readable_position, saved

# OPT's special tokens at OPT's ids: <s> 0, <pad> 1, </s> 2 (its bos and eos), <unk> 3.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]
# The Q-Former's learnt queries, the image's tokens in the decoder (the real checkpoint has 32).
NUM_QUERY_TOKENS = 8


def train_tokenizer(captions: list[str], merges: int) -> GPT2Tokenizer:
    """OPT's tokenizer over `captions`: byte-level BPE (the 256 byte symbols, so any text encodes, then up to
    `merges` merges learnt from the captions), `</s>` as bos and eos, and bos prepended to every text, as OPT's
    tokenizer does. tokenizers' BpeTrainer breaks ties by ids, so the same captions give the same vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(SPECIAL_TOKENS) + len(alphabet) + merges, min_frequency=2,
                                  special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet, show_progress=False)
    bpe.train_from_iterator(sorted(captions), trainer)
    learnt = json.loads(bpe.to_str())["model"]
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in learnt["merges"]]
    return GPT2Tokenizer(vocab=learnt["vocab"], merges=pairs, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                         unk_token="<unk>", add_bos_token=True, model_max_length=512)


def build(captions: list[str], out_dir, cfg: ModelConfig, seed: int = 0, pixel_stats=None) -> Path:
    """An untrained small BLIP-2 (OPT decoder) whose tokenizer is trained on `captions`, saved to `out_dir`. As
    the tiny BLIP does, it normalises with `pixel_stats` (the train images' per-channel mean and std) when given."""
    torch.manual_seed(seed)
    size = cfg.image_size
    normalise = dict(zip(("image_mean", "image_std"), map(list, pixel_stats))) if pixel_stats else {}
    image_processor = BlipImageProcessorPil(size={"height": size, "width": size}, **normalise)
    processor = Blip2Processor(image_processor=image_processor, tokenizer=train_tokenizer(captions, cfg.vocab_size),
                               num_query_tokens=NUM_QUERY_TOKENS)
    tok = processor.tokenizer  # now holding <image>, so sized after the processor is built
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    h, layers, heads = cfg.hidden_size, cfg.num_layers, cfg.num_heads
    blocks = dict(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers, num_attention_heads=heads)
    config = Blip2Config(
        # The vision config's initializer_range defaults to 1e-10, which stalls training from scratch.
        vision_config=dict(**blocks, image_size=size, patch_size=cfg.patch_size, initializer_range=0.02),
        qformer_config=dict(**blocks, cross_attention_frequency=1),
        text_config=dict(model_type="opt", vocab_size=len(tok), hidden_size=h, word_embed_proj_dim=h, ffn_dim=4 * h,
                         num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=256, **ids),
        num_query_tokens=NUM_QUERY_TOKENS, image_token_index=tok.convert_tokens_to_ids(str(processor.image_token)),
        **ids)
    model = Blip2ForConditionalGeneration(config)
    with torch.no_grad():
        model.query_tokens.normal_(0.0, 1.0)  # see the module docstring: zeros would stay identical
    readable_position(model.vision_model, model.config.vision_config)
    model.generation_config.update(**ids)
    return saved(model, processor, out_dir)
