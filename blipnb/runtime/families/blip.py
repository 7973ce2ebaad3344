"""BLIP (Li et al. 2022): a ViT whose output the text decoder cross-attends to. BLIP's generate replaces the
input's first token with [DEC] (the bos) and drops the prompt's trailing [SEP]; training must match. BLIP is the
family blipnb's fast paths were written for."""
from __future__ import annotations

from .base import FAST_PATHS, IGNORE_INDEX, Family


class BlipFamily(Family):
    def caption_inputs(self, processor, images: list, prompt: str = "") -> dict:
        inputs = {"pixel_values": processor.image_processor(images, return_tensors="pt")["pixel_values"]}
        if prompt:
            ids = processor.tokenizer(prompt, return_tensors="pt").input_ids
            inputs["input_ids"] = ids.repeat(len(images), 1)
        return inputs

    def captions_from(self, processor, inputs: dict, sequences):
        if "input_ids" in inputs:  # [DEC] + the prompt's tokens (its [SEP] dropped) are not the caption
            sequences = sequences[:, inputs["input_ids"].shape[1] - 1:]
        return [t.strip() for t in processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    def caption_tokens(self, processor, captions: list[str], prompt: str = "", max_txt_len: int = 40) -> dict:
        """input_ids led by [DEC], attention_mask, and labels with the prompt and padding at IGNORE_INDEX;
        prompt + caption cut to max_txt_len tokens, as BLIP does."""
        tok = processor.tokenizer
        if tok.bos_token_id is None:
            raise ValueError("the tokenizer has no bos token: BLIP decodes from [DEC]")
        enc = tok([prompt + c for c in captions], padding="longest", truncation=True, max_length=max_txt_len,
                  return_tensors="pt")
        input_ids = enc["input_ids"]
        input_ids[:, 0] = tok.bos_token_id
        labels = input_ids.masked_fill(enc["attention_mask"] == 0, IGNORE_INDEX)
        # The prompt's tokens without their trailing [SEP] are what the loss skips (BLIP's prompt_length).
        labels[:, : len(tok(prompt).input_ids) - 1 if prompt else 0] = IGNORE_INDEX
        return {"input_ids": input_ids, "attention_mask": enc["attention_mask"], "labels": labels}

    def training_inputs(self, processor, images: list, captions: list[str], prompt: str = "",
                        max_txt_len: int = 40) -> dict:
        batch = self.caption_tokens(processor, captions, prompt, max_txt_len)
        batch["pixel_values"] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        return batch


BLIP = BlipFamily(
    name="blip", title="BLIP", model_types=("blip",), vision_path="vision_model",
    lora_targets="query,value",
    lora_reason="one class serves the text decoder's self- and cross-attention, so query,value adapt both (LoRA's "
                "W_q, W_v); the vision tower's fused qkv is adapted only when named",
    fast_paths=frozenset(FAST_PATHS), counts_prompt_in_lengths=True,
)
