"""One small validated dataclass per stage; every default lives in its field, with its help text beside it.

Longer than most modules on purpose: every parameter of every stage is declared here once, so names stay unique
across stages and the notebooks' parameters cells are rendered from these fields (blipnb.notebook.params).
"""
from __future__ import annotations

import codecs
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

from .errors import ParameterError
from .runtime.decoding import Decoding, DecodingError
from .runs import CAPTION_SUFFIXES, check_caption_output, read_json
from .schema import PER_IMAGE_KEYS, SPLITS

__all__ = ["ParameterError", "Config", "build_config", "load_config", "check_known", "render_parameters"]

SOURCES = ("sample", "folder", "coco_json", "flickr8k", "flickr8k_rows", "coco_karpathy")
NEAR_DUPLICATE_ACTIONS = ("warn", "drop", "fail")
BAD_DATA_ACTIONS = ("fail", "skip")
FINETUNE_METHODS = ("full", "freeze_vision", "lora")
BEST_METRICS = ("cider", "cider+bleu4")


def param(default: Any, help: str) -> Any:  # noqa: A002 - the name Hugging Face's argument dataclasses use
    """A dataclass field whose default and help text are the parameter's one home."""
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    """Where the captioned images come from and how they are split."""

    source: str = param("flickr8k", "sample, folder, coco_json, flickr8k, flickr8k_rows or coco_karpathy")
    data_dir: Optional[str] = param(None, "images folder (folder, coco_json), COCO root (coco_karpathy) or sample "
                                          "output dir")
    annotations: Optional[str] = param(None, "COCO captions JSON (coco_json) or Karpathy dataset_coco.json "
                                             "(coco_karpathy)")
    hub_id: Optional[str] = param(None, "override the hub dataset id of a hub source")
    split_seed: int = param(42, "seeds the image-level split where the source has none (also 01's gallery)")
    val_fraction: float = param(0.05, "share of images for validation where the source has no split")
    test_fraction: float = param(0.05, "share of images for test where the source has no split")
    max_train_samples: Optional[int] = param(None, "cap on train images, for quick runs")
    max_eval_samples: Optional[int] = param(None, "cap on validation and test images")
    near_duplicates: str = param("warn", "near-duplicate images across splits: warn (keep), drop (the held-out "
                                         "copy) or fail")
    on_bad_data: str = param("fail", "unusable rows or images (missing, unreadable, too large, empty caption): fail "
                                     "(list them all and stop) or skip (go on without them, listed in skipped.jsonl)")
    max_image_pixels: Optional[int] = param(50_000_000, "largest image (width x height) accepted, read from its "
                                                        "header before decoding (None: Pillow's own limit only)")
    encoding: str = param("utf-8", "text encoding of metadata.csv/.jsonl and annotation files, e.g. latin-1, "
                                   "cp1252")
    sample_train: int = param(2000, "sample source: train images")
    sample_validation: int = param(200, "sample source: validation images")
    sample_test: int = param(200, "sample source: test images")
    sample_image_size: int = param(64, "sample source: image side in pixels")
    sample_max_shapes: int = param(2, "sample source: up to this many shapes per image")
    sample_hard_fraction: float = param(0.1, "sample source: share of noisy, cluttered images")
    sample_seed: int = param(0, "sample source: generator seed")

    def __post_init__(self):
        _one_of("source", self.source, SOURCES)
        _one_of("near_duplicates", self.near_duplicates, NEAR_DUPLICATE_ACTIONS)
        _one_of("on_bad_data", self.on_bad_data, BAD_DATA_ACTIONS)
        _positive_or_none("max_image_pixels", self.max_image_pixels)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ParameterError(f"parameter 'encoding' names no known text encoding: {self.encoding!r} "
                                 "(e.g. 'utf-8', 'latin-1', 'cp1252')") from None
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

    model_id: str = param("Salesforce/blip-image-captioning-base", "hub id or local dir to start from")
    from_scratch: bool = param(False, "build a tiny BLIP offline instead of loading model_id")
    image_size: int = param(64, "from_scratch: input resolution in pixels")
    patch_size: int = param(16, "from_scratch: vision patch size")
    hidden_size: int = param(128, "from_scratch: width of both towers")
    num_layers: int = param(2, "from_scratch: layers in each tower")
    num_heads: int = param(8, "from_scratch: attention heads (8 bound shapes to places better than 4)")
    vocab_size: int = param(200, "from_scratch: WordPiece vocabulary trained on the train captions")
    attn_implementation: str = param("sdpa", "sdpa (blipnb's patch) or eager (HF's own BLIP attention)")

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

    epochs: float = param(4, "passes over the train (image, caption) pairs")
    learning_rate: float = param(5e-5, "peak AdamW learning rate")
    weight_decay: float = param(0.0, "AdamW weight decay")
    lr_scheduler: str = param("linear", "transformers scheduler name: linear, cosine, constant, ...")
    warmup_ratio: float = param(0.0, "share of steps spent warming up")
    batch_size: int = param(8, "train pairs per device per step (with shared_vision: images, each with all its "
                               "captions)")
    eval_batch_size: int = param(8, "validation pairs per device per step")
    grad_accum_steps: int = param(2, "gradient accumulation steps")
    effective_batch_size: Optional[int] = param(None, "train pairs per optimiser step over all processes; when set "
                                                      "it replaces grad_accum_steps with effective / (batch_size x "
                                                      "processes), which must divide")
    gradient_checkpointing: bool = param(True, "trade compute for memory")
    finetune_method: str = param("full", "full, freeze_vision (train the text decoder only) or lora (peft adapters; "
                                         "the vision tower frozen unless lora_targets names qkv)")
    lora_r: int = param(16, "lora: adapter rank")
    lora_alpha: int = param(32, "lora: adapter scale numerator (the update is scaled by lora_alpha / lora_r)")
    lora_dropout: float = param(0.05, "lora: dropout on the adapters' input")
    lora_targets: str = param("query,value", "lora: comma-separated module names to adapt; query,value are the "
                                             "text decoder's self- and cross-attention, qkv the vision tower's")
    cache_embeddings: bool = param(False, "with a frozen vision tower: vision tower once per image, the decoder "
                                          "trains on its output")
    pixel_cache: bool = param(False, "decode and resize images once to uint8; normalise on the device")
    cache_dir: Optional[str] = param(None, "pixel cache folder (None: <run_dir>/cache); keyed, so runs may share it")
    label_smoothing: float = param(0.0, "label smoothing of the caption loss (BLIP used 0.1)")
    max_txt_len: int = param(40, "tokens per caption, prompt included; longer captions are truncated")
    logging_steps: int = param(50, "log the train loss every n steps")
    eval_strategy: str = param("epoch", "validate every epoch, every eval_steps (steps) or never (no)")
    eval_steps: Optional[int] = param(None, "evaluate every n steps, with eval_strategy steps")
    eval_max_images: Optional[int] = param(500, "validation images captioned per evaluation, a random "
                                                 "sample seeded by split_seed (None: all)")
    best_metric: str = param("cider", "validation score that picks the best checkpoint: cider, or cider+bleu4 "
                                      "(the BLIP paper's choice)")
    save_total_limit: int = param(2, "checkpoints kept")
    seed: int = param(42, "Trainer seed")
    precision: str = param("auto", "auto (bf16 on a supporting GPU, else fp16 on GPU, fp32 on CPU), bf16, fp16 "
                                   "or fp32")
    max_steps: int = param(-1, "stop after n optimiser steps (-1: use epochs)")
    dataloader_workers: int = param(0, "DataLoader worker processes")
    shared_vision: bool = param(False, "batch whole images with all their captions; vision tower once per image")
    compile: bool = param(False, "torch.compile the model (with shared_vision: the vision tower)")
    report_to: str = param("tensorboard", "Trainer integrations: tensorboard or none")
    resume_from_checkpoint: Union[bool, str] = param(False, "auto (the run's latest checkpoint, if any), a "
                                                            "checkpoint folder, or False (start afresh)")
    num_processes: int = param(1, "training processes: 1 trains in this kernel, more launch torchrun on this "
                                  "machine")

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
        _positive_or_none("effective_batch_size", self.effective_batch_size)
        _one_of("best_metric", self.best_metric, BEST_METRICS)
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ParameterError("eval_strategy='steps' needs eval_steps")
        _one_of("finetune_method", self.finetune_method, FINETUNE_METHODS)
        _at_least("lora_r", self.lora_r, 1)
        _at_least("lora_alpha", self.lora_alpha, 1)
        _in_range("lora_dropout", self.lora_dropout, 0.0, 1.0)
        if not self.lora_target_modules():
            raise ParameterError("parameter 'lora_targets' names no module, e.g. 'query,value'")
        _at_least("num_processes", self.num_processes, 1)
        if self.resume_from_checkpoint is True or self.resume_from_checkpoint == "":
            raise ParameterError("parameter 'resume_from_checkpoint' must be 'auto', a checkpoint folder or False")
        if self.cache_embeddings and not self.vision_frozen:
            raise ParameterError("cache_embeddings=True needs a frozen vision tower (finetune_method='freeze_vision',"
                                 " or 'lora' without qkv in lora_targets): a trained tower's embeddings change every "
                                 "step")

    def accumulation_steps(self, processes: int = 1) -> int:
        """Gradient accumulation steps: grad_accum_steps, or what makes effective_batch_size with `processes`."""
        if self.effective_batch_size is None:
            return self.grad_accum_steps
        per_step = self.batch_size * processes
        if self.effective_batch_size % per_step:
            raise ParameterError(f"effective_batch_size={self.effective_batch_size} is not a multiple of batch_size "
                                 f"x processes = {self.batch_size} x {processes}")
        return self.effective_batch_size // per_step

    def lora_target_modules(self) -> list[str]:
        """lora_targets as a list of module names."""
        return [name for name in self.lora_targets.replace(" ", "").split(",") if name]

    @property
    def vision_frozen(self) -> bool:
        """Whether the vision tower's weights stay as they are: freeze_vision, or LoRA on the text decoder only."""
        return self.finetune_method == "freeze_vision" or (
            self.finetune_method == "lora" and "qkv" not in self.lora_target_modules())


