"""Validation (02) and test (03) decode alike; 03 and 05 on a run use its decoding unless told otherwise, and say so."""
from helpers import tiny_config

from blipnb import runs
from blipnb.config import GenerationConfig, load_config
from blipnb.evaluation.report import format_report
from blipnb.evaluation.run import decoding_differences
from blipnb.notebook import config_from_namespace
from blipnb.notebook.params import ACCEPTED, DECODING, RUN_DECODING, render_cell
from blipnb.runtime.decoding import NAMED
from blipnb.schema import METRIC_KEYS, SCALE

STORED = dict(num_beams=3, max_new_tokens=20, min_new_tokens=5)  # a run that validated with beam 3, max 20, min 5


def stored_run(tmp_path):
    """A run directory whose config.json says how 02 validated: beam 3, max 20, min 5."""
    cfg = tiny_config(tmp_path, **STORED)
    runs.write_json(runs.RunDir(tmp_path).ensure() / runs.CONFIG, cfg.to_dict())
    return cfg


def resolve(notebook: str, run_dir, **given):
    """What a notebook's config cell resolves: its committed parameters cell, papermill's injections, the run's config."""
    namespace = {}
    exec(render_cell(notebook), namespace)  # noqa: S102 - our own rendered literals
    namespace.pop("__builtins__")
    namespace.update(run_dir=str(run_dir), **given)
    return config_from_namespace(namespace, base=load_config(runs.RunDir(run_dir) / runs.CONFIG))


def test_finetune_and_evaluate_declare_the_same_decoding():
    """A preset's decoding reaches validation in 02 and test in 03 alike (a decoding parameter missing from 02
    would validate with its default while 03 tests with the preset's value)."""
    for notebook in ("02_finetune", "03_evaluate", "05_inference_demo"):
        assert set(DECODING) <= set(ACCEPTED[notebook]), notebook
    assert "min_new_tokens" in DECODING and "length_counts_prompt" in DECODING
    assert "num_beams = 5" in render_cell("02_finetune")  # 02 holds the real defaults
    assert "num_beams = None" in render_cell("03_evaluate") and "num_beams = None" in render_cell("05_inference_demo")


def test_evaluate_alone_uses_the_runs_decoding(tmp_path):
    """03 (and 05) run with no decoding parameter: the run's stored decoding, not the notebook's defaults."""
    stored = stored_run(tmp_path)
    for notebook in RUN_DECODING:
        cfg = resolve(notebook, tmp_path)
        assert cfg.generation == stored.generation, notebook
        assert decoding_differences(cfg) == []


def test_explicit_decoding_wins_and_is_flagged(tmp_path):
    """A decoding parameter passed to 03 wins; metrics.json and 03's table say how it differs from validation."""
    stored_run(tmp_path)
    cfg = resolve("03_evaluate", tmp_path, num_beams=5, max_new_tokens=30, min_new_tokens=0)
    assert (cfg.generation.num_beams, cfg.generation.max_new_tokens, cfg.generation.min_new_tokens) == (5, 30, 0)
    differs = decoding_differences(cfg)
    assert differs == ["max_new_tokens 20 -> 30", "min_new_tokens 5 -> 0", "num_beams 3 -> 5"]
    # A named decoding's settings passed explicitly win too.
    greedy = resolve("03_evaluate", tmp_path, **NAMED["greedy"])
    assert decoding_differences(greedy) == ["num_beams 3 -> 1"]

    result = {"metrics": dict.fromkeys(METRIC_KEYS, 0.5), "n_images": 3, "scale": SCALE, "tokenizer": "ptb",
              "refs_per_image": {"min": 5, "mean": 5.0, "max": 5}}
    metrics = {"results": {"fine-tuned": result}, "split": "test", "source": "sample",
               "decoding_differs_from_validation": differs}
    assert "decoding differs from validation: max_new_tokens 20 -> 30, min_new_tokens 5 -> 0, num_beams 3 -> 5" in \
        format_report(metrics)
    assert "decoding differs" not in format_report({**metrics, "decoding_differs_from_validation": []})


def test_differences_name_only_settings_that_change_captions():
    greedy = GenerationConfig(num_beams=1)
    assert greedy.differences(GenerationConfig(num_beams=1, length_penalty=2.0, top_p=0.5, gen_batch_size=8)) == []
    assert GenerationConfig(num_beams=3).differences(GenerationConfig(num_beams=3, length_penalty=2.0)) == [
        "length_penalty 2.0 -> 1.0"]
    assert GenerationConfig(prompt="a picture of ").differences(GenerationConfig()) == ["prompt '' -> 'a picture of '"]


def test_03_given_num_beams_5_on_a_blip_paper_run_decodes_with_5_beams(tmp_path, monkeypatch):
    """-f blip_paper.yaml in 02, then -p num_beams 5 in 03: 5 beams reach generate, the run's other settings stay."""
    import torch
    from PIL import Image

    from blipnb.model.generation import caption_batch
    from blipnb.model.modeling import load_model
    from blipnb.model.tiny import build_tiny_blip
    from blipnb.config import ModelConfig

    runs.write_json(runs.RunDir(tmp_path).ensure() / runs.CONFIG,
                    tiny_config(tmp_path, **NAMED["blip_paper"]).to_dict())
    gen = resolve("03_evaluate", tmp_path, num_beams=5).generation
    assert (gen.num_beams, gen.max_new_tokens, gen.min_new_tokens, gen.length_counts_prompt) == (5, 20, 5, True)
    path = build_tiny_blip(["a red circle", "a blue square"], tmp_path / "m",
                           ModelConfig(from_scratch=True, image_size=32, vocab_size=60, hidden_size=32, num_layers=1,
                                       num_heads=2))
    model, processor = load_model(path, attn_implementation="eager")
    calls = []
    generate = model.generate
    monkeypatch.setattr(model, "generate", lambda **kw: calls.append(kw) or generate(**kw))
    with torch.no_grad():
        caption_batch(model, processor, [Image.new("RGB", (32, 32), "red")], gen)
    assert calls[0]["num_beams"] == 5 and calls[0]["max_length"] == 20
