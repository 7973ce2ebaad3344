"""A tiny PaliGemma built offline: a Gemma-style BPE tokenizer trained on the train captions, a small
PaliGemmaConfig (SigLIP vision tower, linear projector, Gemma decoder) and a PIL SigLIP image processor at the
model's resolution, wrapped in the real PaliGemmaProcessor (which adds `<image>` and the `<locNNNN>`/`<segNNN>`
tokens to the tokenizer, so the model's vocabulary is sized after the processor is built)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import (GemmaTokenizer, PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                          SiglipImageProcessorPil)

from ...config import ModelConfig
from .blip import saved

# Gemma's own order: pad 0, eos 1, bos 2, unk 3, mask 4.
SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def train_tokenizer(captions: list[str], vocab_size: int) -> GemmaTokenizer:
    """A GemmaTokenizer whose BPE vocabulary and merges are learnt from `captions`: the special tokens, the 256
    byte-fallback tokens (as Gemma has: any text still encodes, nothing becomes <unk>), then up to `vocab_size`
    learnt tokens, "\\n" among them (PaliGemma's prompt ends with it).

    GemmaTokenizer turns spaces into "▁" and runs BPE over the whole text, so merges are learnt within
    "▁"-led words only (as SentencePiece does), never across a word boundary. Unlike its WordPieceTrainer
    (blip.train_tokenizer), tokenizers' BpeTrainer gives the same vocabulary for the same captions in every
    process, so it is used as it is.
    """
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    bpe.train_from_iterator(captions, trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=["\n"],
                                                          show_progress=False))
    learnt = json.loads(bpe.to_str())["model"]
    learnt_tokens = sorted(learnt["vocab"], key=learnt["vocab"].get)
    tokens = SPECIAL_TOKENS + [f"<0x{b:02X}>" for b in range(256)] + learnt_tokens
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return GemmaTokenizer(vocab=vocab, merges=[tuple(m) for m in learnt["merges"]], model_max_length=512)


def build(captions: list[str], out_dir, cfg: ModelConfig, seed: int = 0, pixel_stats=None) -> Path:
    """An untrained small PaliGemma whose tokenizer is trained on `captions`, saved to `out_dir`. As the tiny
    BLIP does, it normalises with `pixel_stats` (the train images' per-channel mean and std) when given."""
    torch.manual_seed(seed)
    size, patch = cfg.image_size, cfg.patch_size
    normalise = dict(zip(("image_mean", "image_std"), map(list, pixel_stats))) if pixel_stats else {}
    image_processor = SiglipImageProcessorPil(size={"height": size, "width": size}, **normalise)
    # PaliGemmaProcessor expands `<image>` to this many tokens: one per vision patch.
    image_processor.image_seq_length = (size // patch) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor,
                                   tokenizer=train_tokenizer(list(captions), cfg.vocab_size))
    tok = processor.tokenizer
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    h, layers, heads = cfg.hidden_size, cfg.num_layers, cfg.num_heads
    config = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=h, intermediate_size=4 * h,
                           num_hidden_layers=layers, num_attention_heads=heads, image_size=size, patch_size=patch,
                           vision_use_head=False),
        # One key/value head, as PaliGemma's Gemma-2B has (multi-query attention).
        text_config=dict(model_type="gemma", vocab_size=len(tok), hidden_size=h, intermediate_size=4 * h,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=1,
                         head_dim=h // heads, max_position_embeddings=512, **ids),
        image_token_index=processor.image_token_id, vocab_size=len(tok), projection_dim=h, hidden_size=h, **ids)
    model = PaliGemmaForConditionalGeneration(config)
    model.generation_config.update(**ids)
    return saved(model, processor, out_dir)