@dataclass
class GenerationConfig(Decoding):
    """Decoding (every setting's default, help and bounds live in blipnb.runtime.decoding.Decoding, the one value
    all captioning takes) and how many images one generate call holds."""

    gen_batch_size: int = param(64, "images per generate call")

    def __post_init__(self):
        try:
            super().__post_init__()
        except DecodingError as e:
            raise ParameterError(f"parameter {e}") from None
        _at_least("gen_batch_size", self.gen_batch_size, 1)

    def merged(self, **explicit) -> "GenerationConfig":
        """A validated copy with the `explicit` settings on top (None: not given): they always win, and
        min_new_tokens shrinks to fit a shorter max_new_tokens unless it was given too."""
        explicit = {k: v for k, v in explicit.items() if v is not None}
        batch = explicit.pop("gen_batch_size", self.gen_batch_size)
        try:
            merged = Decoding.merged(self, **explicit)
        except DecodingError as e:
            raise ParameterError(f"parameter {e}") from None
        return dataclasses.replace(merged, gen_batch_size=batch)


@dataclass
class EvalConfig:
    """Scoring on the reported split, and the trust checks around it (03)."""

    eval_split: str = param("test", "split to report on (choose anything on validation, report on test)")
    do_spice: bool = param(True, "try SPICE (needs Stanford CoreNLP, which it downloads; unavailable offline)")
    spice_subsample: int = param(1500, "images scored by SPICE (it is slow)")
    n_bootstrap: int = param(1000, "bootstrap resamples of images for the 95% CIs")
    bootstrap_seed: int = param(0, "seed of the resampling")
    plausible_bleu4: Optional[float] = param(None, "override the source's plausible BLEU-4 ceiling of the "
                                                   "sanity check")
    plausible_cider: Optional[float] = param(None, "override the source's plausible CIDEr ceiling of the "
                                                   "sanity check")

    def __post_init__(self):
        _one_of("eval_split", self.eval_split, SPLITS)
        _at_least("spice_subsample", self.spice_subsample, 1)
        _at_least("n_bootstrap", self.n_bootstrap, 0)


