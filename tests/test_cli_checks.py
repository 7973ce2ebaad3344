"""`blipnb run-all` and `blipnb caption` check what they can before any work: one line and a non-zero exit for a
bad parameter, preset, folder or model, values typed by their parameter, and a hint that works from here."""
import json
import os
import re
import sys
import types
from pathlib import Path

import pytest
from data_sources import write_image
from helpers import tiny_config

from blipnb import cli, runs, suite
from blipnb.errors import HEADLESS, offline_hint
from blipnb.presets import coerce, read_params

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SMOKE = NB_DIR / "params" / "smoke.yaml"


def _run_all_fails(tmp_path, *argv) -> str:
    """The one-line message run-all exits with; asserts that no notebook ran."""
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as err:
        cli.main(["run-all", *argv, "--out", str(out)])
    message = str(err.value.code)
    assert message.startswith("blipnb run-all: ") and "\n" not in message, message
    assert not (out / runs.NOTEBOOKS_DIR).exists()  # checked before any notebook ran
    return message


def test_values_take_their_parameters_type():
    params = read_params([], [("learning_rate", "1e-4"), ("eval_strategy", "no"), ("batch_size", "1e2"),
                              ("resume_from_checkpoint", "no"), ("prompt", ""), ("data_dir", "2024"),
                              ("max_train_samples", "null"), ("epochs", "2")])
    assert params == {"learning_rate": 1e-4, "eval_strategy": "no", "batch_size": 100,
                      "resume_from_checkpoint": False, "prompt": "", "data_dir": "2024",
                      "max_train_samples": None, "epochs": 2}
    assert isinstance(params["learning_rate"], float) and isinstance(params["batch_size"], int)
    assert coerce("report_to", False, "off") == "off" and coerce("report_to", "none", "none") == "none"


