"""A pure-Python stand-in for pycocoevalcap's Java PTB tokenizer, used where Java is missing or fails."""
from __future__ import annotations

import re

from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

# pycocoevalcap drops these after lower-casing, so its "-lrb-" etc. survive: the mirror keeps them too.
PTB_PUNCTUATIONS = frozenset(PUNCTUATIONS)
_PTB_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_PTB_SEPARATE = re.compile(r'(\.\.\.|--|[!?]+|[()\[\]{}";$%`]|(?<!\d)[,:]|[,:](?!\d))')
_PTB_CONTRACTION = re.compile(r"^(.+?)(n't|'s|'re|'ll|'ve|'d|'m)$")
_PTB_SPECIAL = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"], "wanna": ["wan", "na"]}
_PTB_ABBREVIATION = re.compile(r"([a-z]\.)+|(mr|mrs|ms|dr|st|jr|sr|vs|etc|mt)\.")


def python_ptb_tokenize(caption: str) -> str:
    """Pure-Python stand-in for pycocoevalcap's PTBTokenizer + punctuation removal (common caption cases)."""
    words = []
    for token in _PTB_SEPARATE.sub(r" \1 ", caption.lower()).split():
        words.extend(_split_ptb_word(token))
    return " ".join(_PTB_BRACKETS.get(w, w) for w in words if w not in PTB_PUNCTUATIONS and w != '"')


def _split_ptb_word(token: str) -> list[str]:
    """Split one whitespace token the way PTB does: final period, edge quotes, clitics."""
    if token in _PTB_SPECIAL:
        return _PTB_SPECIAL[token]
    if len(token) > 1 and token.endswith(".") and not _PTB_ABBREVIATION.fullmatch(token):
        return [*_split_ptb_word(token[:-1]), "."]
    if len(token) > 1 and token.endswith("'"):
        return [*_split_ptb_word(token[:-1]), "'"]
    if len(token) > 1 and token.startswith("'") and not _PTB_CONTRACTION.match("x" + token):
        return ["'", *_split_ptb_word(token[1:])]
    match = _PTB_CONTRACTION.match(token)
    return [match.group(1), match.group(2)] if match else [token]
