"""SmolVLM (HuggingFaceTB/SmolVLM-256M-Instruct, -500M-Instruct, SmolVLM-Instruct; model_type idefics3) and
SmolVLM2 (model_type smolvlm): a SigLIP vision tower whose patches a pixel-shuffle connector folds into a few
image tokens, then a SmolLM2 (Llama) decoder, instruction-tuned in a chat
(https://huggingface.co/docs/transformers/model_doc/smolvlm, https://huggingface.co/HuggingFaceTB/SmolVLM-256M-Instruct).

Captioning is a chat turn: the user's image and an instruction, then "Assistant:", whose answer is the caption,
closed by <end_of_utterance> (the turn's end, and generate's eos). The model cards ask with an image first and a
text after it ("Can you describe this image?"); "Caption this image." is one of the captioning instructions of
SmolVLM's instruction mixture (huggingface/smollm, vision/data/.../build_ds_sft.py, TextCaps) and asks for a
caption rather than a paragraph. The processor's own chat template renders the turn, so the family follows
whichever template a checkpoint ships; the processor then expands `<image>` into the image's tokens (one block
per tile when it splits images), which the base class's end-anchored label spans allow.
"""
from __future__ import annotations

from .base import Family


class SmolVLMFamily(Family):
    def prefix(self, processor, prompt: str) -> str:
        """The chat up to and including the assistant's generation prompt, then the caption prefix, if any."""
        self.check_prompt(prompt)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.task_prompt}]}]
        chat = processor.apply_chat_template(messages, add_generation_prompt=True)
        return f"{chat} {prompt.strip()}" if prompt.strip() else chat

    def caption_text(self, processor, caption: str) -> str:
        """The assistant's answer as the chat template writes it ("Assistant: <caption>"), closed by the turn's
        end token, which is what generate stops at."""
        end = getattr(processor, "end_of_utterance_token", None) or processor.tokenizer.eos_token or ""
        return f" {caption.strip()}{end}"


SMOLVLM = SmolVLMFamily(
    name="smolvlm", title="SmolVLM", model_types=("smolvlm", "idefics3"), vision_path="model.vision_model",
    lora_targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
    lora_reason="the SmolLM2 decoder's attention and MLP, as SmolVLM's fine-tuning notebook adapts them "
                "(huggingface/smollm vision/finetuning/Smol_VLM_FT.ipynb); the SigLIP tower's layers of the same "
                "names stay frozen",
    task_prompt="Caption this image.",
)