def test_preset_files_are_typed_the_same_way(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("learning_rate: 1e-4\neval_strategy: no\nprompt: 'no'\nweight_decay: 5e-2\n")
    assert read_params([str(preset)]) == {"learning_rate": 1e-4, "eval_strategy": "no", "prompt": "no",
                                          "weight_decay": 0.05}


@pytest.mark.parametrize("preset_text, argv_tail, expected", [
    (None, ["-p", "learning_rate", "-1"], "learning_rate must be > 0, got -1.0"),
    (None, ["-p", "batch_size", "abc"], "'batch_size' (-p batch_size) must be a number, got 'abc'"),
    (None, ["-p", "eval_strategy", "sometimes"], "'eval_strategy' must be one of"),
    (None, ["-p", "lerning_rate", "1e-4"], "'lerning_rate' (did you mean 'learning_rate'?)"),
    (None, ["-p", "early_stopping", "false"], "'early_stopping' does not apply here: it steers beam search"),
    ("epochs: 2\nlearning_rate: [1\nseed: 3\n", [], "line 3, column 5: not valid YAML"),
    ("epochs: 2\nbatch_sise: 4\n", [], "'batch_sise' (did you mean 'batch_size'?)"),
    ("- epochs\n", [], "must be a mapping of name: value"),
])
def test_run_all_refuses_bad_parameters_in_one_line_before_any_notebook(tmp_path, preset_text, argv_tail,
                                                                         expected):
    files = []
    if preset_text is not None:
        (tmp_path / "bad.yaml").write_text(preset_text)
        files = ["-f", str(tmp_path / "bad.yaml")]
    message = _run_all_fails(tmp_path, "-f", str(SMOKE), *files, *argv_tail)
    assert expected in message, message


def test_run_all_missing_preset_is_one_line(tmp_path):
    message = _run_all_fails(tmp_path, "-f", str(tmp_path / "nope.yaml"))
    assert "cannot read parameters file" in message and "nope.yaml" in message


def test_run_all_refuses_a_run_dir_of_another_config_before_any_notebook(tmp_path):
    out = tmp_path / "run"
    runs.write_json(out / runs.CONFIG, tiny_config(out).to_dict())
    message = _run_all_fails(tmp_path, "-f", str(SMOKE))
    assert "data.sample_train: 48 -> 64" in message and "generation.max_new_tokens: 10 -> 12" in message
    assert "train.learning_rate" not in message  # the same in both
    assert "-p overwrite true" in message


def test_run_all_with_overwrite_clears_the_old_run_first(tmp_path):
    out = tmp_path / "run"
    runs.write_json(out / runs.CONFIG, tiny_config(out).to_dict())
    for name in (runs.DATA_SUMMARY, "figures/near_duplicates.png", "notebooks/03_evaluate.ipynb", "mine.txt"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("old")
    cfg, _ = suite.check_run_all({**read_params([str(SMOKE)], [("overwrite", "true")]), "run_dir": str(out)}, out,
                               NB_DIR)
    assert cfg.overwrite is True and cfg.train.learning_rate == 1e-3
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["mine.txt"]  # 01's stale figure went too


def test_only_accepts_a_preset_for_the_whole_suite_and_types_what_it_injects(tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["run-all", "-f", str(SMOKE), "-p", "learning_rate", "1e-4", "-p", "eval_strategy", "no",
                   "--only", "02_finetune", "--prepare-only", "--out", str(out)])
    assert rc == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "other notebooks' parameters" in line)
    assert "n_bootstrap" in note and "learning_rate" not in note
    nb = json.loads((out / runs.NOTEBOOKS_DIR / "02_finetune.ipynb").read_text())
    injected = next("".join(c["source"]) for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "learning_rate = 0.0001" in injected and 'eval_strategy = "no"' in injected
    assert "n_bootstrap" not in injected  # 03's parameter: accepted, not passed to 02


def test_offline_hint_names_a_path_that_works_from_here(tmp_path, monkeypatch):
    for cwd in (ROOT, NB_DIR, tmp_path):
        hint = offline_hint(cwd, notebook=False)
        path = hint.split("blipnb run-all -f ")[1].rstrip(")")
        assert (cwd / path).is_file(), (cwd, path)
    assert "-f params/sample.yaml" in offline_hint(NB_DIR, notebook=False)
    monkeypatch.chdir(NB_DIR)
    assert offline_hint(notebook=False) == offline_hint(NB_DIR, notebook=False)


def test_offline_hint_speaks_to_a_notebook_user_of_the_preset_parameter_and_make_lab(monkeypatch):
    hint = offline_hint(notebook=True)
    assert 'preset = "sample"' in hint and "make lab" in hint and " -f " not in hint
    assert " -f " in offline_hint()  # this test process imported IPython, maybe, but runs no kernel

    class ZMQInteractiveShell:  # the shell of a Jupyter kernel
        pass

    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=ZMQInteractiveShell))
    monkeypatch.delenv(HEADLESS, raising=False)
    assert offline_hint() == hint  # in a kernel a person uses
    monkeypatch.setenv(HEADLESS, "1")  # papermill's or run-all's kernel: the command line's hint
    assert " -f " in offline_hint()


# -- blipnb caption -------------------------------------------------------------------------------------------------

