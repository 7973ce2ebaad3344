"""Runs side by side on the same test images: is captioner A better than captioner B here, and by how much?

Each run's predictions (predictions.jsonl, written by 03) are scored again, all against the same references with the
same settings and one METEOR JVM, so that the paired bootstrap resamples the same images for every run. Runs scored
on other images (another split hash, another set of image ids) or against other references are refused, not
compared. The human ceiling is scored once: the references are the same for every run.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from itertools import combinations
from pathlib import Path

from .. import runs
from ..config import Config, DataConfig, EvalConfig, load_config
from ..config.data import SOURCES
from ..runtime.families import UnsupportedFamily, family_of_folder
from ..errors import MissingRunFile, ParameterError, RunsNotComparable
from ..schema import CAPTIONS, HUMAN_CEILING, IMAGE_ID, SPICE
from ..data import load_captions, split_hashes
from ..scoring import score_captions
from ..scoring.beyond import NO_CLIP, Grounding
from ..scoring.bootstrap import paired_comparison
from ..scoring.ceiling import CEILING_LABEL, NO_CEILING
from ..scoring.meteor import MeteorScorer, borrow
from ..scoring.sanity import single_reference_note
from ..version import __version__
from .report import (scale_label, format_ci, format_value, markdown_table, report_rows, shared_warnings, table_notes,
                     unavailable_lines)
from .grounding import grounding
from .run import FINETUNED, human_ceiling, score_beyond, score_settings, summarise, summarise_ceiling

ROW_FIELDS = ("image_id", "prediction", "references")  # what each predictions.jsonl row must hold
NO_SPICE = "not compared: SPICE is scored here only when every run's metrics.json has it (03 with do_spice)"


def compare_runs(run_dirs: list, out_dir, n_boot: int | None = None, seed: int | None = None,
                 meteor: MeteorScorer | None = None, clip_model: str | None = None) -> dict:
    """Score every run's test predictions on the same images, with bootstrap CIs per run, a paired difference and
    P(A beats B) for every pair, and the human ceiling; write comparison.json and comparison.md into `out_dir`.

    `n_boot`, `seed` and `clip_model` default to 03's (EvalConfig). The metrics beyond n-grams that need the images,
    what is in them or the training captions take them from the first run's data settings (its config.json). METEOR runs on `meteor`'s JVM when given (its owner closes it),
    else on one started and stopped here. A RunsNotComparable names the runs when they cannot be paired."""
    if len(run_dirs) < 2:
        raise ParameterError(f"two or more run directories are needed to compare, got {len(run_dirs)}")
    loaded = [read_run(path, label) for path, label in zip(run_dirs, run_labels(run_dirs))]
    check_comparable(loaded)
    first = loaded[0]
    ids = list(first["predictions"])
    refs = first["references"]
    source = first["metrics"].get("source")  # the sanity check's plausible scores; "folder" has none
    # Only the source is read here: the paths a source requires are never opened, so they name the first run.
    data = DataConfig(source=source if source in SOURCES else "folder", data_dir=str(run_dirs[0]),
                      annotations=str(run_dirs[0]))
    settings = _eval_settings(loaded, n_boot, seed) | ({} if clip_model is None else {"clip_model": clip_model})
    cfg = Config(data=data, eval=EvalConfig(**settings))
    split = _split(ids, refs)
    ground = _grounding(first, cfg)
    score = partial(score_captions, **score_settings(cfg))
    with borrow(meteor) as scorer:  # one JVM for every run, the ceiling and all their intervals
        scorer.start()  # loads while the first run is tokenized
        results = {run["label"]: score_beyond(run["predictions"], score(run["predictions"], refs, meteor=scorer), split,
                                              ground) for run in loaded}
        if not cfg.eval.do_spice:  # not the user's do_spice: say why
            for result in results.values():
                result["unavailable"][SPICE] = NO_SPICE
        ceiling = human_ceiling(split, cfg, scorer, ground)
        summaries = {label: summarise(result, cfg, ceiling, scorer) for label, result in results.items()}
        pairs = [{"a": a, "b": b, "metrics": paired_comparison(results[a], results[b], n_boot=cfg.eval.n_bootstrap,
                                                               seed=cfg.eval.bootstrap_seed, meteor=scorer)}
                 for a, b in combinations(results, 2)]
        ceiling_summary = summarise_ceiling(ceiling, cfg, len(ids), scorer)
    comparison = {
        "blipnb_version": __version__,
        "runs": {run["label"]: _provenance(run) for run in loaded},
        "split": first["metrics"].get("split"), "source": first["metrics"].get("source"), "n_images": len(ids),
        "split_hash": first["metrics"]["split_hash"],
        "n_bootstrap": cfg.eval.n_bootstrap, "bootstrap_seed": cfg.eval.bootstrap_seed,
        "do_spice": cfg.eval.do_spice, "spice_subsample": cfg.eval.spice_subsample,
        "results": summaries,
        HUMAN_CEILING: ceiling_summary,
        "unavailable": {HUMAN_CEILING: NO_CEILING} if ceiling is None else {},
        "pairs": pairs,
    }
    write_comparison(comparison, out_dir)
    return comparison


def _grounding(first: dict, cfg: Config) -> Grounding:
    """The first run's data (its config.json) for CLIP, CHAIR and `copied`; where it cannot be loaded, or is not the
    evaluated split any more, those metrics are null and say why (the others need only the captions)."""
    config = Path(first["run_dir"]) / runs.CONFIG
    reason = f"needs the run's data: {first['label']} has no {runs.CONFIG}"
    if config.is_file():
        try:
            stored = load_config(config)
            ds = load_captions(stored.data, run_dir=first["run_dir"])
            split = ds[first["metrics"]["split"]]
        except Exception as error:  # noqa: BLE001 - the data moved or changed: those metrics say so, the rest go on
            reason = f"needs the run's data, which could not be loaded: {type(error).__name__}: {error}"
        else:
            name = first["metrics"]["split"]
            if split_hashes({name: split})[name] == first["metrics"]["split_hash"]:
                return grounding(dataclasses.replace(stored, eval=cfg.eval), split, ds["train"])
            reason = "needs the run's data, which no longer holds the evaluated images (another split hash)"
    return Grounding(embed_reason=reason if cfg.eval.clip_model else NO_CLIP, truth_reason=reason)


def run_labels(run_dirs: list) -> list[str]:
    """The run directories' names, made unique: the parent folder is added where other directories share a name, and
    a count where one directory is named again."""
    paths = [Path(p).resolve() for p in run_dirs]
    shared = {p.name for p in paths if len({q for q in paths if q.name == p.name}) > 1}
    names = [f"{p.parent.name}/{p.name}" if p.name in shared else p.name for p in paths]
    labels: list[str] = []
    for name in names:
        label, n = name, 1
        while label in labels:
            n += 1
            label = f"{name} ({n})"
        labels.append(label)
    return labels


def read_run(path, label: str) -> dict:
    """A run's predictions ({image id: caption}), references and metrics.json; a one-line error when it has none."""
    run = runs.RunDir(path)
    if not run.path.is_dir():
        raise MissingRunFile(f"{label}: no run directory {str(run.path)!r}")
    metrics = runs.read_json(run.require(runs.METRICS, "03_evaluate", "metrics"))
    try:
        rows = runs.read_jsonl(run.require(runs.PREDICTIONS, "03_evaluate", "test predictions"))
    except ValueError as e:  # a line that is not JSON
        raise RunsNotComparable(f"{label}: {e}") from None
    bad = [n for n, row in enumerate(rows, 1) if not all(k in row for k in ROW_FIELDS)]
    if bad or not rows:
        raise RunsNotComparable(f"{label}: {run / runs.PREDICTIONS} " + (
            f"line {bad[0]} lacks one of {', '.join(ROW_FIELDS)}" if bad else "holds no predictions"))
    predictions = {row["image_id"]: row["prediction"] for row in rows}
    if len(predictions) < len(rows):
        raise RunsNotComparable(f"{label}: {run / runs.PREDICTIONS} names an image more than once")
    if "split_hash" not in metrics:
        raise RunsNotComparable(f"{label}: {run / runs.METRICS} records no split_hash: evaluate it again with "
                                "03_evaluate")
    return {"label": label, "run_dir": str(run.path), "metrics": metrics, "predictions": predictions,
            "references": {row["image_id"]: row["references"] for row in rows}, **_made_by(run)}


