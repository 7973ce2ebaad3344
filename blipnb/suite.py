"""`blipnb run-all`: the five notebooks in order through papermill, into one run directory, checked before the first
one runs; `--seeds` repeats the suite per training seed and compares the runs."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from . import runs
from .config import Config, build_config
from .errors import USER_ERRORS, ParameterError
from .notebook.params import ACCEPTED, NOTEBOOKS



def default_notebook_dir() -> Path:
    """The notebooks/ folder of this checkout (editable install), else ./notebooks."""
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path("notebooks")


def notebook_parameters(path: Path) -> set[str]:
    """The names a notebook takes: every parameter of the stages it runs (blipnb.notebook.params.ACCEPTED), and
    whatever its parameters cell declares (a notebook of your own may declare more)."""
    import papermill

    return set(ACCEPTED.get(path.stem, ())) | set(papermill.inspect_notebook(str(path)))


def run_all(params: dict, out: Path, notebook_dir: Path, only: list[str] | None = None,
            prepare_only: bool = False) -> int:
    """Execute the notebooks in order into out/notebooks; stop at the first failure, naming notebook and cell.

    With prepare_only, write the notebooks with their parameters injected but do not run them (for nbval).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out = out.resolve()
    params = {**params, "run_dir": str(out)}
    try:
        _, declared = check_run_all(params, out, notebook_dir, only)
    except USER_ERRORS as e:
        raise SystemExit(f"blipnb run-all: {e}") from None
    (out / runs.NOTEBOOKS_DIR).mkdir(parents=True, exist_ok=True)
    timings = {}
    quiet_known_parameters(set().union(*declared.values()))
    with tempfile.TemporaryDirectory(prefix="blipnb-kernels-") as sockets:
        for name in only or NOTEBOOKS:
            src = notebook_dir / f"{name}.ipynb"
            dst = out / runs.NOTEBOOKS_DIR / f"{name}.ipynb"
            mine = {k: v for k, v in params.items() if k in declared[name]}
            print(f"== {name}: {len(mine)} parameters -> {dst}", flush=True)
            start = time.time()
            try:
                papermill.execute_notebook(str(src), str(dst), parameters=mine, kernel_name="python3",
                                           progress_bar=sys.stderr.isatty(), cwd=str(Path.cwd()),
                                           prepare_only=prepare_only,
                                           kernel_manager_class=ipc_kernel_manager(Path(sockets)))
            except PapermillExecutionError as e:
                print(f"\nFAILED: {name}, cell {e.exec_count} ({e.ename}: {e.evalue})\n"
                      f"The partial executed notebook is kept at {dst}", file=sys.stderr)
                return 1
            timings[name] = time.time() - start
            print(f"   done in {timings[name]:.0f} s", flush=True)
    if not prepare_only:
        print_summary(out, timings)
    return 0


def quiet_known_parameters(known: set[str]) -> None:
    """papermill warns "Passed unknown parameter" for every parameter a cell does not show; blipnb's notebooks take
    the parameters of their stages whether shown or not (blipnb params), so only truly unknown names are said."""
    import logging

    class KnownParameters(logging.Filter):
        def filter(self, record):
            text = record.getMessage()
            return not (text.startswith("Passed unknown parameter: ") and text.split(": ", 1)[1] in known)

    logger = logging.getLogger("papermill")
    if not any(isinstance(f, KnownParameters) for f in logger.filters):
        logger.addFilter(KnownParameters())


def ipc_kernel_manager(folder: Path) -> type:
    """A kernel manager class whose kernels talk over local IPC sockets in `folder`, not TCP on localhost: no
    other user or process on the machine can connect to them, and ipykernel no longer warns, once per notebook,
    that it runs over TCP without encryption."""
    from jupyter_client import AsyncKernelManager

    class IpcKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", ip=str(folder / "kernel"), **kwargs)

    return IpcKernelManager


def check_run_all(params: dict, out: Path, notebook_dir: Path, only: list[str] | None = None
                  ) -> tuple[Config, dict[str, set[str]]]:
    """Everything run-all can check before it runs a notebook: returns (the config, each notebook's declared names).

    Every parameter must be one some notebook of the suite declares (else it would have no effect); with --only,
    those only other notebooks declare are ignored, so a preset written for the whole suite works. The full config
    is built and validated (types, ranges, combinations). Then the run directory: when 01 or 02 run, it must not
    hold a run of another config unless overwrite is set, which clears that run first (runs.prepare_run_dir).
    """
    selected = list(only or NOTEBOOKS)
    declared = {name: notebook_parameters(notebook_dir / f"{name}.ipynb") for name in NOTEBOOKS}
    unused = sorted(set(params) - set().union(*declared.values()))
    if unused:
        raise ParameterError(f"parameter(s) {unused} are not parameters of any notebook, so they would change nothing")
    elsewhere = sorted(set(params) - set().union(*(declared[name] for name in selected)))
    if elsewhere:
        print(f"not used by {', '.join(selected)} (other notebooks' parameters): {', '.join(elsewhere)}", flush=True)
    cfg = build_config(params)
    starts = [name for name in selected if name in NOTEBOOKS[:2]]  # 01 and 02 write what the run is made of
    if starts:
        runs.prepare_run_dir(cfg, keys=set().union(*(declared[name] for name in starts)), keep=())
    return cfg, declared


def run_seeds(params: dict, out: Path, notebook_dir: Path, only: list[str] | None, seeds_text: str) -> int:
    """The suite once per training seed into sibling run directories, then the across-seed table and plot."""
    from .evaluation.seeds import comparison_dir, compare_seeds, parse_seeds, seed_run_dirs, write_comparison
    from .notebook.viz import plot_seed_spread

    if "seed" in params:
        raise SystemExit("blipnb run-all: pass the seeds with --seeds, not -p seed")
    try:
        dirs = seed_run_dirs(out, parse_seeds(seeds_text))
    except ParameterError as e:
        raise SystemExit(f"blipnb run-all: {e}") from None
    for seed, run_dir in dirs.items():  # every seed's directory is checked before the first seed trains
        try:
            check_run_all({**params, "seed": seed, "run_dir": str(run_dir.resolve())}, run_dir.resolve(),
                          notebook_dir, only)
        except USER_ERRORS as e:
            raise SystemExit(f"blipnb run-all: seed {seed}: {e}") from None
    for seed, run_dir in dirs.items():
        print(f"=== seed {seed} -> {run_dir}", flush=True)
        if run_all({**params, "seed": seed}, run_dir, notebook_dir, only) != 0:
            return 1
    comparison = compare_seeds(dirs)
    folder = comparison_dir(out)
    paths = write_comparison(comparison, folder)
    plot_seed_spread(comparison).savefig(folder / "seeds.png", dpi=120, bbox_inches="tight")
    print(f"\n== Across {len(dirs)} seeds\n{paths['table'].read_text()}\n{folder / 'seeds.png'}")
    return 0


def print_summary(out: Path, timings: dict) -> None:
    """Metrics table, where the files are, and how long each notebook took."""
    from .evaluation.report import format_report

    print("\n== Summary")
    metrics = out / runs.METRICS
    if metrics.exists():
        print(format_report(runs.read_json(metrics)))
    print(f"\nRun directory: {out}")
    for rel in (runs.NOTEBOOKS_DIR, runs.MODEL_DIR, runs.METRICS, runs.PREDICTIONS, runs.FIGURES_DIR):
        if (out / rel).exists():
            print(f"  {out / rel}")
    for name, seconds in timings.items():
        print(f"  {name}: {seconds:.0f} s")
    print(f"  total: {sum(timings.values()):.0f} s")