@dataclass
class SweepConfig:
    """A decoding sweep on validation (03): the best setting is then used on test."""

    sweep_num_beams: str = param("", "comma-separated beams, e.g. '1,3,5' (all three sweep lists empty: no sweep)")
    sweep_length_penalty: str = param("", "comma-separated length penalties, e.g. '0.8,1.0,1.2'")
    sweep_max_new_tokens: str = param("", "comma-separated caption lengths in tokens, e.g. '15,20,30'")
    sweep_max_images: Optional[int] = param(500, "validation images captioned per sweep setting, a random sample "
                                                  "seeded by split_seed (None: all)")

    def __post_init__(self):
        self.grid()  # every list parses
        _positive_or_none("sweep_max_images", self.sweep_max_images)

    def grid(self) -> dict[str, list]:
        """The swept decoding settings (GenerationConfig names -> values); empty when there is no sweep."""
        grid = {"num_beams": _parse_list("sweep_num_beams", self.sweep_num_beams, int),
                "length_penalty": _parse_list("sweep_length_penalty", self.sweep_length_penalty, float),
                "max_new_tokens": _parse_list("sweep_max_new_tokens", self.sweep_max_new_tokens, int)}
        return {k: v for k, v in grid.items() if v}


@dataclass
class AnalysisConfig:
    """The error analysis (04)."""

    k_examples: int = param(8, "images in each worst / best gallery")
    score_key: str = param("CIDEr", "per-image metric that ranks images and slices")
    min_slice_size: int = param(20, "images whose references mention a word before that word is a slice")

    def __post_init__(self):
        _at_least("k_examples", self.k_examples, 1)
        _at_least("min_slice_size", self.min_slice_size, 1)
        _one_of("score_key", self.score_key, PER_IMAGE_KEYS)  # there is no per-image sacreBLEU to rank by