def _made_by(run: runs.RunDir) -> dict:
    """What else the run directory says, where it says it: the model's family, training time and size (02), and
    the attribute accuracies over all test images (04)."""
    out = {}
    model_config = run / runs.MODEL_DIR / "config.json"
    if model_config.is_file():
        try:
            out["family"] = family_of_folder(run / runs.MODEL_DIR).title
        except UnsupportedFamily:
            out["family"] = runs.read_json(model_config).get("model_type")
    if (run / runs.TRAIN_RESULTS).is_file():
        trained = runs.read_json(run / runs.TRAIN_RESULTS)
        out |= {k: trained.get(k) for k in ("train_seconds", "trainable_parameters")}
    if (run / runs.ERROR_ANALYSIS).is_file():
        rows = runs.read_json(run / runs.ERROR_ANALYSIS).get("attributes") or []
        overall = next((r for r in rows if r.get("images") == "overall"), None)
        if overall:
            out["attributes"] = {k: v for k, v in overall.items() if k not in ("images", "n_images")}
    return out


def check_comparable(loaded: list[dict]) -> None:
    """A RunsNotComparable naming the first run that differs from the first one: its split hash, the images it
    predicted, or its references."""
    first = loaded[0]
    for other in loaded[1:]:
        names = f"{first['label']} and {other['label']}"
        ha, hb = first["metrics"]["split_hash"], other["metrics"]["split_hash"]
        same_images = set(first["predictions"]) == set(other["predictions"])
        if ha != hb and same_images and any(first["references"][i] != other["references"][i] for i in first["references"]):
            raise RunsNotComparable(f"runs {names} scored the same {len(first['predictions'])} test images against "
                                    f"different references (split_hash {ha} in {first['label']}, {hb} in "
                                    f"{other['label']}; the data parameter `corrections` changes references, and "
                                    "with them the hash): compare runs evaluated on the same references")
        if ha != hb:
            raise RunsNotComparable(f"runs {names} were scored on different splits (split_hash {ha} in "
                                    f"{first['label']}, {hb} in {other['label']}): compare runs evaluated on the "
                                    "same test images")
        a, b = set(first["predictions"]), set(other["predictions"])
        if a != b:
            only_a, only_b = sorted(a - b, key=str), sorted(b - a, key=str)
            raise RunsNotComparable(f"runs {names} predicted different images (split_hash {ha} in both): "
                                    f"{len(only_a)} only in {first['label']} (e.g. {only_a[:3]}), {len(only_b)} only "
                                    f"in {other['label']} (e.g. {only_b[:3]})")
        differ = sorted((i for i in a if first["references"][i] != other["references"][i]), key=str)
        if differ:
            raise RunsNotComparable(f"runs {names} scored {len(differ)} image(s) against different references "
                                    f"(e.g. {differ[:3]}): compare runs evaluated on the same data")


