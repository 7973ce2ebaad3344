"""Executed notebooks read clean: expected messages are silenced at their source (and only those), and headless
runs show progress as final plain text rather than as widgets saved at 0 %."""
from __future__ import annotations

import io
import os
import shutil

import pytest
import tqdm.auto
import tqdm.autonotebook

import blipnb.notebook as nb
from blipnb.scoring import coco

CAPTIONS = ["a red circle at the top left", "a small blue square at the bottom right", "there is a big triangle"]


@pytest.mark.skipif(shutil.which("java") is None, reason="the Java PTB tokenizer needs java")
def test_ptb_tokenizer_progress_line_stays_out_of_stderr(capfd):
    tokens, tokenizer = coco._tokenize({"a": ["A dog, running.", "Two cats"], "b": ["a red circle"]})
    assert tokenizer == "ptb" and tokens == {"a": ["a dog running", "two cats"], "b": ["a red circle"]}
    assert "PTBTokenizer" not in capfd.readouterr().err  # Java's "tokenized N tokens at ..." line


def test_reloading_tied_weights_is_quiet_but_other_missing_keys_still_warn(tmp_path, monkeypatch):
    from transformers import TrainingArguments
    import transformers.trainer

    from blipnb.config import ModelConfig
    from blipnb.model.modeling import load_model
    from blipnb.model.tiny import build_tiny_blip
    from blipnb.training.trainer import CaptionTrainer

    cfg = ModelConfig(image_size=32, patch_size=16, hidden_size=32, num_layers=1, num_heads=2, vocab_size=80)
    model, _ = load_model(build_tiny_blip(CAPTIONS, tmp_path / "tiny", cfg), attn_implementation="eager")
    trainer = CaptionTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[]))
    warned = []
    monkeypatch.setattr(transformers.trainer.logger, "warning", lambda msg, *a, **k: warned.append(str(msg)))
    tied = set(model.all_tied_weights_keys)
    assert tied, "BLIP ties its LM head to the word embeddings"
    # What the Trainer sees when it reloads the best checkpoint: the tied copies are not stored.
    state = {k: v for k, v in model.state_dict().items() if k not in tied}
    trainer._issue_warnings_after_load(model.load_state_dict(state, strict=False))
    assert warned == []
    other = next(k for k in state if "vision_model" in k)
    trainer._issue_warnings_after_load(model.load_state_dict({k: v for k, v in state.items() if k != other},
                                                             strict=False))
    assert len(warned) == 1 and other in warned[0] and not tied & set(eval(warned[0].split(": ", 1)[1][:-1]))


def test_headless_is_decided_by_the_program_that_started_the_kernel(monkeypatch, tmp_path):
    monkeypatch.setenv(nb.HEADLESS, "1")
    assert nb.headless()
    monkeypatch.setenv(nb.HEADLESS, "0")
    assert not nb.headless()
    monkeypatch.delenv(nb.HEADLESS)
    assert nb.program_name(os.getpid()) == "pytest"  # seen through `python .../pytest` or `python -m pytest`
    assert nb.program_name(2 ** 22 + 12345) == ""  # no such process
    for parent, expected in (("papermill", True), ("pytest", True), ("blipnb", True), ("jupyter-lab", False),
                             ("", False)):
        monkeypatch.setattr(nb, "program_name", lambda pid, name=parent: name)
        assert nb.headless() is expected, parent


def test_headless_bars_are_final_plain_text_for_blipnb_and_transformers_alike(monkeypatch):
    from transformers.utils import logging as hf_logging

    from blipnb import progress

    monkeypatch.delenv(nb.HEADLESS, raising=False)  # restored after the test, as is transformers' hook below
    bars = (tqdm.auto.tqdm, tqdm.autonotebook.tqdm)
    assert progress.bar_class() is tqdm.auto.tqdm  # watched (or unknown): tqdm's own, a widget in a notebook
    previous = hf_logging.set_tqdm_hook(None)
    try:
        nb.plain_progress()
        assert os.environ[nb.HEADLESS] == "1" and progress.bar_class() is progress.PlainTqdm
        for make in (progress.progress_bar, hf_logging.tqdm):  # blipnb's bars, and transformers' (saving shards)
            out = io.StringIO()
            for _ in make(range(3), desc="Writing model shards", file=out):
                pass
            assert "Writing model shards: 100%" in out.getvalue() and "3/3" in out.getvalue()
            assert " 0%" not in out.getvalue()  # a quick bar leaves only its final state, no "0%" frame first
        nb.plain_progress()  # twice is harmless
        assert isinstance(hf_logging.tqdm(range(1), file=io.StringIO()), progress.PlainTqdm)
        monkeypatch.setenv(nb.HEADLESS, "0")  # read when each bar is made: a user can switch back
        assert progress.bar_class() is tqdm.auto.tqdm
        assert not isinstance(hf_logging.tqdm(range(1), file=io.StringIO()), progress.PlainTqdm)
    finally:
        hf_logging.set_tqdm_hook(previous)
    assert (tqdm.auto.tqdm, tqdm.autonotebook.tqdm) == bars  # nothing of tqdm's was rebound
