"""Training randomness: the same run trained once per seed into sibling run directories, compared metric by metric.

A bootstrap CI in metrics.json covers the choice of test images for one trained model. It says nothing about how much
the score moves when the same recipe is trained again with another seed; this module measures that spread.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from .. import runs
from ..errors import ParameterError
from ..schema import METRIC_KEYS
from .report import format_value
from .run import FINETUNED

SEEDS_JSON = "seeds.json"  # inside the comparison folder: per-seed values and CIs, mean and sd per metric
SEEDS_TABLE = "seeds.md"  # the same as a Markdown table


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; a ParameterError naming --seeds for anything else (fewer than two, repeats, non-ints)."""
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s != ""]
    except ValueError:
        raise ParameterError(f"--seeds takes comma-separated integers such as 0,1,2, got {text!r}") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ParameterError(f"--seeds needs at least two different seeds to show a spread, got {text!r}")
    return seeds


def seed_run_dirs(out: str | Path, seeds: list[int]) -> dict[int, Path]:
    """{seed: sibling run directory}: runs/sample with seeds 0,1 -> runs/sample-seed0, runs/sample-seed1."""
    out = Path(out)
    return {s: out.with_name(f"{out.name}-seed{s}") for s in seeds}


def comparison_dir(out: str | Path) -> Path:
    """Where the across-seed table and plot go: runs/sample -> runs/sample-seeds."""
    out = Path(out)
    return out.with_name(f"{out.name}-seeds")


def compare_seeds(run_dirs: dict[int, str | Path], model: str = FINETUNED) -> dict:
    """Per metric: each seed's value with its bootstrap CI, and the mean and sample sd across seeds.

    Reads each run's metrics.json; a missing one is an error naming the run directory (its suite failed).
    """
    per_seed = {}
    for seed, run_dir in run_dirs.items():
        path = Path(run_dir) / runs.METRICS
        if not path.exists():
            raise FileNotFoundError(f"seed {seed}: no {runs.METRICS} in {run_dir}: its suite did not finish")
        result = runs.read_json(path)["results"][model]
        per_seed[seed] = {"run_dir": str(run_dir), "metrics": result["metrics"], "ci": result.get("ci", {})}
    metrics = {}
    for key in METRIC_KEYS:
        values = [r["metrics"].get(key) for r in per_seed.values()]
        if any(v is None for v in values):
            continue  # e.g. SPICE unavailable offline: no spread to report
        metrics[key] = {"mean": statistics.fmean(values), "sd": statistics.stdev(values),
                        "min": min(values), "max": max(values),
                        "seeds": {s: {"value": r["metrics"][key], **(r["ci"].get(key) or {})}
                                  for s, r in per_seed.items()}}
    return {"model": model, "seeds": list(run_dirs), "runs": {s: r["run_dir"] for s, r in per_seed.items()},
            "metrics": metrics}


def seed_rows(comparison: dict) -> list[dict]:
    """One row per metric: mean ± sd across seeds, then each seed's value [95% CI]."""
    rows = []
    for key, m in comparison["metrics"].items():
        row = {"metric": key, "mean ± sd": f"{format_value(key, m['mean'])} ± {format_value(key, m['sd'])}"}
        for seed, s in m["seeds"].items():
            ci = f" [{format_value(key, s['low'])}, {format_value(key, s['high'])}]" if "low" in s else ""
            row[f"seed {seed}"] = format_value(key, s["value"]) + ci
        rows.append(row)
    return rows


def write_comparison(comparison: dict, folder: str | Path) -> dict[str, Path]:
    """seeds.json and seeds.md in `folder`; returns their paths."""
    from .report import markdown_table

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_json(folder / SEEDS_JSON, comparison)
    note = ("Each seed's interval is a bootstrap over test images for that one trained model; the sd is across "
            "training seeds (same data, same split, same recipe).")
    runs.write_text(folder / SEEDS_TABLE, "\n".join(markdown_table(seed_rows(comparison)) + ["", note, ""]))
    return {"json": folder / SEEDS_JSON, "table": folder / SEEDS_TABLE}
