"""Record a finished sample demo as benchmarks/results/sample_demo_<machine>.json, for docs/results.md.

    make demo
    python benchmarks/record_demo.py runs/sample
    python benchmarks/results_page.py            # rewrites docs/results.md

Reads what the run directory holds: metrics.json (scores with bootstrap CIs: fine-tuned, baseline, human
ceiling), error_analysis.json (04's attribute table), train_results.json and the executed notebooks (their
papermill durations). When the seeds comparison of `blipnb run-all ... --seeds 0,1,2` exists beside it
(runs/sample-seeds/seeds.json, or --seeds), each seed's scores, attribute table and notebook time go in too.
The file names the machine (CPU model, cores, memory, library versions), the command and the dates.
Standard library only.

Format (version 1):
    benchmark "sample_demo", format 1, command, recorded_with, run_date_utc, recorded_utc,
    machine {cpu_model, cpu_count, memory_gb, platform, python, torch, transformers, blipnb},
    run {run_dir, source, split, n_images, refs_per_image, split_hash, decoding, scale},
    models {fine-tuned | baseline | human_ceiling: {metrics {key: value}, ci {key: {low, high}}}},
    unavailable {model: {metric: reason}},
    attributes [04's rows: images, n_images, count, shape, colour, size, position, all] or null,
    timings {notebook_seconds {name: s}, notebooks_total_seconds, train_seconds},
    seeds (optional) {command, seeds [..], metrics {key: {mean, sd, seeds {seed: {value, low, high}}}},
                      attributes {seed: overall row}, notebooks_total_seconds {seed: s}}
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FORMAT = 1
FINETUNED, BASELINE, CEILING = "fine-tuned", "baseline", "human_ceiling"
NOTEBOOKS = ("01_data_exploration", "02_finetune", "03_evaluate", "04_error_analysis", "05_inference_demo")
VERSIONS = ("python", "torch", "transformers", "blipnb")


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine(versions: dict) -> dict:
    """The machine the run ran on; library versions as the run recorded them (provenance), else as installed."""
    out = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "memory_gb": memory_gb(),
           "platform": platform.platform()}
    for name in VERSIONS:
        out[name] = versions.get(name) or installed_version(name)
    return out


def installed_version(name: str) -> str | None:
    if name == "python":
        return platform.python_version()
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_slug(info: dict) -> str:
    """'AMD EPYC' with 2 cores -> 'amd-epyc-2cpu': the <machine> of the file name."""
    name = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", " ", info["cpu_model"].lower())
    name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cpu"
    return f"{name}-{info['cpu_count']}cpu"


def write_record(record: dict, results: Path, benchmark: str) -> Path:
    """Write a record as results/<benchmark>_<machine slug>.json, say where, and return the path."""
    path = results / f"{benchmark}_{machine_slug(record['machine'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def model_scores(result: dict) -> dict:
    """{metrics, ci} of one model in metrics.json: values, and each interval's low and high."""
    ci = {k: {"low": v["low"], "high": v["high"]} for k, v in (result.get("ci") or {}).items()
          if v and v.get("low") is not None}
    return {"metrics": result["metrics"], "ci": ci}


def notebook_timings(run_dir: Path) -> dict:
    """{notebook: seconds} from the executed notebooks' papermill metadata (blipnb run-all, make demo)."""
    out = {}
    for name in NOTEBOOKS:
        path = run_dir / "notebooks" / f"{name}.ipynb"
        if path.is_file():
            duration = (read_json(path).get("metadata", {}).get("papermill") or {}).get("duration")
            if duration is not None:
                out[name] = round(duration, 1)
    return out


def run_date(run_dir: Path) -> str:
    """When the run finished: the last executed notebook's end time, else metrics.json's modification time."""
    for name in reversed(NOTEBOOKS):
        path = run_dir / "notebooks" / f"{name}.ipynb"
        if path.is_file():
            end = (read_json(path).get("metadata", {}).get("papermill") or {}).get("end_time")
            if end:
                return end[:19] + "+00:00"
    mtime = (run_dir / "metrics.json").stat().st_mtime
    return datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).isoformat(timespec="seconds")


def overall_attributes(run_dir: Path) -> dict | None:
    path = run_dir / "error_analysis.json"
    if not path.is_file():
        return None
    rows = read_json(path).get("attributes") or []
    return next((r for r in rows if r.get("images") == "overall"), None)