def _caption(*argv) -> str:
    with pytest.raises(SystemExit) as err:
        cli.main(["caption", *argv])
    message = str(err.value.code)
    assert message.startswith("blipnb caption: ") and "\n" not in message, message
    return message


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the model is loaded: these checks must come first."""
    import blipnb.model.modeling as modeling

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr(modeling, "load_model", refuse)


def test_caption_checks_folder_output_and_model_before_loading(tmp_path, no_model_load):
    write_image(tmp_path / "imgs" / "a.png", 0)
    imgs = str(tmp_path / "imgs")
    assert "no such folder" in _caption(str(tmp_path / "nope"), "--model", "m", "--out", "o.csv")
    assert "'--out' must end in .csv or .jsonl" in _caption(imgs, "--model", "m", "--out", "o.txt")
    missing = tmp_path / "runs" / "x" / "model"
    assert f"--model {str(missing)!r}: no such folder" in _caption(imgs, "--model", str(missing), "--out", "o.csv")
    (tmp_path / "run" / runs.MODEL_DIR).mkdir(parents=True)
    (tmp_path / "run" / runs.MODEL_DIR / "config.json").write_text("{}")
    assert "is a run directory" in _caption(imgs, "--model", str(tmp_path / "run"), "--out", "o.csv")
    assert "not a model folder" in _caption(imgs, "--model", str(tmp_path / "imgs"), "--out", "o.csv")


def test_caption_of_an_empty_folder_warns_and_fails(tmp_path, capsys, no_model_load):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    rc = cli.main(["caption", str(tmp_path / "empty"), "--model", str(model), "--out", str(tmp_path / "c.csv")])
    assert rc == 1 and "warning: no images" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()


def test_caption_lists_unreadable_files_beside_the_output(tmp_path, capsys):
    from blipnb.config import ModelConfig
    from blipnb.model.tiny import build_tiny_blip

    model = build_tiny_blip(["a red circle", "a blue square"] * 10, tmp_path / "model",
                            ModelConfig(from_scratch=True, image_size=32, vocab_size=60))
    for i in range(3):
        write_image(tmp_path / "imgs" / f"ok{i}.png", i)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "captions.jsonl"
    rc = cli.main(["caption", str(tmp_path / "imgs"), "--model", str(model), "--out", str(out), "--num-beams", "1",
                   "--max-new-tokens", "4"])
    assert rc == 0
    assert "captioned 3 of 4 images" in capsys.readouterr().out
    assert sorted(r["file_name"] for r in runs.read_jsonl(out)) == ["ok0.png", "ok1.png", "ok2.png"]
    skipped = runs.read_jsonl(tmp_path / "captions.jsonl.skipped.jsonl")
    assert [r["file_name"] for r in skipped] == ["broken.jpg"] and "broken.jpg" in skipped[0]["reason"]
    assert oct(os.stat(out).st_mode & 0o777) == oct(runs.new_file_mode())


def test_readme_troubleshooting_covers_the_usual_failures_and_names_real_parameters():
    from blipnb.config import PARAMETERS

    readme = "".join(p.read_text() for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))))
    section = (ROOT / "docs" / "troubleshooting.md").read_text()
    for topic in ("Java", "METEOR", "PTB", "SPICE", "CUDA", "HF_HOME", "batch_size", "gradient_checkpointing",
                  "max_image_pixels", "on_bad_data skip", "skipped.jsonl", "overwrite true"):
        assert topic in section, topic
    named = set(re.findall(r"-p (\w+)", readme))
    assert named and named <= PARAMETERS, named - PARAMETERS  # every `-p name` in the README and docs/ exists


def test_caption_decodes_as_the_run_did_unless_told_otherwise(tmp_path):
    """`blipnb caption --model runs/x/model` uses the decoding saved with the export (what 03 evaluated with); a
    flag given wins; a model without saved decoding (a hub id) gets GenerationConfig's defaults."""
    from blipnb.config import GenerationConfig
    from blipnb.runtime.decoding import DECODING_FILE

    model = tmp_path / "model"
    model.mkdir()
    (model / DECODING_FILE).write_text(json.dumps({"num_beams": 3, "consensus_samples": 24, "temperature": 0.7,
                                                   "max_new_tokens": 20}))
    run = cli.caption_decoding(str(model))
    assert (run.num_beams, run.consensus_samples, run.temperature, run.max_new_tokens) == (3, 24, 0.7, 20)
    told = cli.caption_decoding(str(model), consensus_samples=0, num_beams=None, max_new_tokens=12)
    assert (told.consensus_samples, told.num_beams, told.max_new_tokens) == (0, 3, 12)
    assert cli.caption_decoding("Salesforce/blip-image-captioning-base") == GenerationConfig()
    args = cli.build_parser().parse_args(["caption", "imgs", "--model", "m", "--out", "o.csv"])
    assert (args.num_beams, args.max_new_tokens, args.prompt, args.consensus_samples) == (None,) * 4  # the run's


def test_run_all_kernels_talk_over_private_ipc_sockets(tmp_path, capfd):
    """run-all's kernels use IPC sockets in its own folder, not TCP on localhost (which any local user could reach,
    and which made ipykernel warn about eavesdropping once per notebook)."""
    import nbformat
    import papermill

    src, dst, sockets = tmp_path / "in.ipynb", tmp_path / "out.ipynb", tmp_path / "sockets"
    sockets.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import json\nfrom ipykernel.kernelapp import IPKernelApp\n"
        "app = IPKernelApp.instance()\nprint(json.dumps([app.transport, app.ip]))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src)
    papermill.execute_notebook(str(src), str(dst), kernel_name="python3", progress_bar=False,
                               kernel_manager_class=suite.ipc_kernel_manager(sockets))
    transport, ip = json.loads(nbformat.read(dst, as_version=4).cells[0].outputs[0]["text"])
    assert transport == "ipc" and Path(ip).parent == sockets
    assert "without encryption" not in capfd.readouterr().err
