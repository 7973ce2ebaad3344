"""One report formatter for the run's metrics: the table 03 and `blipnb run-all` print and the model card shows."""
from __future__ import annotations

from ..schema import (HUMAN_CEILING, LENGTH, LOWER_IS_BETTER, METEOR, METRIC_GROUPS, METRIC_SCALES, SACREBLEU, SPICE,
                      VOCABULARY)
from ..scoring.bootstrap import scored_keys
from ..scoring.ceiling import CEILING_LABEL, NO_CEILING

DIRECTION_NOTE = "scale: ↑ higher is better, ↓ lower is better (CHAIR, colour and position errors, repeats, copied)"


def scale_label(key: str) -> str:
    """A metric's scale and direction as the table shows it: '0-1 ↑', 'share ↓', 'words'."""
    if key in (VOCABULARY, LENGTH):
        return METRIC_SCALES[key]  # neither direction is better: compare with the references
    return f"{METRIC_SCALES[key]} {'↓' if key in LOWER_IS_BETTER else '↑'}"


def group_of(key: str) -> str:
    return next(group for group, keys in METRIC_GROUPS.items() if key in keys)


def report_rows(metrics: dict) -> list[dict]:
    """One row per metric: each model's value with its 95% CI, the paired difference when there is one, and the
    human ceiling (references vs each other) beside them when it was computed."""
    results, comparison = metrics["results"], metrics.get("comparison", {})
    ceiling = metrics.get(HUMAN_CEILING)
    rows, group = [], None
    for key in scored_keys(*results.values()):
        row = {"group": group_of(key) if group_of(key) != group else "", "metric": key, "scale": scale_label(key)}
        group = group_of(key)
        for name, r in results.items():
            ci = r.get("ci", {}).get(key) or {}
            row[name] = format_ci(key, r["metrics"].get(key), ci.get("low"), ci.get("high"))
        if key in comparison:
            c = comparison[key]
            row["difference"] = format_ci(key, c.get("diff"), c.get("low"), c.get("high"))
            row["P(fine-tuned wins)"] = "n/a" if c.get("p_a_wins") is None else f"{c['p_a_wins']:.3f}"
        if ceiling:
            ci = ceiling.get("ci", {}).get(key) or {}
            row[CEILING_LABEL] = format_ci(key, ceiling["metrics"].get(key), ci.get("low"), ci.get("high"))
        rows.append(row)
    both = {**results, CEILING_LABEL: ceiling} if ceiling else results
    rows.append({"group": "counts", "metric": "n images"} | {n: str(r["n_images"]) for n, r in both.items()})
    rows.append({"metric": "refs per image"} | {n: f"{r['refs_per_image']['mean']:.2f}" for n, r in both.items()})
    rows.append({"metric": "SPICE images"} | {n: _spice_images(r) for n, r in both.items()})
    return rows


def _spice_images(result: dict) -> str:
    """How many images SPICE scored (a seeded subsample when it is slow), or why none."""
    if result.get("spice_images") is None:
        return "none (unavailable)" if SPICE in result.get("unavailable", {}) else "none"
    scored = result.get("n_items", result["n_images"])  # the ceiling scores (image, reference) items
    return f"{result['spice_images']} of {scored}" + (" items" if "n_items" in result else "")


