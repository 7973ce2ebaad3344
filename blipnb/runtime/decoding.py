"""Decoding: the one value every captioning path takes (02's validation, 03, 05 and its widgets, `blipnb caption`,
`blipnb serve` and an exported model's hosts).

Each setting's default, help text and bounds live in its field here. Settings are combined one way only:
`merged(**explicit)`, where an explicit value (a `-p`, a keyword, a flag, a request parameter) always wins over
what the decoding already held, whether that came from defaults, a preset file or the run's stored decoding.
Named decodings (`Decoding.named("blip_paper")`) are plain starting points built the same way.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

DECODING_FILE = "decoding_defaults.json"  # a model folder's decoding, written by blipnb's export
MAX_CONSENSUS_SAMPLES = 64  # consensus draws per image: bounds what one caption costs
CONSENSUS_DRAWS = 24  # the draws of a "consensus" decoding made from one that does not draw


class DecodingError(ValueError):
    """A decoding setting that is unknown, of the wrong type or out of range; the message names it."""


def _setting(default, help: str, low=None, high=None):
    """A decoding field: its default, its help (parameters cells, --help) and the bounds a request may use."""
    return field(default=default, metadata={"help": help, "low": low, "high": high})


@dataclass
class Decoding:
    """How captions are generated: from pixel_values only, plus an optional fixed prompt."""

    max_new_tokens: int = _setting(30, "longest caption, in tokens", 1, 256)
    min_new_tokens: int = _setting(0, "shortest caption, in tokens", 0, 256)
    length_counts_prompt: bool = _setting(False, "max_new_tokens and min_new_tokens also count the [DEC] token and "
                                                 "the prompt, as BLIP's max_length/min_length do")
    num_beams: int = _setting(5, "beam width (1: greedy)", 1, 16)
    length_penalty: float = _setting(1.0, "above 1 favours longer beams", -10.0, 10.0)
    early_stopping: bool = _setting(True, "stop a beam search once num_beams captions are finished")
    do_sample: bool = _setting(False, "nucleus sampling instead of search")
    top_p: float = _setting(0.9, "nucleus mass when sampling", 0.01, 1.0)
    temperature: float = _setting(1.0, "sampling temperature", 0.01, 10.0)
    repetition_penalty: float = _setting(1.0, "above 1 makes generate avoid tokens already said (1: off)", 1.0, 5.0)
    no_repeat_ngram_size: int = _setting(0, "no n-gram of this many tokens twice in a caption (0: off)", 0, 10)
    prompt: str = _setting("", "fixed text prefix, e.g. 'a picture of '; masked from the loss, stripped from "
                               "output", 0, 200)
    consensus_samples: int = _setting(0, "0: off; N (2 or more): draw N captions by sampling (top_p, temperature) "
                                         "and return the one the others agree with most (minimum Bayes risk, "
                                         "CIDEr-D-like)", 0, MAX_CONSENSUS_SAMPLES)

    def __post_init__(self):
        for f in decoding_fields():
            setattr(self, f.name, checked(f.name, getattr(self, f.name)))
        if self.min_new_tokens > self.max_new_tokens:
            raise DecodingError(f"min_new_tokens={self.min_new_tokens} exceeds max_new_tokens={self.max_new_tokens}")
        if self.consensus_samples == 1:
            raise DecodingError(f"consensus_samples must be 0 (off) or 2..{MAX_CONSENSUS_SAMPLES} (captions drawn "
                                "per image to choose among), got 1")

    # ---------------------------------------------------------------- combining

    def merged(self, **explicit) -> "Decoding":
        """A copy with the `explicit` settings on top (None: not given); they always win. min_new_tokens shrinks
        to fit a shorter max_new_tokens unless it was given too."""
        explicit = {k: checked(k, v) for k, v in explicit.items() if v is not None}
        values = {**self.settings(), **explicit}
        if "min_new_tokens" not in explicit:
            values["min_new_tokens"] = min(values["min_new_tokens"], values["max_new_tokens"])
        return dataclasses.replace(self, **values)

    @classmethod
    def named(cls, name: str, **explicit) -> "Decoding":
        """A named decoding (NAMED), with `explicit` settings on top."""
        if name not in NAMED:
            raise DecodingError(f"unknown decoding {name!r}; named decodings: {', '.join(NAMED)}")
        return cls().merged(**NAMED[name]).merged(**explicit)

    def as_kind(self, kind: str, **explicit) -> "Decoding":
        """This decoding turned into one of KINDS (greedy, beam, sampling, consensus), `explicit` on top. A
        consensus made from a decoding that does not draw takes CONSENSUS_DRAWS."""
        if kind not in KINDS:
            raise DecodingError(f"decoding kind must be one of {KINDS}, got {kind!r}")
        draws = self.consensus_samples or CONSENSUS_DRAWS
        return self.merged(**{"greedy": {"num_beams": 1, "do_sample": False, "consensus_samples": 0},
                              "beam": {"num_beams": max(self.num_beams, 2), "do_sample": False,
                                       "consensus_samples": 0},
                              "sampling": {"num_beams": 1, "do_sample": True, "consensus_samples": 0},
                              "consensus": {"num_beams": 1, "do_sample": False, "consensus_samples": draws}}[kind]
                           ).merged(**explicit)

    @property
    def kind(self) -> str:
        """Which of KINDS this decoding is."""
        if self.consensus_samples:
            return "consensus"
        return "sampling" if self.do_sample else "beam" if self.num_beams > 1 else "greedy"

    @property
    def samples(self) -> bool:
        """Whether captions are drawn at random (sampling, or the draws of consensus decoding)."""
        return self.do_sample or self.consensus_samples > 0

    def settings(self) -> dict:
        """The decoding settings alone, as a dict (a subclass's other fields left out)."""
        return {f.name: getattr(self, f.name) for f in decoding_fields()}

    def differences(self, before: "Decoding") -> list[str]:
        """The settings that change captions and differ from `before`, as "num_beams 3 -> 5"; beam settings only
        where either searches with beams, sampling settings only where either samples."""
        skip = set()
        if self.num_beams == before.num_beams == 1 or (self.consensus_samples and before.consensus_samples):
            skip |= {"length_penalty", "early_stopping"}
            if self.consensus_samples and before.consensus_samples:
                skip |= {"num_beams"}  # consensus draws ignore the beam width
        if not (self.samples or before.samples):
            skip |= {"top_p", "temperature"}
        return [f"{f.name} {getattr(before, f.name)!r} -> {getattr(self, f.name)!r}" for f in decoding_fields()
                if f.name not in skip and getattr(before, f.name) != getattr(self, f.name)]

    # ---------------------------------------------------------------- generate

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `model.generate` (the prompt is passed as input_ids). With consensus_samples,
        generate draws that many captions per image (runtime.captioner then picks one)."""
        if self.length_counts_prompt:  # generate's max_length/min_length count its input_ids: [DEC] + prompt
            kw = {"max_length": self.max_new_tokens, "min_length": self.min_new_tokens}
        else:
            kw = {"max_new_tokens": self.max_new_tokens, "min_new_tokens": self.min_new_tokens}
        kw.update(num_beams=1 if self.consensus_samples else self.num_beams, do_sample=self.samples)
        if kw["num_beams"] > 1:
            kw.update(length_penalty=self.length_penalty, early_stopping=self.early_stopping)
        if self.samples:
            kw.update(top_p=self.top_p, temperature=self.temperature)
        if self.consensus_samples:
            kw.update(num_return_sequences=self.consensus_samples)
        if self.repetition_penalty != 1.0:
            kw.update(repetition_penalty=self.repetition_penalty)
        if self.no_repeat_ngram_size:
            kw.update(no_repeat_ngram_size=self.no_repeat_ngram_size)
        return kw

    # ---------------------------------------------------------------- storage

    @classmethod
    def load(cls, model_dir) -> "Decoding":
        """A model folder's stored decoding (DECODING_FILE), on top of the defaults; the defaults without one."""
        path = Path(model_dir) / DECODING_FILE
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        return cls().merged(**{k: v for k, v in saved.items() if k in NAMES})


NAMED = {
    # BLIP paper (Li et al. 2022), COCO captioning: beam 3, max length 20, min length 5, lengths counting the
    # [DEC] token and the prompt (BLIP passes max_length/min_length to generate with the prompt as input_ids).
    "blip_paper": {"num_beams": 3, "max_new_tokens": 20, "min_new_tokens": 5, "length_counts_prompt": True,
                   "do_sample": False, "consensus_samples": 0},
    "greedy": {"num_beams": 1, "do_sample": False, "consensus_samples": 0},
}
KINDS = ("greedy", "beam", "sampling", "consensus")


def decoding_fields() -> tuple:
    """The fields of Decoding itself (not of a subclass)."""
    return dataclasses.fields(Decoding)


NAMES = tuple(f.name for f in decoding_fields())


def _kind(f) -> type:
    return {"int": int, "float": float, "bool": bool, "str": str}[str(f.type)]


def checked(name: str, value):
    """`value` for the setting `name` (an int where a float is expected becomes a float), or DecodingError naming
    what is wrong: an unknown name (with the closest known one), the type or the range."""
    if name not in NAMES:
        close = difflib.get_close_matches(str(name), NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(NAMES)}"
        raise DecodingError(f"unknown decoding setting {name!r}{hint}")
    kind, low, high = _BOUNDS[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise DecodingError(f"{name} must be {kind.__name__}, got {value!r}")
    if kind is str and high is not None and len(value) > high:
        raise DecodingError(f"{name} is {len(value)} characters, over the limit of {high}")
    if kind in (int, float) and low is not None and not low <= value <= high:  # NaN fails too
        raise DecodingError(f"{name} must be between {low} and {high}, got {value!r}")
    return value


def bounds() -> dict[str, tuple]:
    """{setting: (type, lowest, highest)}: what a request may set; for prompt, its length."""
    return dict(_BOUNDS)


_BOUNDS = {f.name: (_kind(f), f.metadata["low"], f.metadata["high"]) for f in decoding_fields()}
