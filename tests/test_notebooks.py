"""The five notebooks, headless: papermill with the smoke preset, asserting on the files each one writes."""
import json
import re
from pathlib import Path

import pytest
import yaml

from blipnb import runs
from blipnb.cli import NOTEBOOKS, main, notebook_parameters
from blipnb.config import PARAMETERS, build_config
from blipnb.scoring import METRIC_KEYS

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
PRESETS = sorted((NB_DIR / "params").glob("*.yaml"))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Run 01 -> 05 once with the smoke preset, as `blipnb run-all` does."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    rc = main(["run-all", "-f", str(NB_DIR / "params" / "smoke.yaml"), "--out", str(out)])
    assert rc == 0, "a notebook failed: see the executed copy under the run dir"
    return runs.RunDir(out)


def test_every_notebook_ran_and_was_kept(smoke_run):
    for name in NOTEBOOKS:
        nb = json.loads((smoke_run / runs.NOTEBOOKS_DIR / f"{name}.ipynb").read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, name


def test_01_wrote_the_data_summary(smoke_run):
    summary = runs.read_json(smoke_run / runs.DATA_SUMMARY)
    assert summary["sizes"] == {"train": 64, "validation": 16, "test": 16}
    assert all(v == 0 for v in summary["id_overlap"].values())


def test_02_exported_the_model_and_logs(smoke_run):
    for name in ("config.json", "model.safetensors", "processor_config.json"):
        assert (smoke_run / runs.MODEL_DIR / name).exists(), name
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
    for line in lines:
        assert re.match(r"^[a-z_0-9]+ = .+  # \S", line), f"{name}: not 'name = literal  # comment': {line!r}"
        assert "(" not in line.split("#")[0], f"{name}: a parameter must be a literal, not a call: {line!r}"
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
    assert len(parsed) == len([line for line in source.splitlines() if line.strip()])
    assert all(p.help for p in parsed), [p.name for p in parsed if not p.help]


def test_notebooks_that_load_data_declare_every_data_parameter():
    """01 and 02 must see the same splits: a data parameter missing from one would be silently ignored there."""
    from dataclasses import fields

    from blipnb.config import DataConfig
    data_params = {f.name for f in fields(DataConfig)}
    for name in ("01_data_exploration", "02_finetune"):
        missing = data_params - notebook_parameters(NB_DIR / f"{name}.ipynb")
        assert not missing, f"{name} lacks data parameters {sorted(missing)}"
