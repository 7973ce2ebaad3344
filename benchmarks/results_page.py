"""Write docs/results.md from the JSON files in benchmarks/results/: every number on that page comes from one of them.

    python benchmarks/results_page.py            # rewrite docs/results.md
    python benchmarks/results_page.py --check    # exit 1 when docs/results.md differs from what it would write

Each section names its files, the machine and the command that produced them. A kind of result with no file yet
says which command measures it. Standard library only; the output depends on the files alone (no clock, no
machine facts of its own), so --check is stable.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"

DEMO_METRICS = (("Bleu_1", "BLEU-1", 3), ("Bleu_4", "BLEU-4", 3), ("METEOR", "METEOR", 3), ("ROUGE_L", "ROUGE-L", 3),
                ("CIDEr", "CIDEr", 2), ("SPICE", "SPICE", 3), ("sacreBLEU", "sacreBLEU", 1),
                ("CLIP-S", "CLIP-S", 3), ("RefCLIP-S", "RefCLIP-S", 3), ("CHAIR_i", "CHAIR_i ↓", 3),
                ("CHAIR_s", "CHAIR_s ↓", 3), ("colour_errors", "colour errors ↓", 3),
                ("position_errors", "position errors ↓", 3), ("repeats", "repeats ↓", 3), ("distinct_1", "distinct-1", 3),
                ("distinct_2", "distinct-2", 3), ("vocabulary", "vocabulary (words)", 0), ("copied", "copied ↓", 3),
                ("length", "length (words)", 1))
DEMO_MODELS = (("fine-tuned", "fine-tuned"), ("baseline", "starting model"),
               ("human_ceiling", "references vs each other"))
ATTRIBUTES = ("count", "shape", "colour", "size", "position", "all")
THROUGHPUT_COLUMNS = (("compute_dtype", "computed in", None), ("pairs_per_s", "pairs/s", 0), ("images_per_s", "images/s", 0), ("mfu", "MFU", 2),
                      ("peak_mem_gb", "peak GB", 1), ("ratio_to_seed", "× seed", 1), ("ratio_to_hf_b1", "× HF b1", 1),
                      ("ratio_to_hf_b64", "× HF b64", 1), ("cores", "cores", 0))
NOT_MEASURED = "Not measured yet: "


def num(value, decimals: int = 3) -> str:
    """A number as the page shows it: ints as they are, floats rounded; None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, str):  # a label, e.g. the dtype a configuration computed in
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{decimals}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def load(results: Path, pattern: str) -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(results.glob(pattern))]


def versions(d: dict, keys=("python", "torch", "transformers")) -> str:
    return ", ".join(f"{k} {d[k]}" for k in keys if d.get(k))


# --- the sample demo (benchmarks/record_demo.py) ------------------------------------------------------------------

def demo_section(files: list[tuple[str, dict]]) -> list[str]:
    out = ["## The sample demo", "",
           "`make demo` runs the five notebooks on the offline sample preset (synthetic shapes, a tiny BLIP trained "
           "from scratch on CPU) and `benchmarks/record_demo.py` records the finished run directory. Intervals are "
           "bootstrap intervals over the choice of test images for one trained model, not over training "
           "randomness; the seeds table measures that.", ""]
    if not files:
        return out + [NOT_MEASURED + "run `make demo` then `python benchmarks/record_demo.py runs/sample`.", ""]
    for name, d in files:
        out += demo_file(name, d)
    return out


