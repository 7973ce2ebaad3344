"""Degeneration and diversity: captions that loop, how varied the captions are, copies of training captions, length.

None of it needs a model or the images, so it is always scored, for the models and for the references (the
human ceiling's column shows the same numbers for the data's own captions).

- repeats: the share of captions in which some word bigram or trigram occurs twice or more ("a hat on top of a
  hat"; "ray ban ray ban"). An n-gram made of function words only ("in the") does not count: "a dog in the
  grass in the park" repeats nothing a reader would call a loop. Per caption: 0 or 1.
- distinct_1 / distinct_2: distinct word unigrams / bigrams over all of them, pooled over every caption.
- vocabulary: distinct words over every caption.
- copied: the share of captions that are a training caption verbatim (after `normalise_caption`). Per caption.
- length: mean words per caption. Per caption: its words.

distinct-n and vocabulary are properties of the whole set of captions: there is no per-caption value, and no
bootstrap interval (a resample repeats captions, which lowers them by itself).
"""
from __future__ import annotations

import re

from ..schema import COPIED, DISTINCT_1, DISTINCT_2, LENGTH, REPEATS, STOP_WORDS, VOCABULARY, words

PER_CAPTION = (REPEATS, COPIED, LENGTH)  # averaged over captions: per-image values and intervals
CORPUS_ONLY = (DISTINCT_1, DISTINCT_2, VOCABULARY)
NO_INTERVAL = "a property of the whole set of captions: a resample repeats captions, which changes it by itself"
NO_TRAIN = "needs the training captions, which were not given"
REPEAT_ORDERS = (2, 3)


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    """The word n-grams of a token list, in order."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngrams(caption: str) -> list[str]:
    """The word bigrams and trigrams that occur more than once in a caption, leaving out those made of function
    words only; longest first."""
    tokens = words(caption)
    out = []
    for n in sorted(REPEAT_ORDERS, reverse=True):
        seen: dict = {}
        for gram in ngrams(tokens, n):
            seen[gram] = seen.get(gram, 0) + 1
        out += [" ".join(g) for g, count in seen.items() if count > 1 and not set(g) <= STOP_WORDS]
    return out


def normalise_caption(caption: str) -> str:
    """Lower-case, single spaces, no trailing punctuation: the form in which a copy is recognised."""
    return re.sub(r"[\s.!?,;:]+$", "", " ".join(caption.lower().split()))


def training_set(train_captions) -> frozenset[str]:
    """The training captions in the form `copied` compares them."""
    return frozenset(normalise_caption(c) for c in train_captions)


def distinct(captions, n: int) -> float | None:
    """Distinct word n-grams over all word n-grams of the captions (None when they have none)."""
    grams = [g for c in captions for g in ngrams(words(c), n)]
    return len(set(grams)) / len(grams) if grams else None


def degeneration_scores(captions: dict, train_captions=None) -> tuple[dict, dict, dict]:
    """(per caption {key: value}, corpus {key: value}, unavailable {key: reason}) for {id: caption}.

    `train_captions` (any iterable of strings, or a `training_set`) enables `copied`."""
    train = train_captions if isinstance(train_captions, frozenset) or train_captions is None \
        else training_set(train_captions)
    per_caption = {}
    for key, caption in captions.items():
        row = {REPEATS: float(bool(repeated_ngrams(caption))), LENGTH: float(len(words(caption)))}
        if train is not None:
            row[COPIED] = float(normalise_caption(caption) in train)
        per_caption[key] = row
    texts = list(captions.values())
    n = max(1, len(per_caption))
    corpus = {REPEATS: sum(r[REPEATS] for r in per_caption.values()) / n,
              LENGTH: sum(r[LENGTH] for r in per_caption.values()) / n,
              DISTINCT_1: distinct(texts, 1), DISTINCT_2: distinct(texts, 2),
              VOCABULARY: float(len({w for c in texts for w in words(c)}))}
    unavailable = {k: "the captions hold no " + ("two words in a row" if k == DISTINCT_2 else "word")
                   for k in (DISTINCT_1, DISTINCT_2) if corpus[k] is None}
    for key in unavailable:
        del corpus[key]
    if train is None:
        unavailable[COPIED] = NO_TRAIN
    else:
        corpus[COPIED] = sum(r[COPIED] for r in per_caption.values()) / n
    return per_caption, corpus, unavailable


def copy_rate(rows: list[dict], train_captions, examples: int = 5) -> dict:
    """Share of predictions that repeat a training caption verbatim (after normalise_caption), with examples."""
    train = training_set(train_captions)
    copied = [r for r in rows if normalise_caption(r["prediction"]) in train]
    n = max(1, len(rows))
    return {"n_images": len(rows), "copied": len(copied), "rate": len(copied) / n,
            "distinct_predictions": len({normalise_caption(r["prediction"]) for r in rows}),
            "examples": [{"image_id": r["image_id"], "prediction": r["prediction"]} for r in copied[:examples]]}
