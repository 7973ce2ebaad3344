"""Which parameters each notebook declares, and its parameters cell rendered from the config dataclasses.

A parameters cell must hold literals (papermill injects after it, `--help-notebook` parses it), so it cannot
import its defaults. Instead it is rendered from the one home of each default, the dataclass field, and a test
fails when a committed cell differs from its rendering. After changing a default or a help text, run
`python -m blipnb.notebook.params` to rewrite the cells.
"""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from ..config import DataConfig, ModelConfig, TrainConfig, help_of, render_parameters

# 01 and 02 load the same data, so they declare the same data parameters: this one list.
DATA = tuple(f.name for f in fields(DataConfig))
TRAIN = tuple(f.name for f in fields(TrainConfig))
# What model 02 starts from, including the size of a tiny one built from scratch.
MODEL = tuple(f.name for f in fields(ModelConfig))
# 02 validates with the decoding 03 reports with: both declare these, so a preset sets them for both.
# Consensus decoding draws its captions with top_p and temperature, so those belong to the run's decoding too.
DECODING = ("num_beams", "max_new_tokens", "min_new_tokens", "length_counts_prompt",
            "length_penalty", "consensus_samples", "top_p", "temperature")
SAMPLING = ("do_sample",)

NOTEBOOK_PARAMETERS = {
    "01_data_exploration": ("run_dir", *DATA),
    "02_finetune": ("run_dir", "overwrite", *DATA, *MODEL, *TRAIN, "prompt", *DECODING),
    "03_evaluate": ("run_dir", "eval_split", *DECODING, "gen_batch_size", "do_spice", "spice_subsample", "n_bootstrap", "bootstrap_seed",
                    "plausible_bleu4", "plausible_cider", "sweep_num_beams", "sweep_length_penalty",
                    "sweep_max_new_tokens", "sweep_max_images", "push_to_hub", "hub_model_id"),
    "04_error_analysis": ("run_dir", "k_examples", "score_key", "min_slice_size", "n_bootstrap"),
    "05_inference_demo": ("run_dir", "image_path", *DECODING, *SAMPLING,
                          "caption_folder_path", "caption_output"),
}

# Where a notebook's cell deliberately differs from the dataclass default, with the reason. Empty today: every
# notebook starts from the real defaults, and presets (notebooks/params/*.yaml) change them.
EXCEPTIONS: dict[str, dict[str, object]] = {}
# 03 and 05 run on a trained run: their decoding parameters default to None, the run's decoding (its config.json:
# what 02 validated with). A value given wins, and 03 reports how it differs (blipnb.notebook.config_from_namespace).
RUN_DECODING = {"03_evaluate": DECODING, "05_inference_demo": (*DECODING, *SAMPLING)}
RUN_DECODING_HELP = "None: the run's, as 02 validated"


def render_cell(notebook: str) -> str:
    """The parameters cell of `notebook` (a name such as "02_finetune"), rendered from the dataclass fields."""
    run_decoding = RUN_DECODING.get(notebook, ())
    return "\n".join(f"{name} = None  # {help_of(name)}; {RUN_DECODING_HELP}" if name in run_decoding
                     else render_parameters([name], EXCEPTIONS.get(notebook)) for name in NOTEBOOK_PARAMETERS[notebook])


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
    for name in NOTEBOOK_PARAMETERS:
        changed = sync(folder / f"{name}.ipynb")
        print(f"{name}: {'rewritten' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
