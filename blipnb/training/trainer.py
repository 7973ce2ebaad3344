"""Trainer wiring: TrainingArguments from our config, validation by captioning images, the run-dir export."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

from .. import runs
from ..model.collate import CaptionCollator
from ..model.deploy import write_endpoint
from ..model.modeling import count_parameters
from ..config import Config
from ..data import validation_subset
from ..model.precision import resolve
from ..runtime.families import family_of
from ..schema import BLEU, CIDER
from .checkpoints import resume_checkpoint
from .guard import all_finite, diverged, is_finite_number
from .lora import apply_lora, is_lora, merge_lora
from .precision import PrecisionCheck
from .tracking import TrainingRun, check_integration, end_failed
from .distributed import ddp_backend, forward_inside_ddp, is_main_process, token_share, world_size
from .validation import caption_and_score

TRAINING_ARGS = "training_args.bin"  # what Trainer.save_model adds beside the weights (the checkpoints keep theirs)

# Checkpoints are chosen on validation, never on test: CIDEr, or CIDEr + BLEU-4 as the BLIP paper did.
BEST_METRIC_KEYS = {"cider": "eval_cider", "cider+bleu4": "eval_cider_bleu4"}


def best_metric_key(cfg: Config) -> str | None:
    """The Trainer's metric_for_best_model for cfg.train.best_metric; None without validation."""
    return BEST_METRIC_KEYS[cfg.train.best_metric] if cfg.train.eval_strategy != "no" else None


def training_arguments(cfg: Config) -> TrainingArguments:
    """Map our short names onto TrainingArguments."""
    t = cfg.train
    precision = resolve(t.precision)
    evaluating = t.eval_strategy != "no"
    return TrainingArguments(
        output_dir=str(Path(cfg.run_dir) / runs.CHECKPOINTS_DIR),
        num_train_epochs=t.epochs, max_steps=t.max_steps,
        learning_rate=t.learning_rate, weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_ratio,  # < 1 is read as a ratio of all steps
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.accumulation_steps(world_size()), activation_checkpointing=t.gradient_checkpointing,
        bf16=precision == "bf16", fp16=precision == "fp16", tf32=torch.cuda.is_available() or None,
        logging_steps=t.logging_steps, logging_first_step=True,
        eval_strategy=t.eval_strategy, eval_steps=t.eval_steps,
        # Full checkpoints (optimizer, scheduler, RNG states), so resume_from_checkpoint continues exactly;
        # without validation a checkpoint still lands every epoch, so a killed run can resume.
        save_strategy=t.eval_strategy if evaluating else "epoch", save_steps=t.eval_steps,
        save_total_limit=t.save_total_limit, save_only_model=False,
        load_best_model_at_end=evaluating, metric_for_best_model=best_metric_key(cfg),
        greater_is_better=True,
        seed=t.seed, data_seed=t.seed,
        dataloader_num_workers=t.dataloader_workers, dataloader_pin_memory=torch.cuda.is_available(),
        remove_unused_columns=False,  # our datasets yield raw rows for the collator
        label_names=["labels"],
        torch_compile=t.compile,
        # TensorBoard and MLflow are attached explicitly (build_trainer): they log into the run dir and its store
        report_to="trackio" if t.report_to == "trackio" else "none",
        # Under torchrun or accelerate launch: gloo between CPU processes; every parameter takes part in the loss.
        # use_cpu on a machine without CUDA too: the Trainer refuses bf16 there otherwise, though CPUs autocast to it.
        ddp_backend=ddp_backend(), use_cpu=ddp_backend() == "gloo" or not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,
    )


def forward_loss(model, batch: dict) -> torch.Tensor:
    """The captioning loss of a batch from CaptionCollator; BLIP's fast paths: with `image_index` the vision
    tower runs once per image (shared vision pass), with `image_embeds` (frozen vision, blipnb.training.cache) it
    does not run at all."""
    if "image_embeds" in batch:
        image_embeds = batch["image_embeds"]
        if not torch.is_autocast_enabled(image_embeds.device.type):  # bf16 cache, fp32 decoder
            image_embeds = image_embeds.to(model.text_decoder.dtype)
    elif "image_index" not in batch:
        return model(**batch).loss
    else:
        image_embeds = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
    if "image_index" in batch:
        image_embeds = image_embeds.index_select(0, batch["image_index"])
    return model.text_decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                              encoder_hidden_states=image_embeds, labels=batch["labels"], reduction="mean").loss


