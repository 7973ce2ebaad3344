"""The model training starts from, and how it trains (02)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from ..errors import ParameterError
from ..runtime.family_names import NAMES as FAMILY_NAMES
from .base import at_least, in_range, one_of, param, positive_or_none

FINETUNE_METHODS = ("full", "freeze_vision", "lora")
BEST_METRICS = ("cider", "cider+bleu4")
REPORT_TO = ("tensorboard", "mlflow", "trackio", "none")
FROM_SCRATCH = ("family", "image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "vocab_size")
LORA = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


@dataclass
class ModelConfig:
    """Which captioner to start from: a hub id, a local directory (its config.json's model_type says the family),
    or a tiny one built from scratch."""

    model_id: str = param("Salesforce/blip-image-captioning-base", "hub id or local dir to start from")
    from_scratch: bool = param(False, "build a tiny captioner offline instead of loading model_id")
    family: str = param("blip", "from_scratch: the captioner family to build (blip, git, blip2, florence2, "
                                "paligemma, smolvlm)")
    image_size: int = param(64, "from_scratch: input resolution in pixels")
    patch_size: int = param(16, "from_scratch: vision patch size")
    hidden_size: int = param(128, "from_scratch: width of both towers")
    num_layers: int = param(2, "from_scratch: layers in each tower")
    num_heads: int = param(8, "from_scratch: attention heads (8 bound shapes to places better than 4)")
    vocab_size: int = param(200, "from_scratch: WordPiece vocabulary trained on the train captions")
    attn_implementation: str = param("sdpa", "sdpa (blipnb's patch on BLIP, transformers' own elsewhere) or eager")

    def __post_init__(self):
        one_of("family", self.family, FAMILY_NAMES)
        one_of("attn_implementation", self.attn_implementation, ("sdpa", "eager"))
        for name in ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "vocab_size"):
            at_least(name, getattr(self, name), 1)
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
    lora_targets: str = param("auto", "lora: comma-separated layer names to adapt, or auto: the family's own (BLIP: "
                                      "query,value, the text decoder's self- and cross-attention; qkv is BLIP's "
                                      "vision tower)")
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
    report_to: str = param("tensorboard", "where training is tracked: tensorboard (logs/ in the run dir), mlflow "
                                          "(params, curves and 03's scores in one MLflow run; see tracking_uri), "
                                          "trackio (the Trainer's own integration; pip install trackio) or none")
    tracking_uri: Optional[str] = param(None, "with report_to mlflow: the MLflow tracking store (None: "
                                              "sqlite:///<run_dir's parent>/mlflow.db, shared by the runs there)")
    tracking_experiment: Optional[str] = param(None, "with report_to mlflow: the MLflow experiment (None: the name of "
                                                     "run_dir's parent folder, e.g. runs)")
    resume_from_checkpoint: Union[bool, str] = param(False, "auto (the run's latest checkpoint, if any), a "
                                                            "checkpoint folder, or False (start afresh)")
    num_processes: int = param(1, "training processes: 1 trains in this kernel, more launch torchrun on this "
                                  "machine")
    hp_trials: int = param(0, "hyperparameter sweep: > 0 trains this many trials (optuna, chosen on validation "
                              "CIDEr) into <run_dir>/sweep and keeps the best as this run")
    hp_space: Optional[str] = param(None, "hyperparameter sweep: a search space YAML (None: the built-in one; see "
                                          "docs/sweeps.md)")

    def __post_init__(self):
        one_of("eval_strategy", self.eval_strategy, ("epoch", "steps", "no"))
        one_of("precision", self.precision, ("auto", "bf16", "fp16", "fp32"))
        one_of("report_to", self.report_to, REPORT_TO)
        for name in ("learning_rate", "epochs"):
            if getattr(self, name) <= 0:
                raise ParameterError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("batch_size", "eval_batch_size", "grad_accum_steps", "max_txt_len", "logging_steps"):
            at_least(name, getattr(self, name), 1)
        in_range("label_smoothing", self.label_smoothing, 0.0, 1.0)
        in_range("warmup_ratio", self.warmup_ratio, 0.0, 1.0)
        positive_or_none("eval_steps", self.eval_steps)
        positive_or_none("eval_max_images", self.eval_max_images)
        positive_or_none("effective_batch_size", self.effective_batch_size)
        one_of("best_metric", self.best_metric, BEST_METRICS)
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ParameterError("eval_strategy='steps' needs eval_steps")
        one_of("finetune_method", self.finetune_method, FINETUNE_METHODS)
        at_least("lora_r", self.lora_r, 1)
        at_least("lora_alpha", self.lora_alpha, 1)
        in_range("lora_dropout", self.lora_dropout, 0.0, 1.0)
        if self.lora_targets != "auto" and not self.lora_target_modules():
            raise ParameterError("parameter 'lora_targets' names no module, e.g. 'query,value'")
        at_least("num_processes", self.num_processes, 1)
        at_least("hp_trials", self.hp_trials, 0)
        if self.hp_trials and self.eval_strategy == "no":
            raise ParameterError("a sweep chooses on validation: hp_trials > 0 needs eval_strategy 'epoch' or 'steps'")
        if self.hp_trials and self.cache_embeddings:
            raise ParameterError("hp_trials > 0 cannot cache embeddings: trials may train the vision tower "
                                 "(finetune_method is searched); set cache_embeddings False")
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

    def lora_target_modules(self, family_default: str = "") -> list[str]:
        """lora_targets as a list of layer names; auto is `family_default` (a family's lora_targets)."""
        names = family_default if self.lora_targets == "auto" else self.lora_targets
        return [name for name in names.replace(" ", "").split(",") if name]

    @property
    def vision_frozen(self) -> bool:
        """Whether the vision tower's weights stay as they are: freeze_vision, or LoRA on the text decoder only."""
        return self.finetune_method == "freeze_vision" or (
            self.finetune_method == "lora" and "qkv" not in self.lora_target_modules())
