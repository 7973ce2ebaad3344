"""A tiny BLIP built from scratch offline: a deterministic WordPiece tokenizer over the train captions, a small
BlipConfig, saved with save_pretrained so it loads through the same path as a hub model.

Where things are in the image reaches the decoder only through the vision tower's position embeddings: attention
treats patches as a set. HF initialises them at initializer_range (std 0.02, norm 0.2 per token) beside patch
embeddings of norm ~11 (a conv on normalised pixels), so position was 2 % of each token. LayerNorm then scales the
gradient of a patch token's position embedding by 1/|token|, leaving it noise the decoder never learns to read,
and Adam grows the patch projection further (norm 11 -> 70-150 in a few hundred steps) because that drowns the
position "noise" out: the model settles into a bag of patches that knows colour, size and count but not where
(the sample's position accuracy stayed at chance). So the tiny model starts its position embeddings at or above the
patch embeddings' scale (POSITION_STD) and keeps its patch projection as initialised (a fixed random projection, as
MoCo v3 does for ViTs trained from scratch): position stays a large part of every token, and the decoder learns to
read it.

It also normalises its input with its own training images' per-channel mean and std, not the CLIP statistics a
hub BLIP was pretrained with. Under CLIP's, the sample's light background became a large constant in every patch
token (norm 10 of 10.5; what differs between patches, norm 3), so a small shape's outline was a sliver of a token
LayerNorm then shrank: the sample model named small shapes little better than chance (large 0.92, small 0.56).
With the data's own statistics the background maps near zero and what differs fills the token (shape 0.77 -> 0.88
on the sample's test split, every other attribute as good or better).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

from ...config import ModelConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
# Position embeddings' std at init (HF draws them with torch.randn, std 1, then _init_weights shrinks them to
# initializer_range). 1 is the patch embeddings' scale under CLIP statistics; with the data's own statistics 2
# named positions better on the sample (0.92 against 0.88 over several runs; shape 0.88 against 0.90).
POSITION_STD = 2.0
# Saved in the vision config, so every process and every later fine-tune of the model keeps it:
# blipnb.model.modeling.prepare_for_training freezes the patch projection of a model that carries it.
FIXED_PATCH_PROJECTION = "blipnb_fixed_patch_projection"


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


def readable_position(vision: torch.nn.Module, vision_config) -> None:
    """Start the ViT's position embeddings at POSITION_STD and mark its patch projection to stay fixed (the module
    docstring says why): a tiny model built from scratch can then learn where things are."""
    module = dict(vision.named_modules())
    embeddings = next(m for name, m in module.items() if name.endswith("embeddings") and hasattr(m, "patch_embedding"))
    position = embeddings.position_embedding
    with torch.no_grad():  # position must not start 50x below patch content
        getattr(position, "weight", position).normal_(0.0, POSITION_STD)
    setattr(vision_config, FIXED_PATCH_PROJECTION, True)


def patch_projection(vision: torch.nn.Module) -> torch.nn.Module:
    """The ViT's patch projection (the conv that embeds each patch)."""
    return next(m for name, m in vision.named_modules() if name.endswith("embeddings.patch_embedding"))


def saved(model, processor, out_dir) -> Path:
    """`model` and `processor` saved with save_pretrained into `out_dir` (made if missing), which is returned: a
    tiny model then loads through the same path as a hub checkpoint."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build(captions: Iterable[str], out_dir: str | Path, cfg: ModelConfig, seed: int = 0,
                    pixel_stats: tuple[tuple, tuple] | None = None) -> Path:
    """Build an untrained small BLIP with a tokenizer trained on `captions`, save it to `out_dir`, return the path.

    `pixel_stats` ((mean r, g, b), (std r, g, b) of the training images, blipnb.data.stats.channel_stats) become
    the processor's normalisation; None keeps BLIP's (CLIP's). Saved with save_pretrained so it loads through the
    same `load_model` path as a hub model.
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
    readable_position(model.vision_model, model.config.vision_config)
    normalise = dict(zip(("image_mean", "image_std"), map(list, pixel_stats))) if pixel_stats else {}
    image_processor = BlipImageProcessorPil(size={"height": cfg.image_size, "width": cfg.image_size}, **normalise)
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tok)
    return saved(model, processor, out_dir)
