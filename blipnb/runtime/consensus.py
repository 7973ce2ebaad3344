"""Consensus decoding: draw N captions per image and return the one the others agree with most.

Each draw is a function of its image's pixels and its index alone (SeededDraws), so an image gets the same caption
alone or in any batch, on every run, in 03, 05, `blipnb caption` and a server.
"""
from __future__ import annotations

import re

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

CONSENSUS_SEED = 0  # consensus decoding's draws are a function of this, the image and the draw's index
# SplitMix64's constants as signed int64 (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
_GOLDEN, _MIX_A, _MIX_B = -7046029254386353131, -4658895280553007687, -7723592293110705685
_CONSENSUS_WORD = re.compile(r"\w+|[^\w\s]")


def seeded_draws(pixel_values: torch.Tensor, draws: int, temperature: float, top_p: float) -> LogitsProcessorList:
    """The logits processor that makes generate's `draws` samples per image a function of the image and the
    draw's index (rows ordered image by image, as generate's num_return_sequences orders them)."""
    index = torch.arange(draws, device=pixel_values.device).repeat(pixel_values.shape[0])
    rows = _mix(image_keys(pixel_values).repeat_interleave(draws) + index * _GOLDEN + CONSENSUS_SEED)
    return LogitsProcessorList([SeededDraws(rows, temperature, top_p)])


class SeededDraws(LogitsProcessor):
    """Sampling whose randomness belongs to each row: the next token is argmax(logits / temperature + Gumbel
    noise) over the top_p nucleus (the Gumbel-max trick: a draw from softmax(logits / temperature) there), with
    the noise a hash of (row key, step, token) instead of a shared random stream. It returns that one token as
    the only one left, so generate's own sampler can only take it."""

    def __init__(self, rows: torch.Tensor, temperature: float, top_p: float):
        self.rows, self.temperature, self.top_p = rows, temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:  # keep the likeliest tokens up to top_p of the mass (at least one)
            ordered, order = scores.sort(dim=-1, descending=True)
            probs = ordered.softmax(dim=-1)
            drop = probs.cumsum(dim=-1) - probs > self.top_p
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        choice = (scores + gumbel_noise(self.rows, input_ids.shape[1], scores.shape[1])).argmax(dim=-1)
        return torch.full_like(scores, float("-inf")).scatter_(1, choice[:, None], 0.0)


def gumbel_noise(rows: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Standard Gumbel noise, (len(rows), vocab), a fixed function of each row key, the step and the token."""
    at_step = _mix(rows ^ _mix(torch.tensor(step, dtype=torch.int64, device=rows.device) * _GOLDEN))
    h = _mix(at_step[:, None] + torch.arange(vocab, device=rows.device, dtype=torch.int64) * _MIX_A)
    u = (((h >> 20) & 0xFFFFFF).float() + 0.5) / 16777216.0  # 24 well-mixed bits -> (0, 1)
    return -torch.log(-torch.log(u))


def image_keys(pixel_values: torch.Tensor) -> torch.Tensor:
    """One int64 key per image from its pixels (as the processor gives them), independent of the batch."""
    q = torch.round(pixel_values.float().flatten(1) * 256).to(torch.int64)
    weights = _mix(torch.arange(q.shape[1], device=q.device, dtype=torch.int64)) | 1
    return _mix((q * weights).sum(dim=1))  # int64 arithmetic wraps: a hash, exact on any device


def _mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (two's-complement wraparound): nearby inputs, unrelated outputs."""
    x = x ^ (x >> 30)
    x = x * _MIX_A
    x = x ^ (x >> 27)
    x = x * _MIX_B
    return x ^ (x >> 31)


def consensus_order(captions: list[str], sigma: float = 6.0) -> list[int]:
    """Indices of `captions`, the one the others agree with most first (minimum Bayes risk decoding with a
    CIDEr-D-like utility). Each caption scores its mean similarity to every other draw, repeats included, so a
    wording drawn often counts often. The similarity is CIDEr-D's: the mean over n = 1..4 of the cosine between
    n-gram count vectors, with the candidate's counts clipped at the other's, times exp(-d^2 / (2 sigma^2)) for a
    length difference of d words. Unlike CIDEr-D every n-gram weighs the same: one image's draws give no corpus of
    references to weigh n-grams by. Ties keep the drawing order."""
    words = [_CONSENSUS_WORD.findall(c.lower()) for c in captions]
    grams = [[_ngram_counts(w, n) for w in words] for n in range(1, 5)]
    lengths = np.array([len(w) for w in words], dtype=float)
    similarity = np.zeros((len(captions), len(captions)))
    for per_caption in grams:
        vocab: dict = {}
        for counts in per_caption:
            for g in counts:
                vocab.setdefault(g, len(vocab))
        vectors = np.zeros((len(captions), max(len(vocab), 1)))
        for i, counts in enumerate(per_caption):
            for g, c in counts.items():
                vectors[i, vocab[g]] = c
        norms = np.linalg.norm(vectors, axis=1)
        clipped = np.minimum(vectors[:, None, :], vectors[None, :, :]) * vectors[None, :, :]
        denominator = norms[:, None] * norms[None, :]
        similarity += np.divide(clipped.sum(-1), denominator, out=np.zeros_like(denominator),
                                where=denominator > 0)
    similarity *= np.exp(-((lengths[:, None] - lengths[None, :]) ** 2) / (2 * sigma ** 2)) / 4
    np.fill_diagonal(similarity, 0.0)
    return [int(i) for i in np.argsort(-similarity.sum(axis=1), kind="stable")]


def _ngram_counts(words: list[str], n: int) -> dict:
    counts: dict = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
    return counts