def record(run_dir: Path, command: str, seeds_json: Path | None = None, seeds_command: str | None = None) -> dict:
    """The demo record of one finished run directory (and of its seeds comparison, when given)."""
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise SystemExit(f"record_demo: no metrics.json in {run_dir}: run `make demo` (or notebooks 01-03) first")
    metrics = read_json(metrics_path)
    provenance = metrics.get("provenance") or {}
    results = metrics["results"]
    finetuned = results[FINETUNED]
    models = {name: model_scores(results[name]) for name in (FINETUNED, BASELINE) if name in results}
    if metrics.get(CEILING):
        models[CEILING] = model_scores(metrics[CEILING])
    unavailable = {name: r.get("unavailable") or {} for name, r in results.items()}
    if metrics.get("unavailable"):
        unavailable["run"] = metrics["unavailable"]
    analysis = run_dir / "error_analysis.json"
    train = run_dir / "train_results.json"
    timings = {"notebook_seconds": notebook_timings(run_dir)}
    if timings["notebook_seconds"]:
        timings["notebooks_total_seconds"] = round(sum(timings["notebook_seconds"].values()), 1)
    if train.is_file():
        timings["train_seconds"] = read_json(train).get("train_seconds")
    out = {
        "benchmark": "sample_demo", "format": FORMAT, "command": command,
        "recorded_with": f"python benchmarks/record_demo.py {run_dir}",
        "run_date_utc": run_date(run_dir),
        "recorded_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(provenance.get("versions") or {}),
        "run": {"run_dir": str(run_dir), "source": metrics.get("source"), "split": metrics.get("split"),
                "n_images": metrics.get("n_images"), "refs_per_image": finetuned.get("refs_per_image"),
                "split_hash": metrics.get("split_hash"), "decoding": metrics.get("decoding"),
                "scale": finetuned.get("scale")},
        "models": models,
        "unavailable": unavailable,
        "attributes": read_json(analysis).get("attributes") if analysis.is_file() else None,
        "timings": timings,
    }
    if seeds_json is not None:
        out["seeds"] = record_seeds(seeds_json, seeds_command)
    return out


def record_seeds(path: Path, command: str | None) -> dict:
    """The seeds comparison (blipnb.evaluation.seeds' seeds.json) plus each seed run's attributes and time."""
    comparison = read_json(path)
    seeds = [str(s) for s in comparison["seeds"]]
    run_dirs = {str(s): Path(d) for s, d in comparison.get("runs", {}).items()}
    metrics = {key: {"mean": m["mean"], "sd": m["sd"],
                     "seeds": {str(s): {k: v for k, v in entry.items() if k in ("value", "low", "high")}
                               for s, entry in m["seeds"].items()}}
               for key, m in comparison["metrics"].items()}
    attributes, seconds = {}, {}
    for seed, run_dir in run_dirs.items():
        if not run_dir.is_absolute() and not run_dir.exists():
            run_dir = path.parent.parent / run_dir.name  # seeds.json written elsewhere: look beside it
        row = overall_attributes(run_dir)
        if row is not None:
            attributes[seed] = row
        timings = notebook_timings(run_dir)
        if timings:
            seconds[seed] = round(sum(timings.values()), 1)
    if command is None:
        base = path.parent.name.removesuffix("-seeds")
        command = (f"blipnb run-all -f notebooks/params/sample.yaml --out {path.parent.parent / base} "
                   f"--seeds {','.join(seeds)}")
    return {"command": command, "seeds": seeds, "model": comparison.get("model"), "metrics": metrics,
            "attributes": attributes, "notebooks_total_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path, help="a finished run directory, e.g. runs/sample")
    p.add_argument("--command", default="make demo", help="the command that produced the run (default: make demo)")
    p.add_argument("--seeds", type=Path, default=None,
                   help="a seeds.json (default: RUN_DIR-seeds/seeds.json when it exists)")
    p.add_argument("--seeds-command", default=None, help="the command that produced the seeds comparison")
    p.add_argument("--machine", default=None, help="the <machine> of the file name (default: CPU model and cores)")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/sample_demo_<machine>.json")
    args = p.parse_args(argv)
    run_dir = args.run_dir
    seeds = args.seeds
    if seeds is None:
        beside = run_dir.with_name(f"{run_dir.name}-seeds") / "seeds.json"
        seeds = beside if beside.is_file() else None
    data = record(run_dir, args.command, seeds, args.seeds_command)
    out = args.out or RESULTS / f"sample_demo_{args.machine or machine_slug(data['machine'])}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    print(f"wrote {out}" + (f" (with the seeds of {seeds})" if seeds else ""))
    print("now: python benchmarks/results_page.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
