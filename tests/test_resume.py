"""Resume: a run killed mid-way and resumed ends exactly where an uninterrupted run ends. Divergence guard: a
NaN loss or gradient stops training at that step, naming it, and keeps the last good checkpoint."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file

from blipnb import runs
from blipnb.config import ParameterError
from blipnb.data import load_captions
from blipnb.errors import TrainingDiverged
from blipnb.model.modeling import start_model
from blipnb.training import trainer as trainer_module
from blipnb.training import train_model

# Six optimiser steps, validated and checkpointed every two; the kill comes right after checkpoint-4 is saved.
RESUME = dict(sample_train=24, sample_validation=6, sample_test=6, batch_size=8, max_steps=6,
              eval_strategy="steps", eval_steps=2, eval_max_images=6, save_total_limit=10, logging_steps=1)
TOLERANCE = 1e-6  # max abs weight difference allowed (CPU, fp32, same seed): in practice it is 0.0

KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from helpers import tiny_config
from transformers import TrainerCallback
from blipnb.data import load_captions
from blipnb.model.modeling import start_model
from blipnb.training import train_model

class KillAfterCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no final save

cfg = tiny_config({run_dir!r}, **{settings!r})
ds = load_captions(cfg.data)
model, processor = start_model(cfg, ds)
train_model(cfg, model, processor, ds, callbacks=[KillAfterCheckpoint()])
"""


def _train(run_dir, **overrides):
    cfg = tiny_config(run_dir, **{**RESUME, **overrides})
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    return cfg, train_model(cfg, model, processor, ds)


def _exported(run_dir):
    return load_file(str(runs.RunDir(run_dir) / runs.MODEL_DIR / "model.safetensors"))


def _validation_scores(run_dir):
    history = runs.read_json(runs.RunDir(run_dir) / runs.LOG_HISTORY)
    return {h["step"]: (h["eval_cider"], h["eval_bleu4"], h["eval_loss"]) for h in history if "eval_cider" in h}


