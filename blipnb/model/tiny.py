"""A tiny BLIP built from scratch offline: a deterministic WordPiece tokenizer over the train captions, a small
BlipConfig, saved with save_pretrained so it loads through the same path as a hub model."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

from ..config import ModelConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]


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