def table_notes(metrics: dict) -> list[str]:
    """What the table's numbers rest on: the human ceiling's method, the METEOR interval, sacreBLEU's signature."""
    notes, ceiling = [], metrics.get(HUMAN_CEILING)
    if ceiling:
        of = ceiling.get("of_images", ceiling["n_images"])
        single = of - ceiling["n_images"]
        covered = (f"{ceiling['n_images']} images" if not single else
                   f"the {ceiling['n_images']} of {of} images that have two or more references; the other {single} "
                   f"{'has' if single == 1 else 'have'} one reference and nothing to compare it with")
        notes.append(f"{CEILING_LABEL}: each reference scored against the other references of its image (leave one "
                     f"out, rotating: {ceiling['n_items']} items over {covered}), same tokenizer, "
                     "metrics and bootstrap. It has one reference fewer than the models (see refs per image), so its "
                     "BLEU and METEOR sit a little below what a human would score against all of them.")
    elif HUMAN_CEILING in metrics:
        reason = metrics.get("unavailable", {}).get(HUMAN_CEILING, NO_CEILING)
        notes.append(f"{CEILING_LABEL}: {reason}")
    named = {**metrics["results"], **({CEILING_LABEL: ceiling} if ceiling else {})}
    methods = {n: (r.get("ci", {}).get(METEOR) or {}).get("method") for n, r in named.items()}
    if any(methods.values()):
        notes.append("METEOR intervals: " + ", ".join(f"{n} {m}" for n, m in methods.items() if m)
                     + " (exact: Java METEOR of each resample; approximate: shifted per-image mean, without Java)")
    truths = {n: r["objects_truth"] for n, r in named.items() if r.get("objects_truth")}
    if truths:
        notes.append(f"CHAIR: what is in each image from {next(iter(truths.values()))}; CHAIR_i pools the objects "
                     "named over all captions, CHAIR_s is the share of captions naming one that is not there")
    signatures = {n: r.get("sacrebleu_signature") for n, r in named.items() if r.get("sacrebleu_signature")}
    for signature in dict.fromkeys(signatures.values()):
        users = [n for n, s in signatures.items() if s == signature]
        notes.append(f"sacreBLEU signature ({', '.join(users)}): {signature}")
    return notes


def format_report(metrics: dict) -> str:
    """Plain-text metrics table (95% CIs in brackets), the scale, missing metrics with reasons, sanity warnings."""
    rows = report_rows(metrics)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cells = [columns] + [[row.get(c, "") for c in columns] for row in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    first = next(iter(metrics["results"].values()))
    lines.append(f"{metrics['split']} split of {metrics['source']}; scale: {first['scale']}; "
                 f"tokenizer: {first['tokenizer']}")
    lines.append(DIRECTION_NOTE)
    lines += table_notes(metrics)
    if metrics.get("decoding_differs_from_validation"):
        lines.append("decoding differs from validation: " + ", ".join(metrics["decoding_differs_from_validation"]))
    lines += unavailable_lines(metrics["results"])
    lines += [f"WARNING ({', '.join(names)}): {w}" for w, names in shared_warnings(metrics).items()]
    return "\n".join(lines)


def unavailable_lines(results: dict) -> list[str]:
    """'CLIP-S, RefCLIP-S unavailable (fine-tuned, baseline): <reason>': each reason said once, for every metric and
    model it concerns."""
    by_reason: dict[str, dict[str, list[str]]] = {}
    for name, r in results.items():
        for key, why in r.get("unavailable", {}).items():
            by_reason.setdefault(why, {}).setdefault(key, [])
            by_reason[why][key].append(name)
    lines = []
    for why, keys in by_reason.items():
        groups: dict[tuple, list[str]] = {}
        for key, names in keys.items():
            groups.setdefault(tuple(names), []).append(key)
        lines += [f"{', '.join(ks)} unavailable ({', '.join(names)}): {why}" for names, ks in groups.items()]
    return lines


def shared_warnings(metrics: dict) -> dict[str, list[str]]:
    """{sanity warning: the models it was raised for}: a warning about the data (one reference per image) is
    the same for every model and is said once."""
    out: dict[str, list[str]] = {}
    for name, r in metrics["results"].items():
        for w in r.get("sanity", []):
            out.setdefault(w, []).append(name)
    return out


def format_value(key: str, value) -> str:
    """A metric as reports show it: 4 decimals on the 0-1 scale, for CIDEr, CLIP-S and shares; 2 for sacreBLEU (0-100)
    and for the mean length in words; the vocabulary in whole words."""
    if value is None:
        return "n/a"
    if key == VOCABULARY:
        return f"{value:.0f}"
    return f"{value:.2f}" if key in (SACREBLEU, LENGTH) else f"{value:.4f}"


def format_ci(key: str, value, low, high) -> str:
    """A metric and its interval as reports show it: '0.3120 [0.2950, 0.3290]', or the value alone without one."""
    if value is None or low is None or high is None:
        return format_value(key, value)
    return f"{format_value(key, value)} [{format_value(key, low)}, {format_value(key, high)}]"


def markdown_table(rows: list[dict]) -> list[str]:
    """report_rows (or any rows of strings) as the lines of a Markdown table."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return out + ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