def _eval_settings(loaded: list[dict], n_boot: int | None, seed: int | None) -> dict:
    """EvalConfig's fields for the comparison: the bootstrap as asked (03's defaults otherwise); SPICE only when every
    run was scored with it, on as many images as the fewest of them."""
    out = {} if n_boot is None else {"n_bootstrap": n_boot}
    out |= {} if seed is None else {"bootstrap_seed": seed}
    spice = [(run["metrics"].get("results", {}).get(FINETUNED) or {}) for run in loaded]
    if all(r.get("metrics", {}).get(SPICE) is not None and r.get("spice_images") for r in spice):
        return out | {"do_spice": True, "spice_subsample": min(r["spice_images"] for r in spice)}
    return out | {"do_spice": False}


def _split(ids: list, refs: dict):
    """The references as a canonical split (image_id, captions), the shape the human ceiling takes."""
    from datasets import Dataset

    return Dataset.from_dict({IMAGE_ID: ids, CAPTIONS: [refs[i] for i in ids]})


def _provenance(run: dict) -> dict:
    """What a run's metrics.json says about how it was made: its model, decoding and data."""
    m = run["metrics"]
    models = m.get("models") or {}
    return {"run_dir": run["run_dir"], "model": models.get(FINETUNED), "decoding": m.get("decoding"),
            "source": m.get("source"), "split": m.get("split"), "blipnb_version": m.get("blipnb_version"),
            **{k: run[k] for k in ("family", "train_seconds", "trainable_parameters", "attributes") if k in run}}


