"""The notebooks as people use them: a `preset` parameter picked inside the notebook (the preset replaces the cell's
defaults, and a value set in the cell or with -p wins), and `blipnb lab` / `make lab`, which prepares the notebooks
with a preset's parameters into the run directory and starts JupyterLab there."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from blipnb import lab, runs
from blipnb.config import default_of
from blipnb.errors import ParameterError
from blipnb.notebook import config_from_namespace
from blipnb.presets import preset_path, read_params

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SMOKE = read_params([str(NB_DIR / "params" / "smoke.yaml")])


def cell(**changed) -> dict:
    """A parameters cell as the notebook shows it (every default), with `changed` values on top."""
    return {"preset": "", "run_dir": default_of("run_dir"), "epochs": default_of("epochs"),
            "learning_rate": default_of("learning_rate"), "source": default_of("source"), **changed}


def test_preset_replaces_the_cell_defaults(monkeypatch):
    monkeypatch.chdir(NB_DIR)  # where JupyterLab runs a notebook opened from notebooks/
    cfg = config_from_namespace(cell(preset="smoke"))
    assert (cfg.run_dir, cfg.data.source, cfg.train.epochs) == (SMOKE["run_dir"], "sample", SMOKE["epochs"])
    assert cfg.data.sample_train == SMOKE["sample_train"] and cfg.model.from_scratch and cfg.preset == "smoke"


def test_preset_an_explicit_value_wins_over_the_preset(monkeypatch):
    monkeypatch.chdir(NB_DIR)
    # Changed in the cell, or injected by papermill -p (a value in the namespace that is not the cell's default).
    cfg = config_from_namespace(cell(preset="smoke", learning_rate=0.05, sample_test=8))
    assert cfg.train.learning_rate == 0.05 and cfg.data.sample_test == 8
    assert cfg.train.epochs == SMOKE["epochs"]  # still at the cell's default: the preset's


def test_preset_by_path_and_an_unknown_name_lists_the_presets(tmp_path, monkeypatch):
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 7\nsource: sample\nfrom_scratch: true\n")
    monkeypatch.chdir(tmp_path)
    assert config_from_namespace(cell(preset="mine.yaml")).train.epochs == 7
    assert preset_path("sample") == NB_DIR / "params" / "sample.yaml"  # from anywhere: this checkout's
    with pytest.raises(ParameterError, match="no preset named 'smok'.*smoke"):
        config_from_namespace(cell(preset="smok"))


def test_preset_in_a_notebook_run_by_papermill(tmp_path):
    """01 run headless with -p preset smoke and -p sample_test 8: the preset's sizes, the explicit one winning."""
    import papermill

    out = tmp_path / "01.ipynb"
    run_dir = tmp_path / "run"
    papermill.execute_notebook(str(NB_DIR / "01_data_exploration.ipynb"), str(out), kernel_name="python3",
                               parameters={"preset": "smoke", "run_dir": str(run_dir), "sample_test": 8},
                               cwd=str(NB_DIR), progress_bar=False)
    summary = runs.read_json(run_dir / runs.DATA_SUMMARY)
    assert summary["sizes"] == {"train": SMOKE["sample_train"], "validation": SMOKE["sample_validation"],
                                "test": 8}, summary["sizes"]


def test_lab_prepares_the_notebooks_once_and_keeps_a_users_edits(tmp_path):
    run_dir = tmp_path / "lab-run"
    first = lab.prepare(NB_DIR / "params" / "smoke.yaml", run_dir, NB_DIR)
    assert [p.name for p in first] == [f"{n}.ipynb" for n in lab.NOTEBOOKS]
    nb = json.loads(first[1].read_text())
    injected = next("".join(c["source"]) for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert "from_scratch = True" in injected and f'run_dir = "{run_dir.resolve()}"' in injected
    first[1].write_text(first[1].read_text().replace("from_scratch = True", "from_scratch = True  # mine"))
    again = lab.prepare(NB_DIR / "params" / "smoke.yaml", run_dir, NB_DIR)
    assert again == first and "# mine" in first[1].read_text()  # reused, never overwritten


def test_lab_command_is_loopback_with_a_token():
    command = lab.jupyter_command(Path("/x/notebooks"), port=8890, open_browser=False)
    joined = " ".join(command)
    assert "--ServerApp.ip=127.0.0.1" in joined and "--no-browser" in joined and "token" not in joined.lower()
    assert "--ServerApp.root_dir=/x/notebooks" in joined
