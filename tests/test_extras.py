"""A missing optional extra is named with its pip command, in one line, instead of a ModuleNotFoundError."""
import sys

import pytest

from blipnb.cli import main
from blipnb.errors import EXTRAS, MissingExtra, require


def test_serve_without_the_serve_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "litserve", None)  # import litserve now raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "blipnb.serve", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["serve", "runs/sample/model", "--port", "8000"])
    message = str(e.value)
    assert message.startswith("blipnb: blipnb serve needs litserve, which is not installed")
    assert "pip install 'blipnb[serve]'" in message and "\n" not in message


def test_run_all_without_the_notebooks_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "papermill", None)
    with pytest.raises(SystemExit, match=r"blipnb run-all needs papermill.*pip install 'blipnb\[notebooks\]'"):
        main(["run-all", "-f", "notebooks/params/smoke.yaml", "--out", "unused"])


def test_require_renames_only_the_missing_extra_itself(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    with pytest.raises(MissingExtra, match="notebooks"):
        require("ipywidgets", "widgets")
    assert require("json", "anything").dumps([]) == "[]"
    with pytest.raises(MissingExtra, match="pip install no_such_module_here"):
        require("no_such_module_here", "a feature")


def test_every_extra_named_is_one_pyproject_declares():
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert set(EXTRAS.values()) <= set(declared)
