"""The five notebooks, headless with the smoke preset, asserting on the files each one writes.

Each notebook runs once per test session: `make test` runs them under nbval first and points BLIPNB_SMOKE_RUN at
that run directory; without it (plain `pytest tests`) the fixture below runs them with papermill.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from blipnb import runs
from blipnb.cli import main
from blipnb.notebook.params import NOTEBOOKS
from blipnb.suite import notebook_parameters
from blipnb.config import PARAMETERS, build_config
from blipnb.schema import METRIC_KEYS

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
PRESETS = sorted((NB_DIR / "params").glob("*.yaml"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The run directory of 01 -> 05 with the smoke preset: nbval's (make test), else one papermill run."""
    if os.environ.get("BLIPNB_SMOKE_RUN"):
        return runs.RunDir(os.environ["BLIPNB_SMOKE_RUN"])
    out = tmp_path_factory.mktemp("smoke") / "run"
    rc = main(["run-all", "-f", str(NB_DIR / "params" / "smoke.yaml"), "--out", str(out)])
    assert rc == 0, "a notebook failed: see the executed copy under the run dir"
    return runs.RunDir(out)


def test_every_notebook_was_kept_and_ran_without_errors(smoke_run):
    for name in NOTEBOOKS:
        nb = json.loads((smoke_run / runs.NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
        assert any("injected-parameters" in c["metadata"].get("tags", []) for c in nb["cells"]), name
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, name  # papermill's executed copy; under nbval, nbval itself failed on any error


def test_01_wrote_the_data_summary(smoke_run):
    summary = runs.read_json(smoke_run / runs.DATA_SUMMARY)
    assert summary["sizes"] == {"train": 64, "validation": 16, "test": 16}
    assert all(v == 0 for v in summary["id_overlap"].values())


def test_02_exported_the_model_and_logs(smoke_run):
    for name in ("config.json", "model.safetensors", "processor_config.json"):
        assert (smoke_run / runs.MODEL_DIR / name).exists(), name
    # Deployable as it is (make demo's export): both hosts' entry points, each with the runtime beside it
    from blipnb import runtime
    from blipnb.model.deploy import RUNTIME_PACKAGE
    hosts = (Path(runtime.__file__).parent / "hosts.py").read_bytes()
    for name in (runs.HANDLER, runs.SAGEMAKER_ENTRY):
        entry = smoke_run / runs.MODEL_DIR / name
        assert RUNTIME_PACKAGE in entry.read_text() and (entry.parent / RUNTIME_PACKAGE / "hosts.py").read_bytes() == hosts
    history = runs.read_json(smoke_run / runs.LOG_HISTORY)
    assert any("eval_cider" in h for h in history)
    assert runs.read_json(smoke_run / runs.CONFIG)["model"]["from_scratch"] is True
    assert (smoke_run / runs.FIGURES_DIR / "training_curves.png").exists()


def test_03_scored_both_models_with_cis(smoke_run):
    metrics = runs.read_json(smoke_run / runs.METRICS)
    assert metrics["n_images"] == 16 and set(metrics["results"]) == {"fine-tuned", "baseline"}
    for result in metrics["results"].values():
        assert set(result["metrics"]) == set(METRIC_KEYS)
        assert result["ci"]["CIDEr"]["low"] <= result["metrics"]["CIDEr"] <= result["ci"]["CIDEr"]["high"]
    assert "CIDEr" in metrics["comparison"]
    assert len(runs.read_jsonl(smoke_run / runs.PREDICTIONS)) == 16
    assert (smoke_run / runs.MODEL_DIR / runs.MODEL_CARD).exists()


def test_04_wrote_the_error_analysis(smoke_run):
    tables = runs.read_json(smoke_run / runs.ERROR_ANALYSIS)
    assert tables["n_images"] == 16 and tables["worst"] and tables["attributes"] is not None


def test_05_captioned_a_folder(smoke_run):
    lines = (smoke_run / "captions.csv").read_text().splitlines()
    assert lines[0] == "file_name,caption" and len(lines) == 17


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_parameters_exist_in_a_notebook_and_validate(preset):
    params = yaml.safe_load(preset.read_text())
    declared = set().union(*(notebook_parameters(NB_DIR / f"{n}.ipynb") for n in NOTEBOOKS))
    assert set(params) <= declared, sorted(set(params) - declared)
    build_config(params)  # types and ranges


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_is_literal_commented_and_known(name):
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1
    lines = [line for line in "".join(cells[0]["source"]).splitlines() if line.strip()]
    assert len(lines) <= 22, f"{name}: the parameters cell must fit on one screen ({len(lines)} lines)"
    for line in lines:
        if line.startswith("# "):  # a heading over a group of parameters
            continue
        assert re.match(r"^[a-z_0-9]+ = .+  # \S", line), f"{name}: not 'name = literal  # comment': {line!r}"
        assert "(" not in line.split("#")[0], f"{name}: a parameter must be a literal, not a call: {line!r}"
        # papermill skips a line with a second '=' ("Unable to parse line"): run-all would then reject the name
        assert line.count("=") == 1, f"{name}: papermill cannot parse a help text holding '=': {line!r}"
    assert set(notebook_parameters(NB_DIR / f"{name}.ipynb")) <= PARAMETERS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_no_outputs_and_tell_a_story(name):
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{name} has outputs: strip it"
    markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    assert len(markdown) >= len(code), f"{name}: fewer markdown cells than code cells"
    assert "".join(markdown[0]["source"]).startswith("# ")
    assert "assert " in "".join(code[-1]["source"]), f"{name}: the last cell must check what it produced"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_holds_the_dataclass_defaults(name):
    """Every default has one home, its dataclass field: a cell value that differs fails here (unless listed,
    with its reason, in blipnb.notebook.params.EXCEPTIONS, or a decoding parameter of 03/05: None, the run's)."""
    from papermill.translators import PythonTranslator

    from blipnb.config import default_of
    from blipnb.notebook.params import EXCEPTIONS, RUN_DECODING
    cell = next(c for c in json.loads((NB_DIR / f"{name}.ipynb").read_text())["cells"]
                if "parameters" in c["metadata"].get("tags", []))
    for p in PythonTranslator.inspect({"source": "".join(cell["source"])}):
        expected = None if p.name in RUN_DECODING.get(name, ()) else EXCEPTIONS.get(name, {}).get(p.name,
                                                                                                  default_of(p.name))
        assert eval(p.default) == expected, f"{name}: {p.name} = {p.default}, the dataclass says {expected!r}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_is_rendered_from_the_dataclasses(name):
    """The cell is the rendering of the dataclass fields (defaults and help); `make params` rewrites it."""
    import papermill

    from blipnb.notebook.params import cell_parameters, render_cell
    cell = next(c for c in json.loads((NB_DIR / f"{name}.ipynb").read_text())["cells"]
                if "parameters" in c["metadata"].get("tags", []))
    assert "".join(cell["source"]) == render_cell(name), f"{name} is stale: run `make params`"
    assert set(papermill.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))) == set(cell_parameters(name))


