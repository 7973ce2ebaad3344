"""BLIP-paper parity: lengths that count the prompt, the checkpoint picked by CIDEr + BLEU-4 over all of validation,
and the paper's batch of 256 per step kept by accumulation."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from blipnb.config import GenerationConfig, ModelConfig, TrainConfig
from blipnb.errors import ParameterError
from blipnb.model.generation import caption_batch
from blipnb.model.modeling import load_model
from blipnb.model.tiny import build_tiny_blip
from blipnb.presets import load_preset
from blipnb.runtime.decoding import NAMED
from blipnb.training.trainer import training_arguments

PRESET = Path(__file__).resolve().parents[1] / "notebooks" / "params" / "blip_paper.yaml"
PROMPT = "a picture of "


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    caps = ["a picture of a red circle", "a picture of a blue square at the top"] * 10
    path = build_tiny_blip(caps, tmp_path_factory.mktemp("tiny"), ModelConfig(from_scratch=True, image_size=32,
                                                                               vocab_size=80))
    return load_model(path, attn_implementation="eager")


def _generated_lengths(model, processor, gen) -> list[int]:
    """Lengths of the sequences generate returns (they start with [DEC] and the prompt)."""
    seen = []
    original = model.generate

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.extend(int((row != processor.tokenizer.pad_token_id).sum()) for row in out)
        return out

    model.generate = spy
    try:
        caption_batch(model, processor, [Image.new("RGB", (32, 32), "white")] * 2, gen)
    finally:
        del model.generate
    return seen


def test_blip_parity_length_counts_the_prompt(tiny):
    model, processor = tiny
    n_prompt = len(processor.tokenizer(PROMPT).input_ids) - 1  # [DEC] (replacing [CLS]) + prompt, no [SEP]
    fixed = dict(prompt=PROMPT, num_beams=1, max_new_tokens=9, min_new_tokens=9)
    assert _generated_lengths(model, processor, GenerationConfig(**fixed)) == [n_prompt + 9] * 2
    assert _generated_lengths(model, processor, GenerationConfig(**fixed, length_counts_prompt=True)) == [9] * 2
    paper = GenerationConfig().merged(**NAMED["blip_paper"], prompt=PROMPT)
    assert paper.length_counts_prompt and paper.generate_kwargs()["max_length"] == 20
    assert paper.generate_kwargs()["min_length"] == 5 and "max_new_tokens" not in paper.generate_kwargs()


def test_blip_parity_effective_batch_by_accumulation(monkeypatch, tmp_path):
    t = TrainConfig(batch_size=32, effective_batch_size=256)
    assert [t.accumulation_steps(n) for n in (1, 2, 8)] == [8, 4, 1]
    with pytest.raises(ParameterError, match="effective_batch_size=256 is not a multiple of batch_size x processes"):
        t.accumulation_steps(3)
    assert TrainConfig(grad_accum_steps=3).accumulation_steps(8) == 3  # unset: grad_accum_steps as given
    cfg = load_preset(PRESET, run_dir=str(tmp_path))
    import blipnb.training.trainer as trainer

    # WORLD_SIZE itself would make TrainingArguments start a process group; the count is what matters here.
    monkeypatch.setattr(trainer, "world_size", lambda: 2)
    assert training_arguments(cfg).gradient_accumulation_steps == 4  # 32 x 2 processes x 4 = 256


def test_blip_parity_preset_matches_the_paper(tmp_path):
    cfg = load_preset(PRESET, run_dir=str(tmp_path))
    assert cfg.train.best_metric == "cider+bleu4" and cfg.train.eval_max_images is None
    assert training_arguments(cfg).metric_for_best_model == "eval_cider_bleu4"
    assert (cfg.train.learning_rate, cfg.train.weight_decay, cfg.train.epochs) == (1e-5, 0.05, 5)
    assert cfg.train.label_smoothing == 0.1 and cfg.generation.prompt == PROMPT
    g = cfg.generation
    assert (g.num_beams, g.max_new_tokens, g.min_new_tokens, g.length_counts_prompt) == (3, 20, 5, True)
    with pytest.raises(ParameterError, match="best_metric"):
        TrainConfig(best_metric="bleu4")


def test_blip_parity_validation_logs_the_combined_score(trained):
    from blipnb import runs

    history = [h for h in runs.read_json(Path(trained[0].run_dir) / runs.LOG_HISTORY) if "eval_cider" in h]
    assert history
    for h in history:
        assert h["eval_cider_bleu4"] == pytest.approx(h["eval_cider"] + h["eval_bleu4"])
