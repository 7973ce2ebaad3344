"""One small validated dataclass per stage; every default lives in its field, with its help text beside it.

Parameter names are unique across stages, so a flat dict (a notebook's parameters, a preset file, -p overrides)
maps onto them: `build_config`. The stages live in data (01, 02), training (02: model and optimisation) and
evaluation (decoding, 03, 04, 05).
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ParameterError
from ..runs import read_json
from .data import DataConfig
from .evaluation import AnalysisConfig, DemoConfig, EvalConfig, GenerationConfig, HubConfig, SweepConfig
from .base import check_type, param
from .training import FROM_SCRATCH, LORA, ModelConfig, TrainConfig

__all__ = ["ParameterError", "Config", "DataConfig", "ModelConfig", "TrainConfig", "GenerationConfig", "EvalConfig",
           "SweepConfig", "AnalysisConfig", "HubConfig", "DemoConfig", "build_config", "load_config", "check_known",
           "did_you_mean", "default_of", "help_of", "STAGES", "FIELDS", "PARAMETERS", "RUN_FIELDS"]

STAGES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "generation": GenerationConfig,
          "eval": EvalConfig, "sweep": SweepConfig, "analysis": AnalysisConfig, "hub": HubConfig,
          "demo": DemoConfig}


@dataclass
class Config:
    """Every stage's config for one run directory."""

    run_dir: str = param("runs/default", "the run directory every notebook reads from and writes into")
    preset: str = param("", "a preset's name (sample, smoke, ...; notebooks/params/NAME.yaml) or a YAML file: its "
                            "values replace this cell's defaults; a value you change here, or pass with -p, wins")
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
        out = {"run_dir": self.run_dir, "overwrite": self.overwrite, "preset": self.preset}
        for stage in STAGES:
            out.update(dataclasses.asdict(getattr(self, stage)))
        return out


# Parameter names are unique across stages, so a flat dict (a notebook's parameters) maps onto them.
RUN_FIELDS = tuple(f for f in fields(Config) if f.name not in STAGES)  # run_dir, preset, overwrite: the run's own
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
    """Build the validated Config from a flat dict; an unknown key, a wrong type, or a value given for a parameter
    that does nothing in this config (not_applicable) raises naming it."""
    params = dict(params or {})
    check_known(params)
    flat = base.flat() if base is not None else {}
    flat.update(params)
    run_dir = check_type("run_dir", flat.pop("run_dir", FIELDS["run_dir"].default), str)
    overwrite = check_type("overwrite", flat.pop("overwrite", FIELDS["overwrite"].default), bool)
    preset = check_type("preset", flat.pop("preset", FIELDS["preset"].default), str)
    stages = {}
    for stage, cls in STAGES.items():
        hints = typing.get_type_hints(cls)
        stages[stage] = cls(**{f.name: check_type(f.name, flat[f.name], hints[f.name])
                               for f in fields(cls) if f.name in flat})
    cfg = Config(run_dir=str(run_dir), overwrite=overwrite, preset=preset, **stages)
    ignored = not_applicable(cfg)
    for name, value in params.items():
        if name in ignored and value != FIELDS[name].default:
            raise ParameterError(f"parameter {name!r} does not apply here: {ignored[name]}; leave it out")
    return cfg


def not_applicable(cfg: Config) -> dict[str, str]:
    """{parameter: why it does nothing in `cfg`}: a value given for one of these would be silently ignored."""
    out = {}
    if not cfg.model.from_scratch:
        out |= dict.fromkeys(FROM_SCRATCH, f"it sizes a model built from scratch (from_scratch=True), and "
                                           f"{cfg.model.model_id!r} brings its own")
    if cfg.train.finetune_method != "lora":
        out |= dict.fromkeys(LORA, f"it configures LoRA adapters, and finetune_method is "
                                   f"{cfg.train.finetune_method!r}")
    gen = cfg.generation
    if not gen.samples:
        out |= dict.fromkeys(("top_p", "temperature"), "it shapes sampling, and this decoding neither samples "
                                                         "(do_sample) nor draws (consensus_samples)")
    if gen.num_beams == 1 or gen.consensus_samples:
        out |= dict.fromkeys(("length_penalty", "early_stopping"), "it steers beam search, and this decoding "
                                                                   "searches with one beam or draws by consensus")
    return out





def default_of(name: str) -> Any:
    """The default value of a parameter: its dataclass field's."""
    return FIELDS[name].default


def help_of(name: str) -> str:
    """The help text of a parameter: its dataclass field's metadata."""
    return FIELDS[name].metadata["help"]


def load_config(path) -> Config:
    """Read a config.json written by `Config.to_dict` back into a validated Config."""
    stored = read_json(path)
    flat = {"run_dir": stored.get("run_dir", FIELDS["run_dir"].default)}
    for value in stored.values():
        if isinstance(value, dict):  # one dict per stage; older files grouped the stages differently
            flat.update(value)
    flat.pop("decoding_preset", None)  # older runs stored a preset's name beside the values it had set
    return build_config({k: v for k, v in flat.items() if k in PARAMETERS})