def pair_rows(comparison: dict, pair: dict) -> list[dict]:
    """One row per metric of a pair: both runs' values, A - B with its paired 95% CI, P(A beats B), the ceiling."""
    a, b, ceiling = pair["a"], pair["b"], comparison.get(HUMAN_CEILING)
    rows = []
    for key in pair["metrics"]:
        d = pair["metrics"][key]
        row = {"metric": key, "scale": scale_label(key), a: format_value(key, d["a"]), b: format_value(key, d["b"]),
               f"{a} - {b} [95% CI]": format_ci(key, d["diff"], d["low"], d["high"]),
               f"P({a} beats {b})": "n/a" if d["p_a_wins"] is None else f"{d['p_a_wins']:.3f}"}
        if ceiling:
            ci = ceiling.get("ci", {}).get(key) or {}
            row[CEILING_LABEL] = format_ci(key, ceiling["metrics"].get(key), ci.get("low"), ci.get("high"))
        rows.append(row)
    return rows


def decoding_differences(comparison: dict) -> dict[str, str]:
    """{run: its decoding settings where the runs differ, as 'num_beams=3, prompt=...'} ('' where none differ)."""
    decodings = {label: run.get("decoding") or {} for label, run in comparison["runs"].items()}
    keys = sorted({k for d in decodings.values() for k in d})
    differ = [k for k in keys if len({repr(d.get(k)) for d in decodings.values()}) > 1]
    return {label: ", ".join(f"{k}={d.get(k)!r}" for k in differ) for label, d in decodings.items()}


def comparison_report(comparison: dict) -> str:
    """comparison.md: the runs, every metric with CIs per run, one table per pair, then what the numbers rest on."""
    first = next(iter(comparison["results"].values()))
    refs = first["refs_per_image"]["mean"]
    lines = [f"# {len(comparison['runs'])} runs on the same {comparison['n_images']} images", "",
             f"The {comparison['split']} split of {comparison['source']} (split hash `{comparison['split_hash']}`), "
             f"each caption scored against all its references ({refs:.2f} per image on average); {first['scale']}. "
             f"95% CIs are percentile intervals over {comparison['n_bootstrap']} bootstrap resamples of the images "
             f"(seed {comparison['bootstrap_seed']}).", ""]
    decoding = decoding_differences(comparison)
    lines += markdown_table([{"run": label, "family": run.get("family") or "n/a", "model": run.get("model") or "n/a",
                              "trained": _trained(run), "decoding": decoding[label] or "same as the others",
                              "directory": run["run_dir"]}
                             for label, run in comparison["runs"].items()])
    lines += ["", "## Every metric", ""] + markdown_table(report_rows(comparison))
    attributes = {label: run["attributes"] for label, run in comparison["runs"].items() if run.get("attributes")}
    if len(attributes) == len(comparison["runs"]):
        names = list(next(iter(attributes.values())))
        lines += ["", "## Attribute accuracy (04, every test image)", ""] + markdown_table(
            [{"attribute": name, **{label: f"{acc.get(name, float('nan')):.3f}" for label, acc in attributes.items()}}
             for name in names])
    for pair in comparison["pairs"]:
        lines += ["", f"## {pair['a']} vs {pair['b']}", ""] + markdown_table(pair_rows(comparison, pair))
    lines += ["", "P(A beats B): the share of paired resamples (the same images drawn for both runs) in which A "
              "scores better (higher; lower where the scale says ↓); a tie is not a win, so a run against itself gets 0. A difference whose interval excludes "
              "0 holds across resamples of these images; other images, or another training seed, may move it.", "",
              "## Notes", ""]
    notes = ([single_reference_note(refs)] if refs < 2 else []) + table_notes(comparison)
    notes += unavailable_lines(comparison["results"])
    notes += [f"WARNING ({', '.join(names)}): {w}" for w, names in shared_warnings(comparison).items()
              if w not in notes]
    return "\n".join(lines + [f"- {note}" for note in notes] + [""])


def _trained(run: dict) -> str:
    """'312 s, 1.2M trainable parameters' from the run's train_results.json, or n/a."""
    if run.get("train_seconds") is None:
        return "n/a"
    size = run.get("trainable_parameters")
    return f"{run['train_seconds']:.0f} s" + (f", {size / 1e6:.1f}M trainable parameters" if size else "")


def write_comparison(comparison: dict, out_dir) -> dict[str, Path]:
    """comparison.json and comparison.md in `out_dir`; returns their paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    runs.write_json(folder / runs.COMPARISON, comparison)
    runs.write_text(folder / runs.COMPARISON_REPORT, comparison_report(comparison))
    return {"json": folder / runs.COMPARISON, "report": folder / runs.COMPARISON_REPORT}
