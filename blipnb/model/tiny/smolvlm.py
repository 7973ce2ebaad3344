"""A tiny SmolVLM built offline: a byte-level BPE tokenizer trained on the captions with the special tokens SmolVLM's
processor and chat need, a small SmolVLMConfig (SigLIP-style vision tower, pixel-shuffle connector, Llama decoder)
and SmolVLM's chat template.

Its processor is Idefics3Processor, the one SmolVLM's own checkpoints (HuggingFaceTB/SmolVLM-256M-Instruct and
its siblings, model_type idefics3) ship: SmolVLMProcessor needs a video processor, which needs torchvision, and
num2words, neither of which blipnb depends on. Both lay out a single image the same way. Images are not split into
tiles, so every image is one block of image_seq_len tokens.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (Idefics3ImageProcessorPil, Idefics3Processor, PreTrainedTokenizerFast, SmolVLMConfig,
                          SmolVLMForConditionalGeneration)

from ...config import ModelConfig
from .blip import saved
from ...runtime.families.smolvlm import SMOLVLM

PAD, BOS, END = "<|endoftext|>", "<|im_start|>", "<end_of_utterance>"
SPECIAL_TOKENS = [PAD, BOS, END, "<image>", "<fake_token_around_image>", "<global-img>"]
# SmolVLM's chat format (its checkpoints' chat_template): the roles capitalised, an image-led turn without a space
# after the colon, each turn closed by <end_of_utterance>.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{ line['text'] }}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# The fixed words of every row (roles, instruction): trained with the captions so they are a few tokens each.
CHAT_WORDS = ["User:", "Assistant:", SMOLVLM.task_prompt]


def train_tokenizer(captions: list[str], merges: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE over `captions` with `merges` tokens beyond the 256 bytes, so any text still tokenizes.
    Unlike its WordPiece trainer (blipnb.model.tiny.blip), tokenizers' BPE trainer gave the same vocabulary for
    the same captions in every process tried."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=len(SPECIAL_TOKENS) + 256 + merges, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(list(captions) + CHAT_WORDS, trainer)
    # No post-processor: the chat template writes <|im_start|> itself, as SmolVLM's tokenizer adds nothing.
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=END, pad_token=PAD, unk_token=PAD,
                                   model_max_length=512)


def build(captions: list[str], out_dir, cfg: ModelConfig, seed: int = 0, pixel_stats=None) -> Path:
    """An untrained small SmolVLM whose tokenizer is trained on `captions`, saved to `out_dir`; `pixel_stats`
    ((mean r, g, b), (std r, g, b)) become the image normalisation when given."""
    torch.manual_seed(seed)
    tok = train_tokenizer(captions, cfg.vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    h, layers, heads, size = cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.image_size
    side = size // cfg.patch_size
    scale = 2 if side % 2 == 0 else 1  # the connector folds scale x scale patches into one token
    config = SmolVLMConfig(
        image_token_id=ids["<image>"], scale_factor=scale,
        vision_config=dict(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers,
                           num_attention_heads=heads, image_size=size, patch_size=cfg.patch_size),
        text_config=dict(vocab_size=len(tok), hidden_size=h, intermediate_size=4 * h, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=512,
                         bos_token_id=ids[BOS], eos_token_id=ids[END], pad_token_id=ids[PAD]))
    model = SmolVLMForConditionalGeneration(config)
    model.generation_config.update(bos_token_id=ids[BOS], eos_token_id=ids[END], pad_token_id=ids[PAD])
    normalise = dict(zip(("image_mean", "image_std"), map(list, pixel_stats))) if pixel_stats else {}
    image_processor = Idefics3ImageProcessorPil(do_image_splitting=False, size={"longest_edge": size},
                                                max_image_size={"longest_edge": size}, **normalise)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok,
                                  image_seq_len=side * side // (scale * scale), chat_template=CHAT_TEMPLATE)
    return saved(model, processor, out_dir)