def test_resume_after_a_real_kill_equals_the_uninterrupted_run(tmp_path):
    _train(tmp_path / "a")  # run A: six steps, uninterrupted
    script = KILL_SCRIPT.format(tests=str(__import__("pathlib").Path(__file__).parent), kill_at=4,
                                run_dir=str(tmp_path / "b"), settings=RESUME)
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL, after checkpoint-4 was written
    checkpoints = sorted(p.name for p in (tmp_path / "b" / runs.CHECKPOINTS_DIR).iterdir())
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "b" / runs.MODEL_DIR).exists()

    _, results = _train(tmp_path / "b", resume_from_checkpoint="auto")  # run B, resumed
    assert results["resumed_step"] == 4 and results["resumed_from"].endswith("checkpoint-4")
    assert results["global_step"] == 6
    a, b = _exported(tmp_path / "a"), _exported(tmp_path / "b")
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"resume: max abs weight difference {worst} (tolerance {TOLERANCE})")
    assert worst <= TOLERANCE, worst
    scores_a, scores_b = _validation_scores(tmp_path / "a"), _validation_scores(tmp_path / "b")
    assert scores_a[6] == scores_b[6] and scores_a[4] == scores_b[4]  # after the resume, and at the kill
    state = json.loads((tmp_path / "b" / runs.CHECKPOINTS_DIR / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6


def test_resume_auto_without_a_checkpoint_starts_at_step_zero(tmp_path, capsys):
    _, results = _train(tmp_path / "r", resume_from_checkpoint="auto", max_steps=2, eval_steps=2)
    assert results["resumed_from"] is None and results["global_step"] == 2
    assert "no checkpoint in the run directory" in capsys.readouterr().out


def test_resume_from_a_folder_that_is_no_checkpoint_fails_naming_the_parameter(tmp_path):
    with pytest.raises(ParameterError, match="resume_from_checkpoint.*not a checkpoint folder"):
        _train(tmp_path / "r", resume_from_checkpoint=str(tmp_path))
    with pytest.raises(ParameterError, match="resume_from_checkpoint"):
        tiny_config(tmp_path, resume_from_checkpoint=True)


def test_a_nan_loss_stops_training_at_that_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = trainer_module.forward_loss
    calls = []

    def poisoned(model, batch):
        loss = real(model, batch)
        if not model.training:  # validation batches go through forward_loss too
            return loss
        calls.append(1)
        return loss * float("nan") if len(calls) == 3 else loss  # the third training batch: step 3

    monkeypatch.setattr(trainer_module, "forward_loss", poisoned)
    with pytest.raises(TrainingDiverged) as error:
        _train(tmp_path / "nan", eval_strategy="steps", eval_steps=2, max_steps=5, report_to="none")
    message = str(error.value)
    assert "diverged at step 3" in message and "loss is nan" in message and "learning_rate" in message
    assert "checkpoint-2" in message
    assert (tmp_path / "nan" / runs.CHECKPOINTS_DIR / "checkpoint-2" / "optimizer.pt").exists()
    assert not (tmp_path / "nan" / runs.CHECKPOINTS_DIR / "checkpoint-4").exists()  # it stopped at once


def test_an_infinite_gradient_stops_training_naming_the_gradient_norm(tmp_path, monkeypatch):
    real_build = trainer_module.build_trainer

    def build_with_a_bad_gradient(*args, **kwargs):
        trainer = real_build(*args, **kwargs)
        weight = trainer.model.text_decoder.cls.predictions.decoder.weight
        weight.register_hook(lambda g: g * float("inf") if trainer.state.global_step == 1 else g)
        return trainer

    monkeypatch.setattr(trainer_module, "build_trainer", build_with_a_bad_gradient)
    with pytest.raises(TrainingDiverged, match="diverged at step 2: the gradient norm is (inf|nan)"):
        _train(tmp_path / "inf", eval_strategy="no", max_steps=4)


def test_checkpoints_keep_the_optimizer_scheduler_and_rng_state_for_resume(tmp_path):
    _train(tmp_path / "c", max_steps=2, eval_steps=2)
    saved = {p.name for p in (tmp_path / "c" / runs.CHECKPOINTS_DIR / "checkpoint-2").iterdir()}
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json"} <= saved
    assert any(name.startswith("rng_state") for name in saved), saved
    assert torch.is_grad_enabled()


def test_resume_auto_skips_a_truncated_checkpoint_naming_it_and_resumes_from_the_newest_that_loads(tmp_path,
                                                                                                    capsys):
    _train(tmp_path / "t", max_steps=4)  # checkpoint-2 and checkpoint-4
    folder = tmp_path / "t" / runs.CHECKPOINTS_DIR
    weights = folder / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy that stopped part-way
    _, results = _train(tmp_path / "t", resume_from_checkpoint="auto")
    out = capsys.readouterr().out
    assert "cannot resume from" in out and "checkpoint-4: model.safetensors is truncated" in out
    assert "resuming from checkpoint-2, the newest checkpoint that loads" in out
    assert results["resumed_step"] == 2 and results["global_step"] == 6


def test_resume_auto_fails_in_one_line_when_no_checkpoint_loads(tmp_path):
    from blipnb.errors import CheckpointUnusable
    from blipnb.training.checkpoints import checkpoint_problem, newest_usable

    _train(tmp_path / "n", max_steps=2)
    ckpt = tmp_path / "n" / runs.CHECKPOINTS_DIR / "checkpoint-2"
    (ckpt / "optimizer.pt").write_bytes((ckpt / "optimizer.pt").read_bytes()[:-200])
    assert checkpoint_problem(ckpt).startswith("optimizer.pt is not a torch checkpoint file")
    with pytest.raises(CheckpointUnusable, match=r"no checkpoint in .* loads: checkpoint-2 \(optimizer.pt") as e:
        newest_usable(ckpt.parent, log=lambda _: None)
    assert "\n" not in str(e.value) and "resume_from_checkpoint=False" in str(e.value)
    (ckpt / "optimizer.pt").unlink()
    assert checkpoint_problem(ckpt) == "it has no optimizer.pt"
    with pytest.raises(ParameterError, match="cannot resume from .*it has no optimizer.pt"):
        _train(tmp_path / "n", resume_from_checkpoint=str(ckpt))
