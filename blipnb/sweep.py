"""`blipnb sweep -f PRESET --trials N --space SPACE.yaml --out DIR`: a hyperparameter sweep chosen on validation.

Each trial trains into DIR/trial-NNN (a run directory 03 evaluates like any other). The optuna study lives in
DIR/study.db, so the same command after a kill goes on with the trials not yet done. At the end: the trials table
(DIR/trials.md), its figure (DIR/trials.png), the best trial's parameters as a preset (DIR/best.yaml), and 03 run
once, on the best trial. With `-p num_processes N` the trials train under torchrun on this machine (DDP).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runs
from .config import build_config
from .errors import USER_ERRORS
from .presets import preset_path, read_params

PROG = "blipnb sweep"
EVALUATES = "03_evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `blipnb sweep`."""
    parser.add_argument("-f", "--preset", action="append", default=[],
                        help="a preset's name (sample, smoke, ...) or YAML file: what every trial shares")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--trials", type=int, required=True, help="trials in all (finished or pruned); a sweep that "
                                                                  "was stopped goes on to this many")
    parser.add_argument("--space", default=None, help="the search space YAML (default: the built-in space; see "
                                                      "docs/sweeps.md)")
    parser.add_argument("--out", required=True, help="the sweep's directory: study.db, trial-NNN/, trials.md, "
                                                     "best.yaml")
    parser.add_argument("--no-evaluate", action="store_true", help="skip running 03 on the best trial")
    parser.add_argument("--notebooks", type=Path, default=None, help="folder holding the notebooks (for 03)")
    parser.add_argument("--search-only", action="store_true", help=argparse.SUPPRESS)  # a torchrun worker


def main(argv: list[str] | None = None) -> int:
    """`python -m blipnb.sweep ...` (what torchrun runs in each process)."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    add_arguments(parser)
    return sweep(parser.parse_args(argv), parser.error)


def sweep(args, error) -> int:
    """Run the sweep the parsed options describe, then report it and evaluate its best trial."""
    if args.trials < 1:
        error("--trials must be at least 1")
    out = Path(args.out).resolve()
    try:
        files = [str(preset_path(f)) for f in args.preset]
        params = {**read_params(files, args.parameter), "run_dir": str(out)}
        cfg = build_config({**params, "hp_trials": args.trials, "hp_space": args.space})
        from .config.search import load_space

        space = load_space(args.space)
    except USER_ERRORS as e:
        raise SystemExit(f"{PROG}: {e}") from None
    from .training.distributed import finish, launched, torchrun
    from .training.search import run_sweep

    try:
        if cfg.train.num_processes > 1 and not launched():
            extra = ["--trials", str(args.trials), "--out", str(out), "--search-only"]
            torchrun(cfg, cfg.train.num_processes, "blipnb.sweep", tuple(extra + (["--space", args.space]
                                                                                 if args.space else [])), what="sweep")
        else:
            run_sweep(cfg, args.trials, space, out)
    except USER_ERRORS as e:
        raise SystemExit(f"{PROG}: {e}") from None
    finally:
        finish()
    if args.search_only:
        return 0
    return report(out, params, args)


def report(out: Path, params: dict, args) -> int:
    """Write and print the trials table, figure and best preset; then 03 on the best trial (unless --no-evaluate)."""
    from .evaluation.trials import summarise
    from .notebook.viz import plot_trials
    from .suite import default_notebook_dir, notebook_parameters, run_all

    try:
        summary = summarise(out)
    except USER_ERRORS as e:
        raise SystemExit(f"{PROG}: {e}") from None
    plot_trials(summary).savefig(out / runs.HP_FIGURE, dpi=100, bbox_inches="tight")
    best = summary["best"]
    print(f"\n== Sweep: {len(summary['trials'])} trials\n{(out / runs.HP_TRIALS_TABLE).read_text()}\n"
          f"best: trial {best['trial']}, validation {summary['objective']} {best['objective']:.4f} -> "
          f"{runs.shown(best['run_dir'])}\nits parameters as a preset: {runs.shown(summary['preset'])}\n"
          f"figure: {runs.shown(out / runs.HP_FIGURE)}", flush=True)
    if args.no_evaluate:
        return 0
    notebooks = args.notebooks or default_notebook_dir()
    takes = notebook_parameters(notebooks / f"{EVALUATES}.ipynb")
    mine = {k: v for k, v in params.items() if k in takes and k != "run_dir"}
    return run_all(mine, Path(best["run_dir"]), notebooks, only=[EVALUATES])


if __name__ == "__main__":
    sys.exit(main())
