"""CLIP-S and RefCLIP-S (Hessel et al., "CLIPScore", EMNLP 2021), from unit-length CLIP embeddings.

- CLIP-S(c, v) = w * max(cos(E(v), E(PREFIX + c)), 0), with w = 2.5 and PREFIX "A photo depicts ": the paper's
  weight and prompt.
- RefCLIP-S(c, R, v) = the harmonic mean of CLIP-S(c, v) and max(max over r in R of cos(E(PREFIX + c),
  E(PREFIX + r)), 0). The reference implementation prefixes the references too.

Both are means over captions, so each caption has its own value and the bootstrap resamples them like ROUGE-L.
The embeddings come from `embed` (model.clip.ClipEmbedder, or anything with its two methods): this module only
does arithmetic, so the formula is tested apart from any model.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ..schema import CLIP_S, REFCLIP_S

W = 2.5
PREFIX = "A photo depicts "


class Embedder(Protocol):
    def texts(self, texts: list[str]) -> np.ndarray:
        """Unit-length text embeddings, one row per text."""

    def image(self, image_id: str) -> np.ndarray:
        """The unit-length embedding of one image of the split."""


def clip_s(cosine) -> np.ndarray:
    """w * max(cos, 0)."""
    return W * np.maximum(np.asarray(cosine, dtype=np.float64), 0.0)


def refclip_s(clip_scores, reference_cosine) -> np.ndarray:
    """Harmonic mean of CLIP-S and the clipped best caption-reference cosine (0 where both are 0)."""
    a = np.asarray(clip_scores, dtype=np.float64)
    b = np.maximum(np.asarray(reference_cosine, dtype=np.float64), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(a + b > 0, 2 * a * b / (a + b), 0.0)


def embedding_scores(captions: dict, references: dict, images: dict, embed: Embedder,
                     prefix: str = PREFIX) -> tuple[dict, dict]:
    """(per caption {CLIP_S, REFCLIP_S}, corpus means) for {id: caption}, its {id: references} and {id: image id}."""
    keys = list(captions)
    texts = list(dict.fromkeys([captions[k] for k in keys] + [r for k in keys for r in references[k]]))
    rows = dict(zip(texts, embed.texts([prefix + t for t in texts])))
    caption_vectors = np.stack([rows[captions[k]] for k in keys])
    image_vectors = np.stack([embed.image(images[k]) for k in keys])
    clip = clip_s(np.einsum("ij,ij->i", caption_vectors, image_vectors))
    best = np.array([max(float(rows[r] @ rows[captions[k]]) for r in references[k]) if references[k] else 0.0
                     for k in keys])
    ref = refclip_s(clip, best)
    per_caption = {k: {CLIP_S: float(c), REFCLIP_S: float(r)} for k, c, r in zip(keys, clip, ref)}
    return per_caption, {CLIP_S: float(clip.mean()), REFCLIP_S: float(ref.mean())}