def demo_file(name: str, d: dict) -> list[str]:
    m, run = d["machine"], d["run"]
    refs = run.get("refs_per_image") or {}
    memory = f", {num(m['memory_gb'], 1)} GB memory" if m.get("memory_gb") else ""
    out = [f"### `{name}`", "",
           f"- Machine: {m['cpu_model']}, {m['cpu_count']} cores{memory}; {versions(m, ('python', 'torch', 'transformers', 'blipnb'))}.",
           f"- Command: `{d['command']}`, finished {d['run_date_utc'][:10]}; recorded with `{d['recorded_with']}`.",
           f"- Data: the `{run['split']}` split of `{run['source']}`, {num(run['n_images'])} images, "
           f"{references(refs)} each. Scale: {run.get('scale')}.",
           f"- Decoding: {decoding(run.get('decoding') or {})}.", ""]
    models = [(key, label) for key, label in DEMO_MODELS if key in d["models"]]
    rows = []
    for key, label, decimals in DEMO_METRICS:
        cells = [score(d, model, key, decimals) for model, _ in models]
        if any(c != "–" for c in cells):
            rows.append([label, *cells])
    out += table(["metric", *(label for _, label in models)], rows)
    if d.get("attributes"):
        out += ["Notebook 04's attribute table: the share of true objects whose attribute the caption got right "
                "(count and all: the share of images).", ""]
        out += table(["images", "n", *ATTRIBUTES],
                     [[r["images"], num(r.get("n_images")), *(num(r.get(a)) for a in ATTRIBUTES)]
                      for r in d["attributes"] if r.get("n_images")])
    timings = d.get("timings") or {}
    if timings.get("notebook_seconds"):
        rows = [[nb, num(s, 1)] for nb, s in timings["notebook_seconds"].items()]
        rows.append(["total", num(timings.get("notebooks_total_seconds"), 1)])
        if timings.get("train_seconds") is not None:
            rows.append(["of which training (02)", num(timings["train_seconds"], 1)])
        out += table(["notebook", "seconds"], rows)
    out += seeds_part(d.get("seeds"))
    return out


def references(refs: dict) -> str:
    if refs.get("min") == refs.get("max"):
        return f"{num(refs.get('min'))} references"
    return f"{num(refs.get('min'))} to {num(refs.get('max'))} references"


def decoding(dec: dict) -> str:
    if not dec:
        return "as the run stored it"
    parts = [f"beam {dec.get('num_beams')}", f"max_new_tokens {dec.get('max_new_tokens')}"]
    if dec.get("consensus_samples"):
        parts = [f"consensus of {dec['consensus_samples']} draws at temperature {num(dec.get('temperature'), 1)}, "
                 f"top_p {num(dec.get('top_p'), 2)}", f"max_new_tokens {dec.get('max_new_tokens')}"]
    if dec.get("prompt"):
        parts.append(f"prompt `{dec['prompt']}`")
    return ", ".join(parts)


def score(d: dict, model: str, key: str, decimals: int) -> str:
    entry = d["models"][model]
    value = entry["metrics"].get(key)
    if value is None:
        reason = (d.get("unavailable") or {}).get(model, {}).get(key)
        return f"null: {reason}" if reason else "–"
    ci = entry.get("ci", {}).get(key)
    return num(value, decimals) + (f" [{num(ci['low'], decimals)}, {num(ci['high'], decimals)}]" if ci else "")


def seeds_part(seeds: dict | None) -> list[str]:
    out = ["#### Training randomness", ""]
    if not seeds:
        return out + [NOT_MEASURED + "run `blipnb run-all -f notebooks/params/sample.yaml --out runs/sample "
                      "--seeds 0,1,2`, then `python benchmarks/record_demo.py runs/sample`.", ""]
    ids = seeds["seeds"]
    out += [f"Command: `{seeds['command']}`: the same data, split and recipe trained once per seed. Mean ± sd "
            "across seeds, then each seed's value with its interval over test images.", ""]
    rows = []
    for key, label, decimals in DEMO_METRICS:
        m = seeds["metrics"].get(key)
        if m is None:
            continue
        cells = [num(m["seeds"][s]["value"], decimals)
                 + (f" [{num(m['seeds'][s]['low'], decimals)}, {num(m['seeds'][s]['high'], decimals)}]"
                    if "low" in m["seeds"][s] else "") for s in ids]
        rows.append([label, f"{num(m['mean'], decimals)} ± {num(m['sd'], decimals)}", *cells])
    attributes = seeds.get("attributes") or {}
    for a in ATTRIBUTES:
        if attributes and all(s in attributes for s in ids):
            rows.append([f"{a} (04)", "", *(num(attributes[s].get(a)) for s in ids)])
    seconds = seeds.get("notebooks_total_seconds") or {}
    if seconds and all(s in seconds for s in ids):
        rows.append(["notebooks, seconds", "", *(num(seconds[s], 1) for s in ids)])
    return out + table(["metric", "mean ± sd", *(f"seed {s}" for s in ids)], rows)


