"""Run the five notebooks' code cells, checks included, in this Python process, with parameters injected after each
parameters cell as papermill injects them.

A kernel per notebook costs its start and the imports of torch and transformers each time; run in-process, several
data sources share them, so every kind of user data goes through every cell within the test budget. The notebooks
themselves still run under papermill and nbval once (tests/test_notebooks.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from blipnb.notebook.params import ACCEPTED, NOTEBOOKS

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SMOKE = yaml.safe_load((NB_DIR / "params" / "smoke.yaml").read_text())


class CellFailed(AssertionError):
    """A notebook cell raised: the message names the notebook, the cell and its first line."""


def code_cells(name: str) -> list[tuple[int, str, bool]]:
    """(index, source, is the parameters cell) of each code cell of notebook `name`."""
    nb = json.loads((NB_DIR / f"{name}.ipynb").read_text())
    return [(i, "".join(c["source"]), "parameters" in c["metadata"].get("tags", []))
            for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def run_notebook(name: str, parameters: dict) -> dict:
    """Execute notebook `name`'s code cells in a fresh namespace; returns the namespace."""
    namespace: dict = {"__name__": "__main__"}
    for index, source, is_parameters in code_cells(name):
        if is_parameters:  # as blipnb run-all does: the parameters this notebook takes, injected after its cell
            exec(compile(source, f"{name}[{index}]", "exec"), namespace)
            source = "\n".join(f"{k} = {v!r}" for k, v in parameters.items() if k in ACCEPTED[name])
        try:
            exec(compile(source, f"{name}[{index}]", "exec"), namespace)
        except Exception as e:
            first = source.strip().splitlines()[0] if source.strip() else ""
            raise CellFailed(f"{name}, cell {index} ({first!r}): {type(e).__name__}: {e}") from e
    return namespace


def run_suite(run_dir, **overrides) -> dict[str, dict]:
    """01 -> 05 on the smoke preset with `overrides` into `run_dir`; {notebook: its final namespace}."""
    parameters = {**SMOKE, **overrides, "run_dir": str(run_dir)}
    return {name: run_notebook(name, parameters) for name in NOTEBOOKS}
