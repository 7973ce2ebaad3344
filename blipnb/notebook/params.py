"""Which parameters each notebook takes, and its short parameters cell rendered from the config dataclasses.

A notebook takes every parameter of the stages it runs (ACCEPTED): `-p`, a preset file or `blipnb run-all` may set
any of them. Its parameters cell shows only the knobs people change most (CELLS), under short headings, so it fits
on a screen; `blipnb params NOTEBOOK` lists the rest with their help. The cell must hold literals (papermill
injects after it), so it cannot import its defaults: it is rendered from the one home of each default, the
dataclass field, and a test fails when a committed cell differs. After changing a default or a help text, run
`python -m blipnb.notebook.params` to rewrite the cells.
"""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..config import (AnalysisConfig, DataConfig, DemoConfig, EvalConfig, GenerationConfig, HubConfig, ModelConfig,
                      SweepConfig, TrainConfig, default_of, help_of)


def _names(*classes) -> tuple[str, ...]:
    return tuple(f.name for cls in classes for f in fields(cls))


DATA = _names(DataConfig)
MODEL = _names(ModelConfig)
TRAIN = _names(TrainConfig)
# 02 validates with the decoding 03 reports with: both take all of it, so a preset sets it for both.
DECODING = _names(GenerationConfig)

ACCEPTED = {
    "01_data_exploration": ("preset", "run_dir", *DATA),
    "02_finetune": ("preset", "run_dir", "overwrite", *DATA, *MODEL, *TRAIN, *DECODING),
    "03_evaluate": ("preset", "run_dir", *DECODING, *_names(EvalConfig, SweepConfig, HubConfig)),
    "04_error_analysis": ("preset", "run_dir", *_names(AnalysisConfig), "n_bootstrap", "bootstrap_seed"),
    "05_inference_demo": ("preset", "run_dir", *DECODING, *_names(DemoConfig)),
}

# Each notebook's parameters cell: a "# heading" line, or a parameter shown with its default and help.
CELLS = {
    "01_data_exploration": (
        "preset", "run_dir", "# Data", "source", "data_dir", "annotations", "val_fraction", "test_fraction", "max_train_samples",
        "max_eval_samples", "# Problems in the data", "on_bad_data", "near_duplicates", "corrections"),
    "02_finetune": (
        "preset", "run_dir", "overwrite", "# Data", "source", "data_dir", "annotations", "# Model", "model_id", "from_scratch",
        "# Training", "epochs", "learning_rate", "batch_size", "finetune_method", "precision",
        "resume_from_checkpoint", "hp_trials", "# Decoding for validation (03 reports with the same)", "num_beams",
        "max_new_tokens", "prompt"),
    "03_evaluate": (
        "preset", "run_dir", "eval_split", "# Decoding (None: the run's, as 02 validated)", "num_beams", "max_new_tokens",
        "consensus_samples", "# Scoring", "n_bootstrap", "do_spice", "clip_model",
        "# Decoding sweep on validation (all empty: none)", "sweep_num_beams", "sweep_length_penalty",
        "sweep_max_new_tokens", "# Other runs on the same test images", "compare_with", "# Publishing",
        "push_to_hub", "hub_model_id"),
    "04_error_analysis": ("preset", "run_dir", "k_examples", "score_key", "min_slice_size", "n_bootstrap", "compare_run"),
    "05_inference_demo": (
        "preset", "run_dir", "image_path", "# Decoding (None: the run's, as 02 validated)", "num_beams", "max_new_tokens",
        "consensus_samples", "# Captioning a folder", "caption_folder_path", "caption_output"),
}

NOTEBOOKS = tuple(CELLS)  # the suite, in the order it runs

# Where a notebook's cell deliberately differs from the dataclass default, with the reason. Empty today: every
# notebook starts from the real defaults, and presets (notebooks/params/*.yaml) change them.
EXCEPTIONS: dict[str, dict[str, object]] = {}
# 03 and 05 run on a trained run: their decoding parameters default to None, the run's decoding (its config.json:
# what 02 validated with). A value given wins, and 03 reports how it differs (blipnb.notebook.config_from_namespace).
RUN_DECODING = {"03_evaluate": DECODING, "05_inference_demo": DECODING}


def cell_parameters(notebook: str) -> tuple[str, ...]:
    """The parameters shown in `notebook`'s cell, in order (its headings left out)."""
    return tuple(n for n in CELLS[notebook] if not n.startswith("#"))


def render_cell(notebook: str) -> str:
    """The parameters cell of `notebook` (a name such as "02_finetune"), rendered from the dataclass fields."""
    lines = []
    for name in CELLS[notebook]:
        if name.startswith("#"):
            lines.append(name)
        elif name in RUN_DECODING.get(notebook, ()):
            lines.append(f"{name} = None  # {help_of(name)}")
        else:
            lines.append(f"{name} = {_literal(EXCEPTIONS.get(notebook, {}).get(name, default_of(name)))}  "
                         f"# {help_of(name)}")
    return "\n".join(lines)


def describe_parameters(notebook: str | None = None) -> str:
    """Every parameter `notebook` takes (or the whole suite), with its default and help; those in the parameters
    cell are marked with *."""
    names = ACCEPTED[notebook] if notebook else tuple(dict.fromkeys(n for a in ACCEPTED.values() for n in a))
    shown = set(cell_parameters(notebook)) if notebook else set().union(*map(cell_parameters, CELLS))
    defaults = {n: _literal(default_of(n)) for n in names}
    width, dwidth = max(map(len, names)), max(map(len, defaults.values()))
    lines = [f"{'*' if n in shown else ' '} {n.ljust(width)}  {defaults[n].ljust(dwidth)}  {help_of(n)}"
             for n in names]
    where = f"{notebook} takes" if notebook else "the notebooks take"
    return "\n".join([f"{where} these parameters (* in its parameters cell; set any other with -p NAME VALUE or a "
                      "preset file):", *lines])


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def parameters_cell(nb: dict) -> dict:
    """The one code cell tagged `parameters` of a notebook's JSON."""
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"expected one cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def sync(path: str | Path) -> bool:
    """Rewrite the parameters cell of the notebook at `path` from the dataclasses; True if it changed."""
    import nbformat  # writes the JSON exactly as Jupyter and nbstripout do

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    cell = parameters_cell(nb)
    text = render_cell(path.stem)
    if cell["source"] == text:
        return False
    cell["source"] = text
    nbformat.write(nb, path)
    return True


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["notebooks"])[0])
    for name in CELLS:
        changed = sync(folder / f"{name}.ipynb")
        print(f"{name}: {'rewritten' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
