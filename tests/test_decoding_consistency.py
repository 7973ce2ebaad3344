"""Validation (02) and test (03) decode alike; 03 and 05 on a run use its decoding unless told otherwise, and say so."""
from helpers import tiny_config

from blipnb import runs
from blipnb.config import GenerationConfig, load_config
from blipnb.evaluation.report import format_report
from blipnb.evaluation.run import decoding_differences
from blipnb.notebook import config_from_namespace
from blipnb.notebook.params import DECODING, NOTEBOOK_PARAMETERS, RUN_DECODING, render_cell
from blipnb.schema import METRIC_KEYS, SCALE

STORED = dict(num_beams=3, max_new_tokens=20, min_new_tokens=5)  # the run: stored beam 3 / max 20 / min 5


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
    """A preset's decoding reaches validation in 02 and test in 03 alike (02 used to lack decoding_preset and
    min_new_tokens, so it validated with min 0 while 03 tested with the preset's 5)."""
    for notebook in ("02_finetune", "03_evaluate", "05_inference_demo"):
        assert set(DECODING) <= set(NOTEBOOK_PARAMETERS[notebook]), notebook
    assert "min_new_tokens" in DECODING and "decoding_preset" in DECODING
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
    # A preset passed explicitly wins too.
    greedy = resolve("03_evaluate", tmp_path, decoding_preset="greedy")
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
