"""One report formatter for the run's metrics: the table 03 and `blipnb run-all` print and the model card shows."""
from __future__ import annotations

from ..schema import METRIC_KEYS, SACREBLEU


def report_rows(metrics: dict) -> list[dict]:
    """One row per metric: each model's value with its 95% CI, and the paired difference when there is one."""
    results, comparison = metrics["results"], metrics.get("comparison", {})
    rows = []
    for key in METRIC_KEYS:
        row = {"metric": key}
        for name, r in results.items():
            ci = r.get("ci", {}).get(key) or {}
            row[name] = _with_ci(key, r["metrics"].get(key), ci.get("low"), ci.get("high"))
        if key in comparison:
            c = comparison[key]
            row["difference"] = _with_ci(key, c.get("diff"), c.get("low"), c.get("high"))
            row["P(fine-tuned wins)"] = "n/a" if c.get("p_a_wins") is None else f"{c['p_a_wins']:.3f}"
        rows.append(row)
    rows.append({"metric": "n images"} | {n: str(r["n_images"]) for n, r in results.items()})
    rows.append({"metric": "refs per image"} | {n: f"{r['refs_per_image']['mean']:.2f}" for n, r in results.items()})
    return rows


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
    for name, r in metrics["results"].items():
        lines += [f"{key} unavailable ({name}): {why}" for key, why in r.get("unavailable", {}).items()]
        lines += [f"WARNING ({name}): {w}" for w in r.get("sanity", [])]
    return "\n".join(lines)


def format_value(key: str, value) -> str:
    """A metric as reports show it: 4 decimals on the 0-1 scale and for CIDEr, 2 for sacreBLEU (0-100)."""
    if value is None:
        return "n/a"
    return f"{value:.2f}" if key == SACREBLEU else f"{value:.4f}"


def _with_ci(key: str, value, low, high) -> str:
    if value is None or low is None or high is None:
        return format_value(key, value)
    return f"{format_value(key, value)} [{format_value(key, low)}, {format_value(key, high)}]"


def markdown_table(rows: list[dict]) -> list[str]:
    """report_rows (or any rows of strings) as the lines of a Markdown table."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return out + ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
