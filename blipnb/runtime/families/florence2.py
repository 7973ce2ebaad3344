"""Florence-2 (Xiao et al. 2023, microsoft/Florence-2-base; native port florence-community/Florence-2-base): a DaViT
vision tower whose image tokens, followed by the task prompt, feed a BART-style encoder; the decoder writes the
answer. It captions from the task token `<CAPTION>` alone, which Florence2Processor turns into the text prompt
"What does the image describe?" and wraps as <image>*N <s> prompt </s>
(https://huggingface.co/docs/transformers/model_doc/florence2, https://huggingface.co/microsoft/Florence-2-base).

What differs from a decoder-only captioner: the prompt goes to the encoder and never reaches the decoder, so
generate's output holds no input tokens to strip, and the caption is the decoder's target alone. As in BART, the
decoder starts from </s> (decoder_start_token_id) and its targets are the tokenized caption, <s> caption </s>;
the model shifts `labels` right into decoder_input_ids itself.
"""
from __future__ import annotations

import torch

from .base import IGNORE_INDEX, Family, padding_side


class Florence2Family(Family):
    def captions_from(self, processor, inputs: dict, sequences: torch.Tensor) -> list[str]:
        """The decoder's output with special tokens dropped; it never held the prompt, so nothing is cut."""
        # what post_process_generation does for <CAPTION> (pure text: <s>, </s> removed, stripped)
        return [t.strip() for t in processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    def training_inputs(self, processor, images: list, captions: list[str], prompt: str = "",
                        max_txt_len: int = 40) -> dict:
        """Encoder inputs for the images and <CAPTION>, and `labels`: <s> caption </s> per row, padding ignored."""
        tok = processor.tokenizer
        batch = dict(self.caption_inputs(processor, images, prompt))
        # 2 of max_txt_len go to <s> and </s>, so the end token survives the cut
        texts = [self.truncated(processor, c, max(max_txt_len - 2, 1)) for c in captions]
        with padding_side(tok, "right"):
            enc = tok(texts, padding=True, return_tensors="pt", return_token_type_ids=False)
        batch["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        return batch


FLORENCE2 = Florence2Family(
    name="florence2", title="Florence-2", model_types=("florence2",), vision_path="model.vision_tower",
    lora_targets="q_proj,v_proj",
    lora_reason="q_proj,v_proj name the BART encoder's and decoder's self-attention and the decoder's "
                "cross-attention to the image tokens (LoRA's W_q, W_v); DaViT's fused qkv is not among them, so "
                "the vision tower stays frozen",
    task_prompt="<CAPTION>", takes_prompt=False, labels_shifted=False,
)
