"""A hyperparameter sweep's results: the trials table, the best trial as a preset, read from the sweep's study.

`summarise(out)` reads out/study.db (blipnb.training.search) and each trial's run directory, and writes
trials.json, trials.md and best.yaml into `out`. The objective is the validation score the trials were chosen by;
a pruned trial shows the last one it reported, when the pruner stopped it.
"""
from __future__ import annotations

from pathlib import Path

from .. import runs
from ..config import default_of, load_config
from ..config.search import SEARCHABLE
from ..training.study import RUN_ONLY
from .report import markdown_table

OBJECTIVES = {"eval_cider": "CIDEr", "eval_cider_bleu4": "CIDEr + BLEU-4"}  # best_metric's Trainer keys
STATES = {"COMPLETE": "finished", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def summarise(out) -> dict:
    """{"trials": rows, "best": row, "objective": its name, "parameters": the searched names, "preset": path}; also
    writes out/trials.json, out/trials.md and the best trial's parameters as the preset out/best.yaml."""
    from ..training.study import best_trial, load_study  # optuna, imported when used

    out = Path(out)
    study = load_study(out)
    best = best_trial(out)
    searched = [name for name in SEARCHABLE if any(name in t.params for t in study.trials)]
    rows = [_row(t, out, searched) for t in study.trials]
    objective = runs.read_json(out / runs.trial_dir_name(best.number) / runs.TRAIN_RESULTS)["best_metric_name"]
    summary = {"sweep": str(out), "objective": OBJECTIVES.get(objective, objective), "parameters": searched,
               "trials": rows, "best": next(r for r in rows if r["trial"] == best.number),
               "preset": str(write_best_preset(out, best.number, best.value, objective, len(rows)))}
    runs.write_json(out / runs.HP_TRIALS, summary)
    runs.write_text(out / runs.HP_TRIALS_TABLE, "\n".join(trials_table(summary)) + "\n")
    return summary


def _row(trial, out: Path, searched: list[str]) -> dict:
    steps = sorted(trial.intermediate_values)
    value = trial.value if trial.value is not None else (trial.intermediate_values[steps[-1]] if steps else None)
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else None
    return {"trial": trial.number, "state": STATES.get(trial.state.name, trial.state.name.lower()),
            "objective": value, **{name: trial.params.get(name) for name in searched},
            "last_step": steps[-1] if steps else None, "seconds": None if seconds is None else round(seconds, 1),
            "run_dir": str(out / runs.trial_dir_name(trial.number))}


def trials_table(summary: dict) -> list[str]:
    """The trials as Markdown table lines: state, objective, each searched value, steps and time; best marked."""
    rows = []
    for r in summary["trials"]:
        row = {"trial": f"**{r['trial']}** (best)" if r["trial"] == summary["best"]["trial"] else r["trial"],
               "state": r["state"], f"validation {summary['objective']}": _fmt(r["objective"])}
        row |= {name: _fmt(r[name]) if r[name] is not None else "–" for name in summary["parameters"]}
        row |= {"steps": r["last_step"] if r["last_step"] is not None else "–",
                "seconds": r["seconds"] if r["seconds"] is not None else "–"}
        rows.append(row)
    return markdown_table(rows)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.01 and value else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def write_best_preset(out: Path, number: int, value: float, objective: str, n_trials: int) -> Path:
    """The best trial's parameters that differ from the defaults, as a preset file for -f (out/best.yaml)."""
    import yaml

    cfg = load_config(out / runs.trial_dir_name(number) / runs.CONFIG)
    params = {k: v for k, v in cfg.flat().items() if k not in RUN_ONLY and v != default_of(k)}
    header = (f"# The best of {n_trials} trials of the sweep in {runs.shown(out)}: trial {number}, validation "
              f"{OBJECTIVES.get(objective, objective)} {value:.4f}.\n# Train it again, or on more data: blipnb run-all -f "
              f"{runs.shown(out / runs.HP_BEST)} --out runs/best\n")
    return runs.write_text(out / runs.HP_BEST, header + yaml.safe_dump(params, sort_keys=False))