@dataclass
class HubConfig:
    """Publishing the export to the Hugging Face hub (03)."""

    push_to_hub: bool = param(False, "upload the export and its model card (needs the network and a token)")
    hub_model_id: Optional[str] = param(None, "hub repo for push_to_hub, e.g. me/blip-flickr8k")

    def __post_init__(self):
        if self.push_to_hub and not self.hub_model_id:
            raise ParameterError("push_to_hub=True needs hub_model_id (e.g. 'me/blip-flickr8k')")


@dataclass
class DemoConfig:
    """The inference demo (05): which image to show and which folder to caption to a file."""

    image_path: Optional[str] = param(None, "image for the static comparison (None: the first test image)")
    caption_folder_path: Optional[str] = param(None, "folder of images to caption (None: the folder holding the "
                                                     "test images)")
    caption_output: str = param("captions.csv", f"{' or '.join(CAPTION_SUFFIXES)}; a relative path is inside "
                                                "run_dir")

    def __post_init__(self):
        for name in ("image_path", "caption_folder_path"):
            if getattr(self, name) == "":
                raise ParameterError(f"parameter {name!r} must be a path or None, got ''")
        check_caption_output(self.caption_output, "caption_output")


STAGES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "generation": GenerationConfig,
          "eval": EvalConfig, "sweep": SweepConfig, "analysis": AnalysisConfig, "hub": HubConfig,
          "demo": DemoConfig}