# --- serving load (benchmarks/serve_load.py) ----------------------------------------------------------------------

def compare_section(files: list[tuple[str, dict]]) -> list[str]:
    out = ["## Two captioners on the sample", "",
           "`make compare` trains a tiny GIT on the demo's sample with the demo's recipe and compares it with the "
           "demo's tiny BLIP through `blipnb compare`; `benchmarks/record_compare.py` records the comparison. Both "
           "are about 1M parameters, built from scratch; intervals are bootstrap intervals over the test images, "
           "the difference a paired bootstrap on the same images.", ""]
    if not files:
        return out + [NOT_MEASURED + "run `make compare` then `python benchmarks/record_compare.py runs/compare`.",
                      ""]
    for name, d in files:
        out += [f"### `{name}`", ""] + compare_table(d) + [""]
    return out


# --- a hyperparameter sweep (benchmarks/record_sweep.py) ----------------------------------------------------------

SWEEP_METRICS = ("Bleu_4", "METEOR", "CIDEr", "CHAIR_s")
SWEEP_COMMAND = "blipnb sweep -f sample --trials 4 --space notebooks/spaces/sample.yaml --out runs/sweep"


def sweep_section(files: list[tuple[str, dict]]) -> list[str]:
    out = ["## A hyperparameter sweep on the sample", "",
           "`blipnb sweep` trains each trial of an optuna study on the sample preset, chooses on validation CIDEr "
           "(pruning trials below the median at an evaluation), then runs 03 once, on the best trial; "
           "`benchmarks/record_sweep.py` records the sweep folder ([sweeps](sweeps.md)).", ""]
    if not files:
        return out + [NOT_MEASURED + f"run `{SWEEP_COMMAND}` then `python benchmarks/record_sweep.py runs/sweep`.",
                      ""]
    for name, d in files:
        out += [f"### `{name}`", ""] + sweep_tables(d) + [""]
    return out


def sweep_tables(d: dict) -> list[str]:
    """The trials (state, validation objective, drawn values, steps, seconds), then the best trial's test scores
    with their intervals beside the starting model's; then the machine and the command."""
    s, m, test = d["sweep"], d["machine"], d["best_test"]
    params, best = s["parameters"], s["best"]["trial"]
    rows = [[f"**{r['trial']}** (best)" if r["trial"] == best else str(r["trial"]), r["state"],
             num(r["objective"], 3), *(num(r[k], 5) if isinstance(r[k], float) else str(r[k]) for k in params),
             num(r["last_step"], 0), num(r["seconds"], 1)] for r in s["trials"]]
    out = table(["trial", "state", f"validation {s['objective']}", *params, "steps", "seconds"], rows)
    scores = [[title, *(_scored(test["results"][model], key, dec) for model in ("fine-tuned", "baseline"))]
              for key, title, dec in DEMO_METRICS if key in SWEEP_METRICS]
    out += [f"The best trial, {best}, on the {test['n_images']} test images (03):", ""]
    out += table(["metric", "best trial", "starting model"], scores)
    memory = f", {num(m['memory_gb'], 1)} GB memory" if m.get("memory_gb") else ""
    wall = f", {num(d['wall_seconds'], 0)} s in all" if d.get("wall_seconds") else ""
    return out + [f"{len(s['trials'])} trials on {m['cpu_model']} ({m['cpu_count']} cores{memory}){wall}: "
                  f"`{d['command']}`."]


def _scored(result: dict, key: str, decimals: int) -> str:
    value, ci = result["metrics"].get(key), (result.get("ci") or {}).get(key)
    return num(value, decimals) + (f" [{num(ci['low'], decimals)}, {num(ci['high'], decimals)}]" if ci else "")


SWEEPS_DOC = ROOT / "docs" / "sweeps.md"
SWEEP_START = "<!-- sweep example: generated by benchmarks/results_page.py from benchmarks/results/sample_sweep_*.json -->"
SWEEP_END = "<!-- end sweep example -->"


def with_block(text: str, start: str, end: str, lines: list[str] | None) -> str:
    """`text` with the lines between its `start` and `end` markers replaced (unchanged without markers or lines)."""
    if start not in text or not lines:
        return text
    head, rest = text.split(start, 1)
    return head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1]


