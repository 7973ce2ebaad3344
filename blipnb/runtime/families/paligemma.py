"""PaliGemma (google/paligemma-3b-pt-224, PaliGemma 2): a SigLIP vision tower whose projected patches lead a Gemma
decoder as a prefix LM. The image tokens, <bos>, the task prefix and a newline attend to each other in full; the
caption after them is causal. PaliGemma captions from the task prefix "caption en"
(https://ai.google.dev/gemma/docs/paligemma/prompt-system-instructions; big_vision's COCO transfer,
configs/proj/paligemma/transfers/cococap.py, trains with that prefix and the caption as suffix).

PaliGemmaProcessor builds the layout itself (https://huggingface.co/docs/transformers/model_doc/paligemma): the
`<image>` tokens, <bos>, the prefix and "\\n"; given `suffix=` it appends the caption and <eos>, marks them with
token_type_ids 1 (the causal part) and returns labels with every other position at -100. So the family trains
from the processor's labels, and keeps token_type_ids for generate too: without them the prefix would be causal,
not the full attention the model was trained with.
"""
from __future__ import annotations

from .base import Family, padding_side


class PaliGemmaFamily(Family):
    def text(self, processor, prompt: str, n: int) -> list[str]:
        """One `<image>` per row before the prefix: without it the processor guesses where the image goes
        (and warns)."""
        return [processor.image_token + self.prefix(processor, prompt)] * n

    def caption_inputs(self, processor, images: list, prompt: str = "") -> dict:
        with padding_side(processor.tokenizer, "left"):
            batch = processor(images=images, text=self.text(processor, prompt, len(images)), return_tensors="pt",
                              padding=True)
        batch.pop("labels", None)  # the processor always returns them (all -100 here); generate takes none
        return dict(batch)

    def training_inputs(self, processor, images: list, captions: list[str], prompt: str = "",
                        max_txt_len: int = 40) -> dict:
        """The processor's own prefix/suffix layout: labels keep the caption and <eos> (token_type_ids 1) only.
        Padded on the right: PaliGemma counts positions from the row's start, not from its first real token."""
        suffix = [self.truncated(processor, c, max_txt_len - 1) for c in captions]
        with padding_side(processor.tokenizer, "right"):
            return dict(processor(images=images, text=self.text(processor, prompt, len(images)), suffix=suffix,
                                  return_tensors="pt", padding=True))


PALIGEMMA = PaliGemmaFamily(
    name="paligemma", title="PaliGemma", model_types=("paligemma",), vision_path="model.vision_tower",
    lora_targets="q_proj,k_proj,v_proj,o_proj",
    lora_reason="the Gemma decoder's attention, as Google's PaliGemma fine-tuning Colab trains (attention only); "
                "the SigLIP tower's layers of the same names stay frozen",
    task_prompt="caption en", takes_prompt=False,
)
