"""02's view of a hyperparameter sweep (hp_trials > 0): the trials table and their figure."""
from __future__ import annotations

from .. import runs
from ..evaluation.trials import summarise
from .viz import plot_trials


def show_sweep(run: runs.RunDir):
    """Show the trials of the sweep 02 ran into run/sweep (a Markdown table) and return their figure, saved as
    figures/trials.png; None, saying so, when 02 trained one run."""
    from IPython.display import Markdown, display

    folder = run / runs.HP_SWEEP_DIR
    if not (folder / runs.HP_STUDY).is_file():
        print("no sweep: 02 trained one run (hp_trials = 0)")
        return None
    summary = summarise(folder)  # also writes trials.json, trials.md and best.yaml there
    display(Markdown((folder / runs.HP_TRIALS_TABLE).read_text()))
    print(f"best: trial {summary['best']['trial']}, now this run; its parameters as a preset: {runs.shown(summary['preset'])}")
    return run.save_figure(plot_trials(summary), runs.HP_FIGURE)