@dataclass
class Config:
    """Every stage's config for one run directory."""

    run_dir: str = param("runs/default", "the run directory every notebook reads from and writes into")
    overwrite: bool = param(False, "let 02 reuse a run_dir holding another config's run: its checkpoints, logs, "
                                   "model, predictions and figures are removed first (else 02 refuses)")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def flat(self) -> dict:
        """The flat parameter dict this config was built from (round-trips through build_config)."""
        out = {"run_dir": self.run_dir, "overwrite": self.overwrite}
        for stage in STAGES:
            out.update(dataclasses.asdict(getattr(self, stage)))
        return out


# Parameter names are unique across stages, so a flat dict (a notebook's parameters) maps onto them.
RUN_FIELDS = tuple(f for f in fields(Config) if f.name not in STAGES)  # run_dir, overwrite: the run's own
FIELDS = {f.name: f for f in RUN_FIELDS}
FIELDS |= {f.name: f for cls in STAGES.values() for f in fields(cls)}
assert len(FIELDS) == len(RUN_FIELDS) + sum(len(fields(c)) for c in STAGES.values()), "parameter names are unique"
PARAMETERS = frozenset(FIELDS)


def check_known(params: dict, where: str = "", fields_of: type | None = None) -> None:
    """Raise a ParameterError naming each unknown parameter, with the closest known name."""
    known = PARAMETERS if fields_of is None else {f.name for f in fields(fields_of)}
    unknown = sorted(k for k in params if k not in known)
    if not unknown:
        return
    origin = f" in {where}" if where else ""
    raise ParameterError(f"unknown parameter(s){origin}: {did_you_mean(unknown, known)}. "
                         f"Known parameters: {', '.join(sorted(known))}")


def did_you_mean(names, known) -> str:
    """`'lerning_rate' (did you mean 'learning_rate'?), ...`: each name with the closest known one, if any."""
    hints = []
    for name in names:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(hints)


def build_config(params: dict | None = None, base: Config | None = None) -> Config:
    """Build the validated Config from a flat dict; an unknown key or a wrong type raises naming it."""
    params = dict(params or {})
    check_known(params)
    flat = base.flat() if base is not None else {}
    flat.update(params)
    run_dir = _check_type("run_dir", flat.pop("run_dir", FIELDS["run_dir"].default), str)
    overwrite = _check_type("overwrite", flat.pop("overwrite", FIELDS["overwrite"].default), bool)
    stages = {}
    for stage, cls in STAGES.items():
        hints = typing.get_type_hints(cls)
        stages[stage] = cls(**{f.name: _check_type(f.name, flat[f.name], hints[f.name])
                               for f in fields(cls) if f.name in flat})
    return Config(run_dir=str(run_dir), overwrite=overwrite, **stages)


def default_of(name: str) -> Any:
    """The default value of a parameter: its dataclass field's."""
    return FIELDS[name].default


def help_of(name: str) -> str:
    """The help text of a parameter: its dataclass field's metadata."""
    return FIELDS[name].metadata["help"]


def render_parameters(names: list[str], overrides: dict | None = None) -> str:
    """A notebook parameters cell for `names`: `name = default  # help`, literal-only, in the given order."""
    overrides = overrides or {}
    lines = []
    for name in names:
        value = overrides.get(name, default_of(name))
        lines.append(f"{name} = {_literal(value)}  # {help_of(name)}")
    return "\n".join(lines)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def load_config(path) -> Config:
    """Read a config.json written by `Config.to_dict` back into a validated Config."""
    stored = read_json(path)
    flat = {"run_dir": stored.get("run_dir", FIELDS["run_dir"].default)}
    for value in stored.values():
        if isinstance(value, dict):  # one dict per stage; older files grouped the stages differently
            flat.update(value)
    flat.pop("decoding_preset", None)  # older runs stored a preset's name beside the values it had set
    return build_config({k: v for k, v in flat.items() if k in PARAMETERS})


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
