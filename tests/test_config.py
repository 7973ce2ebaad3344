import pytest

from blipnb.config import PARAMETERS, Config, ParameterError, build_config, load_config
from blipnb.notebook import config_from_namespace
from blipnb.runs import write_json


def test_defaults_follow_the_replaced_project():
    cfg = build_config({})
    assert cfg.model.model_id == "Salesforce/blip-image-captioning-base"
    t = cfg.train
    assert (t.epochs, t.learning_rate, t.batch_size, t.eval_batch_size, t.grad_accum_steps) == (4, 5e-5, 8, 8, 2)
    assert t.gradient_checkpointing and t.finetune_method == "full" and t.save_total_limit == 2 and t.seed == 42
    assert (t.logging_steps, t.max_txt_len) == (50, 40)
    g = cfg.generation
    assert (g.max_new_tokens, g.num_beams, g.length_penalty, g.early_stopping) == (30, 5, 1.0, True)
    assert cfg.eval.do_spice and cfg.eval.spice_subsample == 1500


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ValueError, match=r"'epoch'.*did you mean 'epochs'"):
        build_config({"epoch": 3})


@pytest.mark.parametrize("key,value", [("epochs", "four"), ("batch_size", 8.5), ("num_beams", True),
                                       ("from_scratch", "yes"), ("data_dir", 3)])
def test_wrong_type_is_named(key, value):
    with pytest.raises(ParameterError, match=repr(key)):
        build_config({key: value})


def test_range_and_choice_errors_name_the_parameter():
    with pytest.raises(ValueError, match="'source'"):
        build_config({"source": "flickr30k"})
    with pytest.raises(ValueError, match="'label_smoothing'"):
        build_config({"label_smoothing": 1.5})
    with pytest.raises(ValueError, match="data_dir"):
        build_config({"source": "folder"})


def test_int_is_accepted_where_float_is_expected():
    cfg = build_config({"learning_rate": 1, "epochs": 2})
    assert isinstance(cfg.train.learning_rate, float) and cfg.train.epochs == 2.0


def test_the_blip_paper_preset_file_holds_its_decoding_and_an_explicit_value_wins():
    from pathlib import Path

    from blipnb.presets import load_preset, read_params

    preset = Path(__file__).parents[1] / "notebooks" / "params" / "blip_paper.yaml"
    g = load_preset(preset).generation
    assert (g.num_beams, g.max_new_tokens, g.min_new_tokens, g.length_counts_prompt) == (3, 20, 5, True)
    assert load_preset(preset, num_beams=5).generation.num_beams == 5
    five = build_config(read_params([str(preset)], [("num_beams", "5")])).generation  # -f ... -p num_beams 5
    assert (five.num_beams, five.max_new_tokens) == (5, 20)
    with pytest.raises(ParameterError, match="decoding_preset"):  # named decodings are preset files, not a field
        build_config({"decoding_preset": "blip_paper"})


def test_flat_round_trip_and_load_config(tmp_path):
    cfg = build_config({"source": "sample", "epochs": 2, "prompt": "a picture of ", "run_dir": str(tmp_path)})
    assert build_config(cfg.flat()) == cfg
    write_json(tmp_path / "config.json", cfg.to_dict())
    assert load_config(tmp_path / "config.json") == cfg


def test_namespace_takes_literals_and_rejects_typos():
    ns = {"epochs": 2, "source": "sample", "np": object(), "CONSTANT": "x", "_private": 1, "In": []}
    cfg = config_from_namespace(ns)
    assert cfg.train.epochs == 2 and cfg.data.source == "sample"
    with pytest.raises(ParameterError, match="'learning_rat'"):
        config_from_namespace({"learning_rat": 0.1})


def test_namespace_rerun_ignores_later_variables_but_keeps_parameters(recwarn):
    ns = {"epochs": 2}
    config_from_namespace(ns)
    ns["k"] = 5  # a variable from a later cell, then the config cell is run again
    ns["epochs"] = 3
    cfg = config_from_namespace(ns)
    assert cfg.train.epochs == 3
    assert any("'k'" in str(w.message) or "k" in str(w.message) for w in recwarn)


def test_parameter_names_are_unique_and_cover_every_stage():
    assert "run_dir" in PARAMETERS and "epochs" in PARAMETERS and "num_beams" in PARAMETERS
    assert isinstance(build_config({}), Config)


