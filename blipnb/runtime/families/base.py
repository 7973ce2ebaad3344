"""The family interface, with the behaviour of a decoder-only captioner (the image's tokens, then the prompt, then
the caption) that most families share. A family module changes only what differs."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

IGNORE_INDEX = -100  # positions the loss skips: image tokens, the prompt and padding

# blipnb's fast paths; every one is written for BLIP's modules.
FAST_PATHS = {
    "sdpa_patch": "blipnb's SDPA patch of BLIP's attention (other families get transformers' own SDPA)",
    "shared_vision": "shared_vision: the vision tower once per image, every caption of it decoded against it",
    "cache_embeddings": "cache_embeddings: the frozen vision tower's output computed once",
    "pixel_cache": "pixel_cache: images resized once to uint8 and normalised on the device",
}


class UnsupportedFamily(ValueError):
    """A model whose family blipnb does not caption with, or a setting a family cannot take."""


@contextlib.contextmanager
def padding_side(tokenizer, side: str):
    """The tokenizer pads on `side` for the block: left to caption (generate appends on the right), right to
    train (the caption's positions then end where the row's tokens end)."""
    before = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side = before


@dataclass(frozen=True)
class Family:
    """What blipnb needs to know of one captioner family."""

    name: str  # short name: blip, git, ...
    title: str  # as people write it
    model_types: tuple[str, ...]  # config.json model_type values of this family
    vision_path: str  # dotted attribute path of the vision tower (frozen by freeze_vision)
    lora_targets: str  # default LoRA target layer names, comma-separated
    lora_reason: str  # one line: why those
    task_prompt: str = ""  # the fixed prompt or task token the family captions with
    takes_prompt: bool = True  # whether a caption prefix (the decoding's `prompt`) applies
    fast_paths: frozenset = field(default_factory=frozenset)  # of FAST_PATHS
    can_sample: bool = True  # whether generate can sample (consensus decoding needs it)
    counts_prompt_in_lengths: bool = False  # whether length_counts_prompt applies (BLIP's own generate)
    labels_shifted: bool = True  # the model predicts labels[:, 1:] (a decoder); False: every label (encoder-decoder)
    closing_tokens: int = 0  # tokens the processor itself appends after the text (then the end token)

    # ---------------------------------------------------------------- settings that apply

    def check_prompt(self, prompt: str) -> None:
        if prompt and not self.takes_prompt:
            raise UnsupportedFamily(f"{self.title} captions from its task prompt {self.task_prompt!r} alone: "
                                    f"leave prompt empty")

    def check_decoding(self, decoding) -> None:
        """One line where a decoding setting does not apply to this family."""
        self.check_prompt(decoding.prompt)
        if decoding.samples and not self.can_sample:
            raise UnsupportedFamily(f"{self.title} cannot sample, so do_sample and consensus_samples do not apply: "
                                    "use greedy or beam search")
        if decoding.length_counts_prompt and not self.counts_prompt_in_lengths:
            raise UnsupportedFamily(f"length_counts_prompt applies to BLIP only; {self.title}'s lengths count new "
                                    "tokens: leave it False")

    def check_fast_path(self, name: str) -> None:
        """One line where fast path `name` does not apply to this family, naming the families it applies to."""
        if name not in self.fast_paths:  # every fast path is BLIP's
            raise UnsupportedFamily(f"{FAST_PATHS[name]} applies to BLIP only, not {self.title}: leave it off")

    def check_model(self, model) -> None:
        """One line where a loaded model of this family's model_type is a variant the family cannot caption with."""

    def vision_tower(self, model) -> torch.nn.Module:
        module = model.get_base_model() if hasattr(model, "get_base_model") else model
        for part in self.vision_path.split("."):
            module = getattr(module, part)
        return module

    # ---------------------------------------------------------------- captioning

    def prefix(self, processor, prompt: str) -> str:
        """The text before the caption: the task prompt, then the caption prefix."""
        self.check_prompt(prompt)
        return " ".join(p for p in (self.task_prompt, prompt) if p)

    def caption_inputs(self, processor, images: list, prompt: str = "") -> dict:
        """Everything `generate` needs to caption `images` (RGB), batch first: the processor's output for the
        images and the prefix, padded on the left."""
        text = [self.prefix(processor, prompt)] * len(images)
        with padding_side(processor.tokenizer, "left"):
            return dict(processor(images=images, text=text, return_tensors="pt", padding=True))

    def generate_kwargs(self, model, processor) -> dict:
        """What this family adds to every generate call."""
        return {}

    def captions_from(self, processor, inputs: dict, sequences: torch.Tensor) -> list[str]:
        """The captions in generate's output: what follows the input tokens, special tokens dropped."""
        sequences = sequences[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)]

    # ---------------------------------------------------------------- training

    def caption_text(self, processor, caption: str) -> str:
        """A caption as the model learns it: with the tokenizer's end-of-sequence token, so it learns to stop
        (unless the processor appends its own)."""
        return caption if self.closing_tokens else caption + (processor.tokenizer.eos_token or "")

    def truncated(self, processor, caption: str, max_tokens: int) -> str:
        """`caption` cut to `max_tokens` tokens (itself when it fits)."""
        tok = processor.tokenizer
        ids = tok(caption, add_special_tokens=False).input_ids
        return caption if len(ids) <= max_tokens else tok.decode(ids[:max_tokens]).strip()

    def training_inputs(self, processor, images: list, captions: list[str], prompt: str = "",
                        max_txt_len: int = 40) -> dict:
        """One row per (image, caption): the model's inputs with `labels` that keep the caption's tokens (and the
        end token) and set the image tokens, the prompt and the padding to IGNORE_INDEX. Captions are cut to
        `max_txt_len` tokens."""
        tok = processor.tokenizer
        prefix = self.prefix(processor, prompt)
        texts = [self.caption_text(processor, self.truncated(processor, c, max_txt_len - 1)) for c in captions]
        with padding_side(tok, "right"):
            batch = dict(processor(images=images, text=[prefix + t for t in texts], return_tensors="pt",
                                   padding=True))
        # The caption's tokens are the last of each row's tokens: as many as the full text has beyond the prefix.
        head = len(tok(prefix, add_special_tokens=False).input_ids)
        spans = [len(tok(prefix + t, add_special_tokens=False).input_ids) - head + self.closing_tokens
                 for t in texts]
        ends = batch["attention_mask"].sum(dim=1)
        positions = torch.arange(batch["input_ids"].shape[1])[None, :]
        starts = (ends - torch.tensor(spans))[:, None]
        keep = (positions >= starts) & (positions < ends[:, None])
        batch["labels"] = batch["input_ids"].masked_fill(~keep, IGNORE_INDEX)
        return batch