def sweeps_doc_with_example(text: str, results: Path = RESULTS) -> str:
    """docs/sweeps.md with its worked example's tables rewritten from the newest sample_sweep file."""
    files = load(results, "sample_sweep_*.json")
    return with_block(text, SWEEP_START, SWEEP_END, sweep_tables(files[-1][1]) if files else None)


README_METRICS = ("Bleu_4", "METEOR", "CIDEr")  # the README's shorter table; the results page has every metric
README_ATTRIBUTES = ("shape", "position", "all")


def compare_table(d: dict, metric_keys=tuple(m[0] for m in DEMO_METRICS), attributes_shown=ATTRIBUTES) -> list[str]:
    """The comparison's table: per run its family and training time, each metric with its interval, each pair's
    paired difference, and 04's attribute accuracies; then the machine and the command."""
    c, m = d["comparison"], d["machine"]
    labels = list(c["runs"])
    pair = c["pairs"][0]
    a, b = (c["runs"][pair[k]].get("family") or pair[k] for k in ("a", "b"))
    header = ["", *(c["runs"][k].get("family") or k for k in labels), f"{a} − {b} [CI]", f"P({a} beats {b})"]
    rows = [["training (02)", *(f"{num(c['runs'][k].get('train_seconds'), 1)} s" for k in labels), "", ""]]
    for key, title, decimals in (m for m in DEMO_METRICS if m[0] in metric_keys):
        values = [c["results"][k]["metrics"].get(key) for k in labels]
        if any(v is None for v in values):
            continue
        cis = [c["results"][k].get("ci", {}).get(key) or {} for k in labels]
        diff = pair["metrics"][key]
        rows.append([title, *(f"{num(v, decimals)} [{num(ci.get('low'), decimals)}, {num(ci.get('high'), decimals)}]"
                              for v, ci in zip(values, cis)),
                     f"{num(diff['diff'], decimals)} [{num(diff['low'], decimals)}, {num(diff['high'], decimals)}]",
                     num(diff["p_a_wins"], 3)])
    attributes = [c["runs"][k].get("attributes") or {} for k in labels]
    if all(attributes):
        rows += [[f"{name} accuracy (04)", *(num(a.get(name), 3) for a in attributes), "", ""]
                 for name in attributes_shown]
    memory = f", {num(m['memory_gb'], 1)} GB memory" if m.get("memory_gb") else ""
    return table(header, rows) + [
        f"{c['n_images']} test images of the sample, {c['n_bootstrap']} bootstrap resamples; one run each, on "
        f"{m['cpu_model']} ({m['cpu_count']} cores{memory}), `{d['command']}`, recorded from "
        f"`{c['runs'][labels[0]]['run_dir']}` and `{c['runs'][labels[1]]['run_dir']}`."]


README = ROOT / "README.md"
README_START = "<!-- compare table: generated by benchmarks/results_page.py from benchmarks/results/sample_compare_*.json -->"
README_END = "<!-- end compare table -->"


def readme_with_comparison(text: str, results: Path = RESULTS) -> str:
    """The README with its comparison block rewritten from the newest sample_compare file (unchanged without one)."""
    files = load(results, "sample_compare_*.json")
    lines = compare_table(files[-1][1], README_METRICS, README_ATTRIBUTES) if files else None
    return with_block(text, README_START, README_END, lines)


