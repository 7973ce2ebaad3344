"""BLIP-2 (Li et al. 2023; Salesforce/blip2-opt-2.7b): a frozen ViT, a Q-Former whose learnt queries read it, and
a language model that sees the projected queries as the image's tokens before the text. Blip2Processor expands
`<image>` into `num_query_tokens` tokens ahead of OPT's `</s>` bos. BLIP-2 captions with no prompt
(https://huggingface.co/docs/transformers/model_doc/blip-2, "Image captioning (without providing a text prompt)");
its COCO captioning fine-tune prompts with "a photo of" (salesforce/LAVIS,
lavis/configs/models/blip2/blip2_caption_opt2.7b.yaml), which `prompt` can give.

With an OPT decoder generate returns the input ids, then the new ones, as the base class expects. OPT's tokenizer
is byte-level BPE, where a word's leading space is part of its token: after a prompt the caption is learnt with
the space that separates it, as generate then writes it.

A Flan-T5 variant (model_type also blip-2) is encoder-decoder: the image tokens and prompt feed the encoder, the
caption goes in decoder labels alone, and generate returns only decoder ids; this family covers the OPT ones and
refuses a Flan-T5 one in one line.

The hub checkpoints stop generating at "\n" (LAVIS ends each caption with it; config.json's eos is that token),
while blipnb ends each caption it trains with the tokenizer's `</s>`: generate stops at either.
"""
from __future__ import annotations

from .base import Family, UnsupportedFamily


class Blip2Family(Family):
    def check_model(self, model) -> None:
        text = model.config.text_config
        if getattr(text, "is_encoder_decoder", False):
            raise UnsupportedFamily(f"BLIP-2 with a {text.model_type} (encoder-decoder) language model is not "
                                    "supported: use an OPT one, such as Salesforce/blip2-opt-2.7b")

    def generate_kwargs(self, model, processor) -> dict:
        ends = model.generation_config.eos_token_id
        ends = [ends] if isinstance(ends, int) else list(ends or [])
        return {"eos_token_id": list(dict.fromkeys(ends + [processor.tokenizer.eos_token_id]))}

    def truncated(self, processor, caption: str, max_tokens: int) -> str:
        """`caption` cut to `max_tokens` tokens, keeping its leading space (a token of its own under byte-level
        BPE)."""
        lead = caption[: len(caption) - len(caption.lstrip())]
        return lead + super().truncated(processor, caption, max_tokens).lstrip()

    def training_inputs(self, processor, images: list, captions: list[str], prompt: str = "",
                        max_txt_len: int = 40) -> dict:
        """The base class's rows; after a prompt each caption starts with the space that follows the prompt, so
        prompt + caption tokenizes as the prompt's tokens, then the caption's."""
        if self.prefix(processor, prompt):
            captions = [" " + c.lstrip() for c in captions]
        return super().training_inputs(processor, images, captions, prompt, max_txt_len)


BLIP2 = Blip2Family(
    name="blip2", title="BLIP-2", model_types=("blip-2",), vision_path="vision_model",
    lora_targets="q_proj,v_proj",
    lora_reason="the OPT decoder's attention query and value projections (LoRA's W_q, W_v; peft's default for "
                "OPT); the ViT (qkv) and Q-Former (query/value) use other names, so they stay as they are",
)