def test_committed_notebooks_are_what_the_strip_filter_writes(tmp_path):
    """`make venv` installs nbstripout as a git filter: a committed file it would change shows as modified on
    every fresh clone (git status dirty after make demo). Copies are stripped in place, all in one process."""
    copies = [tmp_path / f"{name}.ipynb" for name in NOTEBOOKS]
    for copy in copies:
        copy.write_bytes((NB_DIR / copy.name).read_bytes())
    subprocess.run([sys.executable, "-m", "nbstripout", *map(str, copies)], check=True)
    for copy in copies:
        committed = (NB_DIR / copy.name).read_text(encoding="utf-8")
        assert copy.read_text(encoding="utf-8") == committed, f"{copy.stem}: run nbstripout on it and commit"


def test_mistyped_parameter_fails_naming_it(tmp_path):
    with pytest.raises(SystemExit, match="epoch"):
        main(["run-all", "-f", str(NB_DIR / "params" / "smoke.yaml"), "-p", "epoch", "2", "--out", str(tmp_path)])


def _execute(name, tmp_path, **parameters):
    import papermill
    return papermill.execute_notebook(str(NB_DIR / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"),
                                      parameters={"run_dir": str(tmp_path / "run"), **parameters},
                                      kernel_name="python3", progress_bar=False)


def test_injected_typo_fails_in_the_notebook_naming_it(tmp_path):
    from papermill.exceptions import PapermillExecutionError
    with pytest.raises(PapermillExecutionError, match="sampel_train.*did you mean 'sample_train'"):
        _execute("01_data_exploration", tmp_path, source="sample", sampel_train=8)


def test_hub_defaults_offline_fail_fast_with_one_clear_message(tmp_path):
    from papermill.exceptions import PapermillExecutionError
    with pytest.raises(PapermillExecutionError) as err:
        _execute("01_data_exploration", tmp_path)  # the real defaults: Flickr8k from the hub
    assert err.value.ename == "DataSourceUnavailable"
    assert "jxie/flickr8k" in err.value.evalue and "notebooks/params/sample.yaml" in err.value.evalue
    assert len(err.value.traceback) <= 3  # one message, not a 60-line traceback


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_help_notebook_documents_every_parameter(name):
    """papermill --help-notebook must parse every line of the parameters cell (an '=' in a comment breaks it)."""
    from papermill.translators import PythonTranslator
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    source = "".join(cell["source"])
    parsed = PythonTranslator.inspect({"source": source})
    assert len(parsed) == len([line for line in source.splitlines() if line.strip() and not line.startswith("#")])
    assert all(p.help for p in parsed), [p.name for p in parsed if not p.help]


def test_notebooks_that_load_data_take_every_data_parameter():
    """01 and 02 must see the same splits: a data parameter missing from one would be silently ignored there."""
    from dataclasses import fields

    from blipnb.config import DataConfig
    data_params = {f.name for f in fields(DataConfig)}
    for name in ("01_data_exploration", "02_finetune"):
        missing = data_params - notebook_parameters(NB_DIR / f"{name}.ipynb")
        assert not missing, f"{name} lacks data parameters {sorted(missing)}"


def test_caption_command_and_05_decode_alike():
    """`blipnb caption` and notebook 05 both start from the run's decoding: their decoding options default to None
    (caption: decoding_defaults.json saved with the model; 05: the run's config, see test_decoding_consistency)."""
    from blipnb.cli import build_parser
    args = build_parser().parse_args(["caption", "imgs", "--model", "m", "--out", "o.csv"])
    declared = {p.name: eval(p.default) for p in _inspect_parameters("05_inference_demo")}
    for name in ("num_beams", "max_new_tokens", "consensus_samples"):
        assert getattr(args, name) is None and declared[name] is None, name


def _inspect_parameters(name):
    from papermill.translators import PythonTranslator
    cell = next(c for c in json.loads((NB_DIR / f"{name}.ipynb").read_text())["cells"]
                if "parameters" in c["metadata"].get("tags", []))
    return PythonTranslator.inspect({"source": "".join(cell["source"])})