def serve_section(files: list[tuple[str, dict]]) -> list[str]:
    out = ["## Serving load", "",
           "`benchmarks/serve_load.py` starts `blipnb serve` twice on the same export, with dynamic batching and "
           "then one request per batch, and lets concurrent clients post images to it over loopback. Memory is "
           "the resident set of the server's whole process tree.", ""]
    if not files:
        return out + [NOT_MEASURED + "run `python benchmarks/serve_load.py --out benchmarks/results/"
                      "serve_load_<machine>.json`.", ""]
    for label, machine_files in group_by_machine(files):
        out += [f"Machine: {label}.", ""]
        speed, held = [], []
        for name, d in machine_files:
            batched, unbatched = (next(c for c in d["configs"] if c["name"] == n) for n in ("batched", "unbatched"))
            full = (batched.get("batch_sizes_seen") or {}).get(str(batched["max_batch_size"]))
            speed.append([f"`{name}`", num(d.get("load_average_1min_start"), 2), num(batched["clients"]),
                          f"{num(batched['batch_timeout_s'], 2)} s", num(batched["throughput_rps"], 1),
                          latency(batched), num(unbatched["throughput_rps"], 1), latency(unbatched),
                          f"**{num(d['ratio_batched_to_unbatched'], 1)}×**",
                          f"{num(batched['requests_failed'])} / {num(unbatched['requests_failed'])}",
                          f"{shed(batched)} / {shed(unbatched)}"])
            held.append([f"`{name}`", d["date_utc"][:10], num(full), num(batched["max_batch_size"]),
                         memory(batched), memory(unbatched)])
        out += table(["file", "load avg", "clients", "batch timeout", "batched req/s", "p50 / p99 ms",
                      "unbatched req/s", "p50 / p99 ms", "ratio", "failed", "share turned away (queue full)"], speed)
        out += table(["file", "date", "full batches", "of size", "memory MB batched (start → end, peak)",
                      "unbatched"], held)
        out += ["Commands:", ""]
        out += [f"- `{name}`: `python benchmarks/serve_load.py {' '.join(d.get('argv', []))}` "
                f"({d.get('model')}; {decoding(d.get('decoding') or {})})" for name, d in machine_files]
        out.append("")
    return out


def shed(c: dict) -> str:
    """The share of requests answered 503 because the queue was full, and the queue's bound ("–" in files made
    before the bound existed)."""
    if c.get("shed_share") is None:
        return "–"
    return f"{num(c['shed_share'], 3)} (queue {num(c.get('max_queue'))})"


def latency(c: dict) -> str:
    return f"{num(c['p50_ms'], 1)} / {num(c['p99_ms'], 1)}"


def memory(c: dict) -> str:
    return f"{num(c['rss_start_mb'], 1)} → {num(c['rss_end_mb'], 1)}, {num(c['rss_peak_mb'], 1)}"


def machine_label(d: dict) -> str:
    if d.get("device", "cpu").startswith("cuda"):
        return f"{d.get('name')} ({num(d.get('memory_gb'), 1)} GB, CUDA {d.get('cuda')}), {versions(d)}"
    return f"CPU ({d.get('name')}), {d.get('cpu_count')} cores, {versions(d)}"


def group_by_machine(files: list[tuple[str, dict]]) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for name, d in files:
        groups.setdefault(machine_label(d), []).append((name, d))
    return list(groups.items())


# --- the memory guide (benchmarks/memory_guide.py) ----------------------------------------------------------------

def memory_section(files: list[tuple[str, dict]]) -> list[str]:
    out = ["## Memory guide", "",
           "Computed, not measured on a GPU: static memory from the parameter counts of each checkpoint at its real "
           "size (fp32 weights, fp32 gradients and AdamW moments for what trains), activations from the tensors "
           "autograd saves in real forwards (BLIP at full size, the other families on depth-reduced copies "
           "extrapolated per layer), and a fixed reserve for the CUDA context and the allocator. What autograd saves "
           "that does not grow with the batch, mostly autocast's bf16 copies of the weights, is counted once per "
           "step (per-step GB). Each card column is the largest per-device batch of (image, caption) pairs that "
           "fits. [Training](training.md#memory) says how to read it.", ""]
    if not files:
        return out + [NOT_MEASURED + "run `python benchmarks/memory_guide.py --out benchmarks/results/"
                      "memory_guide.json`.", ""]
    for name, d in files:
        command = next((line.strip() for line in d.get("method", "").splitlines()
                        if line.strip().startswith("python benchmarks/")), "python benchmarks/memory_guide.py")
        cards = [k for k in d["rows"][0] if k.startswith("max_batch_")]
        per_step = all("per_step_gb" in r for r in d["rows"])  # files written before it was counted lack it
        out += [f"`{name}`: computed with torch {d.get('torch')} on CPU by `{command}`; reserve "
                f"{num(d.get('reserve_gb'), 1)} GB, captions of {num(d.get('seq_len'))} tokens.", ""]
        out += table(["model", "setting", "static GB", *(["per-step GB"] if per_step else []), "activations MB/pair",
                      *(k.removeprefix("max_batch_").replace("gb", " GB") for k in cards)],
                     [[r["model"], r["setting"], num(r["static_gb"], 2),
                       *([num(r["per_step_gb"], 2)] if per_step else []), num(r["activations_mb_per_pair"], 1),
                       *("does not fit" if r[k] is None else num(r[k]) for k in cards)] for r in d["rows"]])
    return out


