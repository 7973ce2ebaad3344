"""One small validated dataclass per stage, and the mapping from flat parameters onto them."""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Optional

class ParameterError(ValueError):
    """A parameter is unknown, mistyped or out of range; the message names it."""


SOURCES = ("sample", "folder", "coco_json", "flickr8k", "flickr8k_rows", "coco_karpathy")
NEAR_DUPLICATE_ACTIONS = ("warn", "drop", "fail")


@dataclass
class DataConfig:
    """Where the captioned images come from and how they are split."""

    source: str = "flickr8k"  # one of SOURCES
    data_dir: Optional[str] = None  # folder / coco_json image dir / COCO root / sample output dir
    annotations: Optional[str] = None  # coco_json annotation file, or a local Karpathy dataset_coco.json
    hub_id: Optional[str] = None  # override the hub dataset id of a hub source
    split_seed: int = 42  # seeds image-level splits where the source gives none
    val_fraction: float = 0.05  # share of images for validation where the source gives no split
    test_fraction: float = 0.05  # share of images for test where the source gives no split
    max_train_samples: Optional[int] = None  # cap on train images (for quick runs)
    max_eval_samples: Optional[int] = None  # cap on validation and test images
    near_duplicates: str = "warn"  # what a near-duplicate image across splits does: warn, drop or fail
    sample_train: int = 2000  # sample source: train images
    sample_validation: int = 200  # sample source: validation images
    sample_test: int = 200  # sample source: test images
    sample_image_size: int = 64  # sample source: image side in pixels
    sample_max_shapes: int = 2  # sample source: shapes per image, 1..max
    sample_hard_fraction: float = 0.1  # sample source: share of noisy, cluttered images
    sample_seed: int = 0  # sample source: generator seed

    def __post_init__(self):
        _one_of("source", self.source, SOURCES)
        _one_of("near_duplicates", self.near_duplicates, NEAR_DUPLICATE_ACTIONS)
        for name in ("val_fraction", "test_fraction", "sample_hard_fraction"):
            _in_range(name, getattr(self, name), 0.0, 1.0)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ParameterError("val_fraction + test_fraction must leave some images for training")
        for name in ("max_train_samples", "max_eval_samples"):
            _positive_or_none(name, getattr(self, name))
        for name in ("sample_train", "sample_validation", "sample_test"):
            _at_least(name, getattr(self, name), 1)
        _at_least("sample_image_size", self.sample_image_size, 16)
        _at_least("sample_max_shapes", self.sample_max_shapes, 1)
        if self.source in ("folder", "coco_json") and not self.data_dir:
            raise ParameterError(f"source={self.source!r} needs data_dir (the folder holding the images)")
        if self.source == "coco_json" and not self.annotations:
            raise ParameterError("source='coco_json' needs annotations (the COCO captions JSON file)")
        if self.source == "coco_karpathy" and not self.data_dir:
            raise ParameterError("source='coco_karpathy' needs data_dir (the COCO root with train2014/ and val2014/)")


@dataclass
class ModelConfig:
    """Which BLIP to start from: a hub id, a local directory, or a tiny one built from scratch."""

    model_id: str = "Salesforce/blip-image-captioning-base"  # hub id or local dir
    from_scratch: bool = False  # build a tiny BLIP offline instead of loading model_id
    image_size: int = 64  # from_scratch: input resolution
    patch_size: int = 16  # from_scratch: vision patch size
    hidden_size: int = 128  # from_scratch: width of both towers
    num_layers: int = 2  # from_scratch: layers in each tower
    num_heads: int = 4  # from_scratch: attention heads
    vocab_size: int = 200  # from_scratch: WordPiece vocabulary trained on the train captions
    attn_implementation: str = "sdpa"  # "sdpa" (blipnb's patch) or "eager" (HF's own BLIP attention)

    def __post_init__(self):
        _one_of("attn_implementation", self.attn_implementation, ("sdpa", "eager"))
        for name in ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "vocab_size"):
            _at_least(name, getattr(self, name), 1)
        if self.image_size % self.patch_size:
            raise ParameterError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ParameterError(f"hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads}")