def test_config_json_of_the_old_layout_still_loads(tmp_path):
    """Runs written before the stages were split kept analysis, sweep and hub fields under "eval"."""
    old = {"run_dir": str(tmp_path), "data": {"source": "sample"},
           "eval": {"n_bootstrap": 50, "k_examples": 3, "sweep_num_beams": "1,3", "push_to_hub": False}}
    write_json(tmp_path / "config.json", old)
    cfg = load_config(tmp_path / "config.json")
    assert cfg.eval.n_bootstrap == 50 and cfg.analysis.k_examples == 3 and cfg.sweep.grid() == {"num_beams": [1, 3]}


def test_decoding_overrides_keep_the_config_valid():
    """One owner for decoding overrides: the sweep, the demo and caption_image all go through merged."""
    g = build_config({"num_beams": 3, "max_new_tokens": 20, "min_new_tokens": 5}).generation
    short = g.merged(max_new_tokens=3)
    assert short.max_new_tokens == 3 and short.min_new_tokens == 3 and short.num_beams == 3
    assert g.merged(num_beams=None).num_beams == 3  # None means "keep"
    with pytest.raises(ParameterError, match="num_beam"):
        g.merged(num_beam=2)
    with pytest.raises(ParameterError, match="min_new_tokens"):
        g.merged(min_new_tokens=9, max_new_tokens=4)


def test_presets_fail_naming_the_file_and_the_unknown_name(tmp_path):
    from blipnb.presets import read_params
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlerning_rate: 0.1\n")
    with pytest.raises(ParameterError, match=r"bad.yaml.*'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        read_params([str(bad)])
    with pytest.raises(ParameterError, match="cannot read parameters file"):
        read_params([str(tmp_path / "missing.yaml")])
    assert read_params([], [("epochs", "3"), ("source", "sample")]) == {"epochs": 3, "source": "sample"}


@pytest.mark.parametrize("given, words", [
    ({"hidden_size": 64}, "sizes a model built from scratch"),
    ({"from_scratch": False, "num_layers": 4}, "'Salesforce/blip-image-captioning-base' brings its own"),
    ({"lora_r": 8}, "finetune_method is 'full'"),
    ({"finetune_method": "freeze_vision", "lora_targets": "query"}, "LoRA adapters"),
    ({"num_beams": 3, "temperature": 0.7}, "neither samples"),
    ({"num_beams": 1, "length_penalty": 1.2}, "one beam"),
    ({"consensus_samples": 8, "length_penalty": 1.2}, "draws by consensus"),
])
def test_a_parameter_that_does_not_apply_is_refused_saying_why(given, words):
    with pytest.raises(ParameterError, match=f"parameter '{list(given)[-1]}' does not apply here: .*{words}"):
        build_config(given)


def test_parameters_that_apply_or_keep_their_default_are_accepted():
    assert build_config({"from_scratch": True, "hidden_size": 64}).model.hidden_size == 64
    assert build_config({"finetune_method": "lora", "lora_r": 8}).train.lora_r == 8
    assert build_config({"consensus_samples": 8, "temperature": 0.7}).generation.temperature == 0.7
    assert build_config({"do_sample": True, "top_p": 0.5}).generation.top_p == 0.5
    assert build_config({"hidden_size": 128, "lora_r": 16, "temperature": 1.0}).model.hidden_size == 128  # defaults


def test_a_parameter_not_shown_in_the_cell_still_reaches_the_config():
    """-p sets any parameter a notebook takes: papermill injects it after the short cell."""
    from blipnb.notebook import config_from_namespace
    from blipnb.notebook.params import cell_parameters, render_cell

    assert "hidden_size" not in cell_parameters("02_finetune")
    namespace = {}
    exec(render_cell("02_finetune"), namespace)  # noqa: S102 - our own rendered literals
    namespace.pop("__builtins__")
    namespace.update(from_scratch=True, hidden_size=64, num_heads=4)  # what papermill's injected cell assigns
    cfg = config_from_namespace(namespace)
    assert (cfg.model.hidden_size, cfg.model.num_heads) == (64, 4)


def test_params_command_lists_every_parameter_with_its_help(capsys):
    from blipnb.cli import main
    from blipnb.notebook.params import ACCEPTED

    assert main(["params", "02_finetune"]) == 0
    out = capsys.readouterr().out
    for name in ACCEPTED["02_finetune"]:
        assert f" {name} " in out, name
    assert "* epochs" in out and "  lora_r" in out and "adapter rank" in out  # in the cell or not, with help
