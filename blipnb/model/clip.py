"""CLIP embeddings for CLIP-S and RefCLIP-S (scoring.embedding): transformers' CLIPModel and CLIPProcessor from a hub
id or a local folder, images embedded once per split and shared by every model scored on it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..progress import progress_bar
from ..runtime.images import to_rgb
from ..schema import IMAGE, IMAGE_ID, undecoded


class ClipUnavailable(RuntimeError):
    """CLIP cannot be loaded here; the message is the reason the report shows."""


def load_clip(name: str):
    """(CLIPModel in eval mode, CLIPProcessor) from a hub id or a local folder; ClipUnavailable saying why not."""
    if not Path(name).is_dir() and _offline_and_not_cached(name):  # said at once, without loading CLIP's code
        raise ClipUnavailable(f"needs the CLIP model {name!r} (clip_model): it is not in the local Hugging Face cache "
                              "and the hub is offline (HF_HUB_OFFLINE=1); set clip_model to a local folder")
    from transformers import CLIPModel, CLIPProcessor
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the processor's "falling back to the PIL backend" line says nothing here
    try:
        model = CLIPModel.from_pretrained(name)
        processor = CLIPProcessor.from_pretrained(name)
    except Exception as error:  # noqa: BLE001 - offline, a missing folder, or not a CLIP: all said in one line
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ClipUnavailable(f"needs the CLIP model {name!r} (clip_model), which could not be loaded here: "
                              f"{first}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model.eval(), processor


def _offline_and_not_cached(name: str) -> bool:
    """Whether the hub is off and `name`'s config is not in the local cache (so loading cannot succeed)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return False
    try:
        return not isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - not a repo id at all: from_pretrained says what is wrong
        return False


def _features(output) -> torch.Tensor:
    """The projected embedding: transformers 5 returns it as `pooler_output` of a model output, 4.x as a tensor."""
    return output.pooler_output if hasattr(output, "pooler_output") else output


class ClipEmbedder:
    """Unit-length CLIP embeddings of texts and of a split's images (all images embedded on first use)."""

    def __init__(self, model, processor, split=None, batch_size: int = 64, progress: bool = False):
        self.model, self.processor, self.batch_size, self.progress = model, processor, batch_size, progress
        self.device = next(model.parameters()).device
        self._split, self._images = split, None
        self._texts: dict[str, np.ndarray] = {}  # every model and the ceiling are scored against the same references

    @torch.no_grad()
    def texts(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings of texts, one row each; a text embedded before is not embedded again."""
        new = list(dict.fromkeys(t for t in texts if t not in self._texts))
        limit = self.model.config.text_config.max_position_embeddings  # CLIP reads 77 tokens; longer is cut
        for start in range(0, len(new), self.batch_size):
            chunk = new[start:start + self.batch_size]
            batch = self.processor(text=chunk, return_tensors="pt", padding=True, truncation=True,
                                   max_length=limit).to(self.device)
            vectors = _unit(_features(self.model.get_text_features(input_ids=batch["input_ids"],
                                                                   attention_mask=batch["attention_mask"])))
            self._texts.update(zip(chunk, vectors))
        if not texts:
            return np.zeros((0, self.model.config.projection_dim))
        return np.stack([self._texts[t] for t in texts])

    @torch.no_grad()
    def images(self, images: list) -> np.ndarray:
        """Unit-length embeddings of PIL images."""
        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = self.processor(images=images[start:start + self.batch_size], return_tensors="pt")
            out.append(_unit(_features(self.model.get_image_features(
                pixel_values=pixels["pixel_values"].to(self.device)))))
        return np.concatenate(out)

    def image(self, image_id: str) -> np.ndarray:
        if self._images is None:
            raw = undecoded(self._split)
            ids, images = raw[IMAGE_ID], raw[IMAGE]
            vectors = []
            for start in progress_bar(range(0, len(ids), self.batch_size), desc="CLIP image embeddings",
                                      disable=not self.progress, unit="batch"):
                chunk = range(start, min(start + self.batch_size, len(ids)))
                vectors.append(self.images([to_rgb(images[i], ids[i]) for i in chunk]))
            self._images = dict(zip(map(str, ids), np.concatenate(vectors)))
        return self._images[str(image_id)]


def _unit(features: torch.Tensor) -> np.ndarray:
    features = features.float()
    return (features / features.norm(dim=-1, keepdim=True)).cpu().numpy().astype(np.float64)


def clip_embedder(name: str, split, progress: bool = True) -> ClipEmbedder:
    """A ClipEmbedder of `split`'s images on the first CUDA device when there is one; ClipUnavailable saying why
    not."""
    model, processor = load_clip(name)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return ClipEmbedder(model, processor, split, progress=progress)