# --- GPU throughput (benchmarks/run_gpu.sh) -----------------------------------------------------------------------

def throughput_section(files: list[tuple[str, dict]]) -> list[str]:
    out = ["## Training, captioning and data throughput", "",
           "`benchmarks/run_gpu.sh` runs `train_throughput.py`, `generate_throughput.py` and `data_throughput.py` on "
           "random-init BLIP base; every ratio is against a baseline measured in the same run on the same device. "
           "[benchmarks/README.md](../benchmarks/README.md) says how the numbers are made and lists the targets.", ""]
    files = [(n, d) for n, d in files if not d.get("tiny")]  # a --tiny dry run says nothing about speed
    if not files:
        return out + [NOT_MEASURED + "on a CUDA machine run `bash benchmarks/run_gpu.sh`.", ""]
    for name, d in files:
        rows = d.get("configs") or []
        columns = [c for c in THROUGHPUT_COLUMNS if any(r.get(c[0]) is not None for r in rows)]
        out += [f"### `{name}`", "",
                f"Machine: {machine_label(d)}; {d.get('date_utc', '')[:10]}. Command: "
                f"`python benchmarks/{d['benchmark']}.py {' '.join(d.get('argv', []))}`.", ""]
        out += table(["configuration", *(label for _, label, _ in columns)],
                     [[r["name"], *(num(r.get(k), dec) for k, _, dec in columns)] for r in rows])
        for s in d.get("skipped") or []:
            out.append(f"- skipped `{s['name']}`: {s['reason']}")
        if d.get("skipped"):
            out.append("")
    return out


def render(results: Path = RESULTS) -> str:
    throughput = [f for pattern in ("train_throughput_*.json", "generate_throughput_*.json",
                                    "data_throughput_*.json") for f in load(results, pattern)]
    lines = ["# Results", "",
             "<!-- Generated by `python benchmarks/results_page.py` from benchmarks/results/*.json: edit those, "
             "not this page. -->", "",
             "Every number on this page comes from a JSON file in [benchmarks/results/](../benchmarks/results/); "
             "each section names its files, the machine and the command that produced them. After adding a file, "
             "run `python benchmarks/results_page.py`; a test fails while this page and the files disagree.", ""]
    lines += demo_section(load(results, "sample_demo_*.json"))
    lines += compare_section(load(results, "sample_compare_*.json"))
    lines += sweep_section(load(results, "sample_sweep_*.json"))
    lines += serve_section(load(results, "serve_load_*.json"))
    lines += memory_section(load(results, "memory_guide_*.json"))
    lines += throughput_section(throughput)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when the page differs from what would be written")
    p.add_argument("--results", type=Path, default=RESULTS, help="the folder of JSON files")
    p.add_argument("--out", type=Path, default=PAGE, help="the page")
    args = p.parse_args(argv)
    text = render(args.results)
    readme = README.read_text(encoding="utf-8")
    new_readme = readme_with_comparison(readme, args.results)
    sweeps = SWEEPS_DOC.read_text(encoding="utf-8") if SWEEPS_DOC.is_file() else ""
    new_sweeps = sweeps_doc_with_example(sweeps, args.results)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
        stale = [str(path) for path, now, then in ((args.out, text, current), (README, new_readme, readme),
                                                   (SWEEPS_DOC, new_sweeps, sweeps)) if now != then]
        if stale:
            print(f"{' and '.join(stale)} out of date with {args.results}: run `python benchmarks/results_page.py`",
                  file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    if new_readme != readme:
        README.write_text(new_readme, encoding="utf-8")
    if new_sweeps != sweeps:
        SWEEPS_DOC.write_text(new_sweeps, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