class CaptionTrainer(Trainer):
    """A Trainer whose evaluation also captions validation images (pixel_values only) and scores them.

    Not Seq2SeqTrainer(predict_with_generate=True): that passes the caption input_ids to `generate` as a prompt,
    the bug behind the replaced project's impossible scores.
    """

    loss_is_scaled_for_ga = False  # forward_loss is a per-batch mean

    def __init__(self, *args, caption_eval=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.caption_eval = caption_eval  # (validation split, GenerationConfig, max images)

    def with_pixel_values(self, inputs: dict) -> dict:
        """A batch on the device with `pixel_values`: the uint8 pixel cache (a 4x smaller copy) normalised there."""
        if "pixel_uint8" not in inputs:
            return inputs
        from .cache import normalize_pixels

        inputs = dict(inputs)
        inputs["pixel_values"] = normalize_pixels(inputs.pop("pixel_uint8"), self.processing_class.image_processor)
        return inputs

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not all_finite(loss):  # every rank agrees, so all stop together
            raise diverged("loss", loss, self.state.global_step + 1, self.args, last_checkpoint(self.args))
        return loss

    # Private hook: each step's gradient norm reaches no public one (callbacks see it only at logging steps).
    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        # Under fp16 an infinite norm is the loss scaler's business: it skips the step and lowers its scale.
        if grad_norm is not None and not self.args.fp16 and not is_finite_number(grad_norm):
            raise diverged("gradient norm", grad_norm, self.state.global_step + 1, self.args,
                           last_checkpoint(self.args))
        return grad_norm

    # Private hook: the Trainer reports what loading a checkpoint left out only here, with no public one.
    def _issue_warnings_after_load(self, load_result):
        # A checkpoint stores a tied tensor once, so reloading the best one reports the LM head's weight and bias
        # (tied to the word embeddings) as "missing keys" although they share the loaded tensors. Only those
        # expected keys leave the warning; any other missing or unexpected key is still reported.
        tied = getattr(self.model, "all_tied_weights_keys", None) or {}
        missing = [k for k in load_result.missing_keys if k not in tied or tied[k] in load_result.missing_keys]
        if len(missing) < len(load_result.missing_keys):
            self.model.tie_weights()
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))

    def precision(self):
        """Autocast in the run's precision (nothing for fp32). Accelerate puts autocast around the prepared model's
        forward only; forward_loss's fast paths call the vision tower and the decoder directly, and under DDP
        forward_inside_ddp stands in for that forward, so the loss itself runs inside it, on every path."""
        return self.accelerator.autocast()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = self.with_pixel_values(inputs)
        with self.precision():
            if isinstance(model, torch.nn.parallel.DistributedDataParallel):
                # Through DDP's forward, so it syncs the gradients; each rank's mean weighted by its tokens
                loss = forward_inside_ddp(model, forward_loss, inputs) * token_share(
                    inputs["labels"], family_of(model.module).labels_shifted)
            else:
                loss = forward_loss(model, inputs)
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self.with_pixel_values(self._prepare_inputs(inputs))
        with torch.no_grad(), self.compute_loss_context_manager(), self.precision():
            loss = forward_loss(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                         metric_key_prefix)
        if self.caption_eval is not None and metric_key_prefix == "eval":
            split, gen, max_images = self.caption_eval
            _, scores = caption_and_score(self.model, self.processing_class, split, gen, max_images=max_images)
            output.metrics[f"{metric_key_prefix}_cider"] = scores[CIDER]
            output.metrics[f"{metric_key_prefix}_bleu4"] = scores[BLEU[3]]
            output.metrics[f"{metric_key_prefix}_cider_bleu4"] = scores[CIDER] + scores[BLEU[3]]
        return output


def last_checkpoint(args: TrainingArguments) -> str | None:
    """The newest checkpoint folder in args.output_dir, or None: what a diverged run can resume from."""
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(args.output_dir)
    return get_last_checkpoint(str(out)) if out.is_dir() else None


def build_trainer(cfg: Config, model, processor, ds, callbacks=(), model_init=None) -> CaptionTrainer:
    """A CaptionTrainer over the train pairs, with validation loss and validation CIDEr/BLEU-4 per evaluation;
    `callbacks` are extra TrainerCallbacks. With `model_init` (a hyperparameter search: it builds each trial's
    model, prepared with prepare_model) `model` only shapes the datasets and the Trainer starts from model_init."""
    from transformers.integrations import TensorBoardCallback

    from .cache import training_datasets

    check_integration(cfg.train.report_to)
    collator = CaptionCollator(processor, max_txt_len=cfg.train.max_txt_len, prompt=cfg.generation.prompt,
                               family=family_of(model))
    callbacks = [*callbacks, PrecisionCheck(resolve(cfg.train.precision))]
    if cfg.train.report_to == "tensorboard" and is_main_process() and model_init is None:
        from torch.utils.tensorboard import SummaryWriter

        callbacks.append(TensorBoardCallback(SummaryWriter(log_dir=str(Path(cfg.run_dir) / runs.LOGS_DIR))))
    if cfg.train.report_to == "mlflow" and is_main_process() and model_init is None:  # a sweep tracks its trials
        callbacks.append(TrainingRun(cfg))
    evaluating = cfg.train.eval_strategy != "no"
    if model_init is None:
        model = prepare_model(cfg, model)
    train_dataset, eval_dataset = training_datasets(cfg, model, processor, ds, evaluating)
    return CaptionTrainer(
        model=None if model_init else model, model_init=model_init, args=training_arguments(cfg),
        data_collator=collator, processing_class=processor, train_dataset=train_dataset, eval_dataset=eval_dataset,
        # A seeded random sample of eval_max_images validation images, not the first ones (file order).
        caption_eval=(validation_subset(ds["validation"], cfg.train.eval_max_images, cfg.data.split_seed), cfg.generation,
                      None) if evaluating else None,
        callbacks=callbacks,
    )