@dataclass
class TrainConfig:
    """Optimisation. Defaults follow the project blipnb replaces."""

    epochs: float = 4  # passes over the train pairs
    learning_rate: float = 5e-5  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    lr_scheduler: str = "linear"  # transformers scheduler name: linear, cosine, constant, ...
    warmup_ratio: float = 0.0  # share of steps spent warming up
    batch_size: int = 8  # per-device train batch: pairs; with shared_vision, images (with all their captions)
    eval_batch_size: int = 8  # per-device batch for validation loss
    grad_accum_steps: int = 2  # gradient accumulation steps
    gradient_checkpointing: bool = True  # trade compute for memory
    freeze_vision: bool = False  # train the text decoder only
    cache_embeddings: bool = False  # with freeze_vision: run the vision tower once per image, keep the output
    pixel_cache: bool = False  # decode+resize images once into a uint8 memmap; normalise on the device
    cache_dir: Optional[str] = None  # pixel cache folder (None: <run_dir>/cache); keyed, so runs may share it
    label_smoothing: float = 0.0  # BLIP used 0.1
    max_txt_len: int = 40  # captions are truncated to this many tokens
    logging_steps: int = 50  # log the train loss every n steps
    eval_strategy: str = "epoch"  # when to evaluate on validation: epoch, steps or no
    eval_steps: Optional[int] = None  # with eval_strategy="steps"
    eval_max_images: Optional[int] = 500  # validation images captioned per evaluation (None: all)
    save_total_limit: int = 2  # checkpoints kept
    seed: int = 42  # Trainer seed
    precision: str = "auto"  # auto (bf16 on a supporting GPU, else fp16 on GPU, fp32 on CPU), bf16, fp16, fp32
    max_steps: int = -1  # stop after this many optimiser steps (-1: use epochs)
    dataloader_workers: int = 0  # DataLoader worker processes
    shared_vision: bool = False  # batch whole images with all captions; run the vision tower once per image
    compile: bool = False  # torch.compile the model
    report_to: str = "tensorboard"  # Trainer integrations: tensorboard or none

    def __post_init__(self):
        _one_of("eval_strategy", self.eval_strategy, ("epoch", "steps", "no"))
        _one_of("precision", self.precision, ("auto", "bf16", "fp16", "fp32"))
        _one_of("report_to", self.report_to, ("tensorboard", "none"))
        for name in ("learning_rate", "epochs"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch_size", "eval_batch_size", "grad_accum_steps", "max_txt_len", "logging_steps"):
            _at_least(name, getattr(self, name), 1)
        _in_range("label_smoothing", self.label_smoothing, 0.0, 1.0)
        _in_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        _positive_or_none("eval_steps", self.eval_steps)
        _positive_or_none("eval_max_images", self.eval_max_images)
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ParameterError("eval_strategy='steps' needs eval_steps")
        if self.cache_embeddings and not self.freeze_vision:
            raise ParameterError("cache_embeddings=True needs freeze_vision=True: a trained vision tower's "
                                 "embeddings change every step")


DECODING_PRESETS = {
    # BLIP paper (Li et al. 2022), COCO captioning: beam 3, max length 20, min length 5.
    "blip_paper": dict(num_beams=3, max_new_tokens=20, min_new_tokens=5, do_sample=False),
    "greedy": dict(num_beams=1, do_sample=False),
}


@dataclass
class GenerationConfig:
    """Decoding. Captions are generated from pixel_values only, plus this optional fixed prompt."""

    max_new_tokens: int = 30  # longest caption in tokens
    min_new_tokens: int = 0  # shortest caption in tokens
    num_beams: int = 5  # beam width (1: greedy)
    length_penalty: float = 1.0  # >1 favours longer beams
    early_stopping: bool = True  # stop a beam search once num_beams captions are finished
    do_sample: bool = False  # nucleus sampling instead of search
    top_p: float = 0.9  # nucleus mass when sampling
    temperature: float = 1.0  # sampling temperature
    prompt: str = ""  # fixed text prefix, e.g. "a picture of "; masked from the loss, stripped from output
    gen_batch_size: int = 64  # images per generate call
    decoding_preset: Optional[str] = None  # "blip_paper" or "greedy": overrides the settings above

    def __post_init__(self):
        if self.decoding_preset is not None:
            _one_of("decoding_preset", self.decoding_preset, tuple(DECODING_PRESETS))
            for k, v in DECODING_PRESETS[self.decoding_preset].items():
                setattr(self, k, v)
        for name in ("max_new_tokens", "num_beams", "gen_batch_size"):
            _at_least(name, getattr(self, name), 1)
        _at_least("min_new_tokens", self.min_new_tokens, 0)
        if self.min_new_tokens > self.max_new_tokens:
            raise ParameterError(f"min_new_tokens={self.min_new_tokens} exceeds max_new_tokens={self.max_new_tokens}")
        _in_range("top_p", self.top_p, 0.0, 1.0)
        if self.temperature <= 0:
            raise ParameterError(f"temperature must be > 0, got {self.temperature}")

    def generate_kwargs(self) -> dict:
        """Keyword arguments for `model.generate` (the prompt is handled by blipnb.generation)."""
        kw = dict(max_new_tokens=self.max_new_tokens, min_new_tokens=self.min_new_tokens,
                  num_beams=self.num_beams, do_sample=self.do_sample)
        if self.num_beams > 1:
            kw.update(length_penalty=self.length_penalty, early_stopping=self.early_stopping)
        if self.do_sample:
            kw.update(top_p=self.top_p, temperature=self.temperature)
        return kw


@dataclass
class EvalConfig:
    """Scoring and the trust checks around it."""

    eval_split: str = "test"  # split to report on (choose on validation, report on test)
    do_spice: bool = True  # try SPICE (needs Stanford CoreNLP, downloaded on first use)
    spice_subsample: int = 1500  # images scored by SPICE (it is slow)
    n_bootstrap: int = 1000  # bootstrap resamples of images for the 95% CIs
    bootstrap_seed: int = 0  # seed of the resampling
    plausible_bleu4: Optional[float] = None  # override the source's plausible BLEU-4 ceiling
    plausible_cider: Optional[float] = None  # override the source's plausible CIDEr ceiling
    k_examples: int = 8  # error analysis (04): images in each worst-k / best-k gallery
    score_key: str = "CIDEr"  # error analysis (04): per-image metric that ranks images and slices
    min_slice_size: int = 20  # error analysis (04): images a slice needs before it is scored
    sweep_num_beams: str = ""  # decoding sweep on validation: comma-separated beams, e.g. "1,3,5" ("" = no sweep)
    sweep_length_penalty: str = ""  # decoding sweep: comma-separated length penalties, e.g. "0.8,1.0,1.2"
    sweep_max_new_tokens: str = ""  # decoding sweep: comma-separated caption lengths, e.g. "15,20,30"
    sweep_max_images: Optional[int] = 500  # validation images the sweep captions per setting (None: all)
    push_to_hub: bool = False  # upload the export with its model card (needs the network and a token)
    hub_model_id: Optional[str] = None  # the hub repo to push to, e.g. "me/blip-flickr8k"

    def __post_init__(self):
        from .scoring import METRIC_KEYS, SACREBLEU  # here: scoring imports pycocoevalcap, config stays light

        _one_of("eval_split", self.eval_split, ("train", "validation", "test"))
        _at_least("spice_subsample", self.spice_subsample, 1)
        _at_least("n_bootstrap", self.n_bootstrap, 0)
        _at_least("k_examples", self.k_examples, 1)
        _at_least("min_slice_size", self.min_slice_size, 1)
        # sacreBLEU is corpus-level only: there is no per-image sacreBLEU to rank by
        _one_of("score_key", self.score_key, tuple(k for k in METRIC_KEYS if k != SACREBLEU))
        for name, kind in (("sweep_num_beams", int), ("sweep_length_penalty", float), ("sweep_max_new_tokens", int)):
            _parse_list(name, getattr(self, name), kind)
        _positive_or_none("sweep_max_images", self.sweep_max_images)
        if self.push_to_hub and not self.hub_model_id:
            raise ParameterError("push_to_hub=True needs hub_model_id (e.g. 'me/blip-flickr8k')")

    def sweep_grid(self) -> dict[str, list]:
        """The swept decoding settings (GenerationConfig names -> values); empty when there is no sweep."""
        grid = {"num_beams": _parse_list("sweep_num_beams", self.sweep_num_beams, int),
                "length_penalty": _parse_list("sweep_length_penalty", self.sweep_length_penalty, float),
                "max_new_tokens": _parse_list("sweep_max_new_tokens", self.sweep_max_new_tokens, int)}
        return {k: v for k, v in grid.items() if v}


CAPTION_OUTPUT_SUFFIXES = (".csv", ".jsonl")


@dataclass
class DemoConfig:
    """The inference demo (05): which image to show and which folder to caption to a file."""

    image_path: str | None = None  # image shown in the static comparison (None: the first test image)
    caption_folder_path: str | None = None  # folder captioned to a file (None: the folder of the test images)
    caption_output: str = "captions.csv"  # .csv or .jsonl; relative paths are inside the run dir

    def __post_init__(self):
        for name in ("image_path", "caption_folder_path"):
            if getattr(self, name) == "":
                raise ParameterError(f"parameter {name!r} must be a path or None, got ''")
        if not self.caption_output.lower().endswith(CAPTION_OUTPUT_SUFFIXES):
            raise ParameterError(f"parameter 'caption_output' must end in .csv or .jsonl, got {self.caption_output!r}")


@dataclass
class Config:
    """Every stage's config for one run directory."""

    run_dir: str = "runs/default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """The flat parameter dict this config was built from (round-trips through build_config)."""
        out = {"run_dir": self.run_dir}
        for stage in STAGES:
            out.update(dataclasses.asdict(getattr(self, stage)))
        return out


STAGES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "generation": GenerationConfig,
          "eval": EvalConfig, "demo": DemoConfig}
# Parameter names are unique across stages, so a flat dict (a notebook's parameters) maps onto them.
_OWNER = {f.name: stage for stage, cls in STAGES.items() for f in fields(cls)}
assert len(_OWNER) == sum(len(fields(c)) for c in STAGES.values()), "parameter names must be unique across stages"
PARAMETERS = frozenset(_OWNER) | {"run_dir"}


def build_config(params: dict | None = None, base: Config | None = None) -> Config:
    """Build the validated Config from a flat dict; an unknown key or a wrong type raises ValueError naming it."""
    params = dict(params or {})
    unknown = sorted(k for k in params if k not in PARAMETERS)
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, PARAMETERS, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ParameterError(f"unknown parameter(s): {', '.join(hints)}. Known parameters: {', '.join(sorted(PARAMETERS))}")
    flat = base.flat() if base is not None else {}
    flat.update(params)
    run_dir = flat.pop("run_dir", Config.run_dir)
    _check_type("run_dir", run_dir, str)
    stages = {}
    for stage, cls in STAGES.items():
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in fields(cls):
            if f.name in flat:
                kwargs[f.name] = _check_type(f.name, flat[f.name], hints[f.name])
        stages[stage] = cls(**kwargs)
    return Config(run_dir=str(run_dir), **stages)


_NOT_PARAMETERS = {"In", "Out", "exit", "quit", "get_ipython"}
_SEEN = "_blipnb_parameter_names"  # stored in the namespace by the first resolution


def config_from_namespace(namespace: dict, base: Config | None = None) -> Config:
    """Build the Config from a notebook's globals: every public lower-case literal (str, number, bool, None).

    A parameters cell holds literals only and papermill injects overrides as literals, so a mistyped injected
    name shows up here as an unknown parameter (papermill itself only warns). When the cell is run again
    interactively, later cells' variables are in the namespace too: new unknown names then only warn.
    """
    import warnings

    candidates = {k: v for k, v in namespace.items()
                  if not k.startswith("_") and k not in _NOT_PARAMETERS and k == k.lower()
                  and (v is None or isinstance(v, (str, int, float, bool)))}
    seen = namespace.get(_SEEN)
    if seen is not None:
        later = sorted(k for k in candidates if k not in seen and k not in PARAMETERS)
        if later:
            warnings.warn(f"ignoring non-parameter variables defined after the parameters cell: {later}",
                          stacklevel=3)
        candidates = {k: v for k, v in candidates.items() if k in seen or k in PARAMETERS}
    _short_tracebacks_in_notebooks()
    cfg = build_config(candidates, base=base)
    namespace[_SEEN] = frozenset(candidates)
    return cfg


def _short_tracebacks_in_notebooks() -> None:
    """In IPython, show blipnb's user-facing errors as one clear message instead of a long traceback."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "_blipnb_short_errors", False):
        return
    from .data import DataSourceUnavailable
    from .images import BadImageError
    from .modeling import ModelUnavailable

    def handler(self, etype, value, tb, tb_offset=None):
        stb = [f"{etype.__name__}: {value}"]
        self._showtraceback(etype, value, stb)  # still an error: papermill and nbval stop here
        return stb

    shell.set_custom_exc((ParameterError, DataSourceUnavailable, ModelUnavailable, BadImageError), handler)
    shell._blipnb_short_errors = True


def _parse_list(name: str, text: str, kind: type) -> list:
    """Parse a comma-separated parameter such as "1,3,5"; a bad item raises naming the parameter."""
    try:
        values = [kind(item) for item in text.replace(" ", "").split(",") if item]
    except ValueError:
        raise ParameterError(f"parameter {name!r} must be comma-separated {kind.__name__}s, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise ParameterError(f"parameter {name!r} must hold positive values, got {text!r}")
    return values


def _check_type(name: str, value: Any, hint: Any) -> Any:
    allowed = _allowed_types(hint)
    if value is None:
        if type(None) in allowed:
            return None
        raise ParameterError(f"parameter {name!r} must not be None")
    if bool in allowed and isinstance(value, bool):
        return value
    if isinstance(value, bool):  # bool is an int subclass: True is never a valid number here
        raise ParameterError(f"parameter {name!r} must be {_describe(allowed)}, got bool {value!r}")
    if float in allowed and isinstance(value, int):
        return float(value)
    for t in allowed:
        if t is not type(None) and isinstance(value, t):
            return value
    raise ParameterError(f"parameter {name!r} must be {_describe(allowed)}, got {type(value).__name__} {value!r}")


def _allowed_types(hint: Any) -> tuple:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _describe(allowed: tuple) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in allowed)


def _one_of(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ParameterError(f"parameter {name!r} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _in_range(name: str, value: float, lo: float, hi: float) -> None:
    if not lo <= value <= hi:
        raise ParameterError(f"parameter {name!r} must be in [{lo}, {hi}], got {value}")


def _at_least(name: str, value: int, lo: int) -> None:
    if value < lo:
        raise ParameterError(f"parameter {name!r} must be >= {lo}, got {value}")


def _positive_or_none(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise ParameterError(f"parameter {name!r} must be a positive integer or None, got {value}")


def load_config(path) -> Config:
    """Read a config.json written by `Config.to_dict` back into a validated Config."""
    from .runs import read_json

    stored = read_json(path)
    flat = {"run_dir": stored.get("run_dir", Config.run_dir)}
    for stage in STAGES:
        flat.update(stored.get(stage, {}))
    flat.pop("decoding_preset", None)  # already applied to the stored decoding values
    return build_config({k: v for k, v in flat.items() if k in PARAMETERS})


def load_preset(path, **overrides) -> Config:
    """Build a Config from a papermill parameters file (e.g. notebooks/params/sample.yaml) plus overrides."""
    import yaml

    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    return build_config({**params, **overrides})
