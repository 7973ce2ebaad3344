"""Record a finished `make compare` as benchmarks/results/sample_compare_<machine>.json, for docs/results.md and
the README's comparison table.

    make compare                                 # the demo's tiny BLIP, a tiny GIT on the same sample, compared
    python benchmarks/record_compare.py runs/compare
    python benchmarks/results_page.py            # rewrites docs/results.md

Reads the comparison folder's comparison.json (`blipnb compare`: every run's scores with bootstrap CIs, the paired
differences, each run's family, training time and 04's attribute accuracies) and names the machine, the command
and the date. Standard library only.

Format (version 1): benchmark "sample_compare", format 1, command, recorded_with, recorded_utc, machine {...},
comparison {comparison.json as blipnb compare wrote it}.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from record_demo import RESULTS, machine, read_json, write_record

FORMAT = 1
COMMAND = "make compare"


def record(folder: Path, command: str) -> dict:
    """The record of one finished comparison folder."""
    path = folder / "comparison.json"
    if not path.is_file():
        raise SystemExit(f"record_compare: no comparison.json in {folder}: run `make compare` first")
    comparison = read_json(path)
    first = Path(next(iter(comparison["runs"].values()))["run_dir"])
    versions = read_json(first / "provenance.json").get("versions", {}) if (first / "provenance.json").is_file() else {}
    return {"benchmark": "sample_compare", "format": FORMAT, "command": command,
            "recorded_with": f"python benchmarks/record_compare.py {folder}",
            "recorded_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(versions), "comparison": comparison}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="the comparison folder (blipnb compare --out)")
    p.add_argument("--command", default=COMMAND, help="the command that produced the runs")
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    out = record(args.folder, args.command)
    write_record(out, args.results, "sample_compare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