def prepare_model(cfg: Config, model):
    """The model as the Trainer gets it: LoRA adapters applied (peft's wrapper, in place) for finetune_method lora,
    and the vision tower compiled where forward_loss calls it past the Trainer's compiled forward."""
    if cfg.train.finetune_method == "lora":
        model = apply_lora(model, cfg.train)  # in place; the Trainer gets peft's wrapper (see training.lora)
    if cfg.train.compile and cfg.train.shared_vision and not cfg.train.cache_embeddings:
        # compiled in place (state_dict keys unchanged)
        model.vision_model.compile()
    return model


def precision_observed(trainer) -> dict | None:
    """What the first training step computed in ({"vision", "decoder"}: a dtype name, or None where that part did
    not run), from the trainer's PrecisionCheck; None when no step ran."""
    check = next((c for c in trainer.callback_handler.callbacks if isinstance(c, PrecisionCheck)), None)
    return check.observed if check is not None else None


def export_model(trainer, cfg: Config, processor) -> None:
    """Write the trained model into the run dir as a plain model that loads anywhere: model/ (LoRA merged; the
    adapter alone in adapter/), its processor, the deployable endpoint files, and the Trainer's log history."""
    run = runs.RunDir(cfg.run_dir)
    if is_lora(trainer.model):
        trainer.save_model(str(run / runs.ADAPTER_DIR))  # the adapter alone (peft's save_pretrained)
        trainer.model = merge_lora(trainer.model)  # the caller's model, now plain: the export loads anywhere
    trainer.save_model(str(run / runs.MODEL_DIR))  # by rank 0 only, under DDP
    if is_main_process():
        for folder in (runs.MODEL_DIR, runs.ADAPTER_DIR):  # save_model's pickled TrainingArguments: local paths,
            (run / folder / TRAINING_ARGS).unlink(missing_ok=True)  # and a pickle has no place in a deployable folder
        processor.save_pretrained(str(run / runs.MODEL_DIR))
        write_endpoint(run / runs.MODEL_DIR, cfg.generation)  # deployable as it is: handler.py, code/
        runs.write_json(run / runs.LOG_HISTORY, trainer.state.log_history)


def train_model(cfg: Config, model, processor, ds, callbacks=()) -> dict:
    """Train (resuming as cfg.train.resume_from_checkpoint says), then export model + processor + resolved config
    + log history into the run dir; returns results. `callbacks` are extra TrainerCallbacks."""
    run = runs.RunDir(cfg.run_dir)
    resume = resume_checkpoint(cfg)
    if is_main_process():  # under DDP (torchrun, accelerate launch) only rank 0 writes the run directory
        run.ensure()
        runs.write_json(run / runs.CONFIG, cfg.to_dict())
    trainer = build_trainer(cfg, model, processor, ds, callbacks=callbacks)
    resumed_step = None
    if resume:
        resumed_step = runs.read_json(Path(resume) / "trainer_state.json")["global_step"]
        print(f"resuming from {resume} at step {resumed_step}: optimizer, scheduler and RNG states restored")
    elif cfg.train.resume_from_checkpoint == "auto":
        print("resume_from_checkpoint='auto': no checkpoint in the run directory, starting at step 0")
    parameters = count_parameters(trainer.model)  # with lora: the adapters' share of base + adapters
    start = time.time()
    try:
        out = trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        end_failed(trainer)  # an MLflow run says FAILED rather than RUNNING forever
        raise
    wall = time.time() - start
    export_model(trainer, cfg, processor)
    results = {"train_loss": out.training_loss, **run_results(trainer, cfg, parameters, wall),
               "resumed_from": resume, "resumed_step": resumed_step}
    if is_main_process():
        runs.write_json(run / runs.TRAIN_RESULTS, results)
    return results


def run_results(trainer, cfg: Config, parameters: dict, seconds: float) -> dict:
    """What train_results.json records of a finished training: steps, time, the best checkpoint and its validation
    score, the trainable share and the precision the first step computed in."""
    return {
        "global_step": trainer.state.global_step, "train_seconds": round(seconds, 1),
        "train_pairs": trainer.train_dataset.num_pairs, "epochs": cfg.train.epochs,
        "best_checkpoint": trainer.state.best_model_checkpoint, "best_metric": trainer.state.best_metric,
        "best_metric_name": best_metric_key(cfg),
        "trainable_parameters": parameters["trainable"], "trainable_share": parameters["trainable_share"],
        "precision": resolve(cfg.train.precision), "compute_dtype": precision_observed(trainer),
    }
