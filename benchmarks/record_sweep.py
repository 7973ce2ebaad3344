"""Record a finished `blipnb sweep` as benchmarks/results/sample_sweep_<machine>.json, for docs/results.md and the
worked example in docs/sweeps.md.

    blipnb sweep -f sample --trials 4 --space notebooks/spaces/sample.yaml --out runs/sweep
    python benchmarks/record_sweep.py runs/sweep --seconds 712
    python benchmarks/results_page.py            # rewrites docs/results.md and the example in docs/sweeps.md

Reads the sweep's trials.json (every trial: state, validation objective, drawn values, steps, seconds) and the
best trial's metrics.json (03 on the test split: scores with bootstrap CIs, the starting model's, the paired
difference), and names the machine, the command and the date. Standard library only.

Format (version 1): benchmark "sample_sweep", format 1, command, wall_seconds, recorded_with, recorded_utc,
machine {...}, sweep {trials.json as blipnb sweep wrote it}, best_test {metrics.json of the best trial}.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from record_demo import RESULTS, machine, read_json, write_record
from results_page import SWEEP_COMMAND as COMMAND

FORMAT = 1


def record(folder: Path, command: str, seconds: float | None) -> dict:
    """The record of one finished sweep folder."""
    if not (folder / "trials.json").is_file():
        raise SystemExit(f"record_sweep: no trials.json in {folder}: run `blipnb sweep` first")
    sweep = read_json(folder / "trials.json")
    best = Path(sweep["best"]["run_dir"])
    if not (best / "metrics.json").is_file():
        raise SystemExit(f"record_sweep: the best trial {best} has no metrics.json: run 03 on it (blipnb sweep does "
                         "unless --no-evaluate)")
    versions = read_json(best / "provenance.json").get("versions", {}) if (best / "provenance.json").is_file() else {}
    return {"benchmark": "sample_sweep", "format": FORMAT, "command": command, "wall_seconds": seconds,
            "recorded_with": f"python benchmarks/record_sweep.py {folder}",
            "recorded_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(versions), "sweep": sweep, "best_test": read_json(best / "metrics.json")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the sweep's folder (blipnb sweep --out)")
    p.add_argument("--command", default=COMMAND, help="the command that ran the sweep")
    p.add_argument("--seconds", type=float, default=None, help="the command's wall time, as measured")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    out = record(args.folder, args.command, args.seconds)
    write_record(out, args.results, "sample_sweep")
    return 0


if __name__ == "__main__":
    sys.exit(main())
