"""Every matplotlib figure the notebooks show, built with the object API (no pyplot state, safe under Agg).

Over 300 lines on purpose: one module for all figures keeps their look (colours, scales, wrapping) consistent.
Figures render inline in Jupyter as the last expression of a cell once blipnb.notebook.setup() has run; save
them with `run.save_figure(fig, "name.png")`.
"""
from __future__ import annotations

import html
import math
import textwrap
import warnings
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import MaxNLocator

from ..schema import STOP_WORDS, words
from ..schema import CAPTIONS, IMAGE, IMAGE_ID, undecoded
from ..schema import (BLEU, CHAIR_I, CHAIR_S, CIDER, CLIP_S, COLOUR_ERRORS, COPIED, HUMAN_CEILING, METEOR, METRIC_KEYS,
                      POSITION_ERRORS, REFCLIP_S, REPEATS, ROUGE_L, SACREBLEU, SPICE)

MODEL_COLOURS = {"fine-tuned": "tab:blue", "baseline": "tab:gray"}
SPLIT_COLOURS = {"train": "tab:blue", "validation": "tab:orange", "test": "tab:green"}
PAIR_COLOURS = colormaps["Dark2"]  # blipnb compare's pairs, apart from the runs' default colours
PAIR_MARKERS = ("o", "s", "D", "^", "v", "P")
# Metrics grouped by scale, each group on its own axis; the axis title names only the metrics it shows.
SCALES = (("0-1", (*BLEU, METEOR, ROUGE_L, SPICE)), ("0-10", (CIDER,)), ("0-100", (SACREBLEU,)),
          ("0-2.5", (CLIP_S, REFCLIP_S)),
          ("share, lower is better", (CHAIR_I, CHAIR_S, COLOUR_ERRORS, POSITION_ERRORS, REPEATS, COPIED)))


def _scale_title(scale: str, keys: list[str]) -> str:
    """'BLEU-1..4, METEOR, ROUGE-L (0-1)': the metrics on one axis, BLEU-1..4 named once when all four are there."""
    names = [k.replace("_", "-") for k in keys if k not in BLEU]
    if all(k in keys for k in BLEU):
        names.insert(0, "BLEU-1..4")
    else:
        names[:0] = [k.replace("_", "-") for k in keys if k in BLEU]
    return f"{', '.join(names)} ({scale})"


def _wrap(text: str, width: int = 32, lines: int = 3) -> str:
    return "\n".join(textwrap.wrap(text, width, max_lines=lines, placeholder=" ..."))


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)


def plot_training_curves(log_history: list[dict]) -> Figure:
    """Train and validation loss vs step, and validation CIDEr / BLEU-4 vs step, from Trainer.state.log_history."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_loss, ax_score = fig.subplots(1, 2)

    def series(key):
        return [(h["step"], h[key]) for h in log_history if h.get(key) is not None and "step" in h]

    if train := series("loss"):
        ax_loss.plot(*zip(*train), lw=1, label="train loss")
    if val := series("eval_loss"):
        ax_loss.plot(*zip(*val), "o-", label="validation loss")
    ax_loss.set(title="Loss", xlabel="optimiser step", ylabel="cross-entropy (nats per token)")
    if train or val:
        ax_loss.legend()
    if min((v for _, v in train + val), default=0) > 0:
        # The first steps' loss is 10-100x the rest: on a linear axis train and validation loss then overlap.
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("cross-entropy (nats per token, log scale)")
    else:
        _note(ax_loss, "no loss entries in the log")
    ax_score.set(title="Validation captions", xlabel="optimiser step", ylabel="CIDEr (0-10)")
    if cider := series("eval_cider"):
        ax_score.plot(*zip(*cider), "o-", color="tab:green", label="CIDEr")
    if bleu := series("eval_bleu4"):
        ax_bleu = ax_score.twinx()  # BLEU-4 lives on 0-1, CIDEr on 0-10
        ax_bleu.plot(*zip(*bleu), "s--", color="tab:purple", label="BLEU-4")
        ax_bleu.set_ylabel("BLEU-4 (0-1)")
        fig.legend(loc="outside lower right", ncols=2, handles=ax_score.lines + ax_bleu.lines)
    if not cider and not bleu:
        _note(ax_score, "no validation scores in the log\n(eval_strategy='no', or training stopped before one)")
    return fig


def _available(metrics: dict) -> tuple[list[str], dict]:
    """Metric keys with a value for some model, and the reasons the others are missing."""
    results = metrics["results"]
    keys = [k for k in METRIC_KEYS if any(r["metrics"].get(k) is not None for r in results.values())]
    why: dict[str, str] = {}  # the first model's reason for each missing metric
    for name, r in results.items():
        for k in METRIC_KEYS:
            if k not in keys and k in r["metrics"]:
                why.setdefault(k, r.get("unavailable", {}).get(k) or f"null for {name}")
    by_reason: dict[str, list[str]] = {}  # CLIP-S and RefCLIP-S share one reason: said once
    for k, reason in why.items():
        by_reason.setdefault(reason, []).append(k)
    return keys, {", ".join(ks): reason for reason, ks in by_reason.items()}


def _width(groups: list) -> float:
    """Figure width in inches for panels of these metric groups: 12, wider when many metrics are shown."""
    return min(22.0, max(12.0, 0.8 * sum(max(2, len(ks)) for _, ks in groups)))


def plot_metric_comparison(metrics: dict) -> Figure:
    """Grouped bars per metric and model with 95% bootstrap CI whiskers, one axis per scale; nulls are named."""
    keys, reasons = _available(metrics)
    groups = [(label, [k for k in group if k in keys]) for label, group in SCALES]
    groups = [(label, ks) for label, ks in groups if ks]
    models = list(metrics["results"])
    fig = Figure(figsize=(_width(groups), 4.5), layout="constrained")
    axes = fig.subplots(1, max(1, len(groups)), width_ratios=[max(2, len(ks)) for _, ks in groups] or None,
                        squeeze=False)[0]
    for ax, (label, ks) in zip(axes, groups):
        _bars(ax, ks, metrics["results"])
        ax.set(title=_scale_title(label, ks), ylabel="score")
    if groups:  # above the panels: inside one, it covers the tallest bar and its whisker
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(models),
                   title=f"{metrics.get('split', '')} split, n={metrics.get('n_images', '?')} images, 95% CI")
    else:
        _note(axes[0], "no metric could be computed")
    if reasons:
        fig.text(0.01, -0.02, _wrap("Not shown: " + "; ".join(f"{k} ({why})" for k, why in reasons.items()), 160),
                 fontsize=8, va="top", color="0.3")
    return fig


def _bars(ax, keys: list[str], results: dict, styles: dict | None = None) -> None:
    """One bar per metric and result (grouped by metric) with its 95% CI whiskers; a null metric has no bar."""
    width = 0.8 / max(1, len(results))
    for m, (name, r) in enumerate(results.items()):
        present = [k for k in keys if r["metrics"].get(k) is not None]
        xs = [keys.index(k) + (m - (len(results) - 1) / 2) * width for k in present]
        heights = [r["metrics"][k] for k in present]
        err = np.array([[_err(h, r.get("ci", {}).get(k, {}), side) for h, k in zip(heights, present)]
                        for side in ("low", "high")]).reshape(2, len(present))
        style = (styles or {}).get(name) or {"color": MODEL_COLOURS.get(name)}
        ax.bar(xs, heights, width, yerr=err, capsize=3, label=name, **style)
    ax.set_xticks(range(len(keys)), [k.replace("_", "-") for k in keys])


def _err(value: float, ci: dict, side: str) -> float:
    """Whisker length from a {low, high} CI; 0 where there is none."""
    bound = ci.get(side)
    return 0.0 if bound is None else abs(value - bound)


def plot_paired_differences(comparison: dict, a: str = "fine-tuned", b: str = "baseline") -> Figure:
    """A minus B per metric with the paired-bootstrap 95% CI and the share of resamples where A wins."""
    present = {k: v for k, v in comparison.items() if v.get("diff") is not None}
    groups = [(label, [k for k in group if k in present]) for label, group in SCALES]
    groups = [(label, ks) for label, ks in groups if ks]
    fig = Figure(figsize=(_width(groups), 3.5), layout="constrained")
    axes = fig.subplots(1, max(1, len(groups)), width_ratios=[max(2, len(ks)) for _, ks in groups] or None,
                        squeeze=False)[0]
    for ax, (label, ks) in zip(axes, groups):
        diffs = [present[k]["diff"] for k in ks]
        err = np.array([[_err(d, present[k], side) for d, k in zip(diffs, ks)] for side in ("low", "high")])
        ax.errorbar(range(len(ks)), diffs, yerr=err, fmt="o", capsize=4, color="tab:blue")
        ax.axhline(0, color="0.5", lw=0.8)
        # The win share goes under the metric's name: beside the point it ran into the panel's border.
        ax.set_xticks(range(len(ks)), [k.replace("_", "-") + _win_share(present[k].get("p_a_wins")) for k in ks])
        ax.set_xlim(-0.5, len(ks) - 0.5)
        ax.set(title=_scale_title(label, ks), ylabel=f"{a} - {b}")
    if not groups:
        _note(axes[0], "no metric has a difference")
    missing = sorted(set(comparison) - set(present))
    note = f"95% paired-bootstrap CIs; P = share of resamples where {a} scores better (lower, for shares)."
    if missing:
        note += " Not shown (null): " + ", ".join(missing) + "."
    fig.text(0.01, -0.02, note, fontsize=8, va="top", color="0.3")
    return fig


def plot_run_comparison(comparison: dict) -> Figure:
    """Runs on the same images (blipnb compare): each run's scores with 95% CI whiskers beside the human ceiling
    (top), and every pair's paired difference A - B with its 95% CI (bottom); one column per scale."""
    from ..scoring.ceiling import CEILING_LABEL  # here: importing scoring loads pycocoevalcap, which viz needs nowhere else

    keys, reasons = _available(comparison)
    groups = [(label, ks) for label, group in SCALES if (ks := [k for k in group if k in keys])]
    bars, styles = dict(comparison["results"]), {}
    if comparison.get(HUMAN_CEILING):
        bars[CEILING_LABEL] = comparison[HUMAN_CEILING]
        styles[CEILING_LABEL] = {"color": "0.85", "hatch": "//", "edgecolor": "0.5"}
    pairs = comparison["pairs"]
    fig = Figure(figsize=(_width(groups), 7), layout="constrained")
    axes = fig.subplots(2, max(1, len(groups)), width_ratios=[max(2, len(ks)) for _, ks in groups] or None,
                        squeeze=False)
    step = 0.8 / max(1, len(pairs))
    for top, bottom, (label, ks) in zip(axes[0], axes[1], groups):
        _bars(top, ks, bars, styles)
        top.set(title=_scale_title(label, ks), ylabel="score")
        for p, pair in enumerate(pairs):
            rows = {k: pair["metrics"][k] for k in ks if pair["metrics"][k].get("diff") is not None}
            xs = [ks.index(k) + (p - (len(pairs) - 1) / 2) * step for k in rows]
            diffs = [row["diff"] for row in rows.values()]
            err = np.array([[_err(d, row, side) for d, row in zip(diffs, rows.values())]
                            for side in ("low", "high")]).reshape(2, len(rows))
            # Pairs in colours and markers of their own: the runs' colours would say "this run" in the row above.
            bottom.errorbar(xs, diffs, yerr=err, fmt=PAIR_MARKERS[p % len(PAIR_MARKERS)], capsize=4,
                            color=PAIR_COLOURS(p % PAIR_COLOURS.N), label=f"{pair['a']} - {pair['b']}")
        bottom.axhline(0, color="0.5", lw=0.8)
        wins = [_win_share(pairs[0]["metrics"][k].get("p_a_wins")) if len(pairs) == 1 else "" for k in ks]
        bottom.set_xticks(range(len(ks)), [k.replace("_", "-") + w for k, w in zip(ks, wins)])
        bottom.set_xlim(-0.5, len(ks) - 0.5)
        bottom.set(ylabel="paired difference")
    # What is not shown goes in the lower legend: text placed under it runs into it once bbox_inches="tight" crops.
    missing = _wrap("Not shown: " + "; ".join(f"{k} ({why})" for k, why in reasons.items()), 110, 4) if reasons else ""
    if groups:
        fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside upper center", ncols=len(bars),
                   title=f"{comparison.get('split', '')} split, n={comparison.get('n_images', '?')} images, 95% CI")
        title = "A - B, 95% paired-bootstrap CI" + (" (P: share of resamples where A scores better)"
                                                    if len(pairs) == 1 else "")
        fig.legend(*axes[1][0].get_legend_handles_labels(), loc="outside lower center", ncols=min(4, len(pairs)),
                   title="\n".join(filter(None, (title, missing))), title_fontsize=8)
    else:
        _note(axes[0][0], "\n".join(filter(None, ("no metric could be computed", missing))))
    return fig


def _win_share(p: float | None) -> str:
    return "" if p is None else f"\nP={p:.2f}"


def plot_sweep_heatmap(grid: list[dict], x: str, y: str | None, value: str, facet: str | None = None) -> Figure:
    """Heatmap of `value` over x and y (y None: one row); one panel per value of a third swept key."""
    if not grid:
        raise ValueError("the sweep grid is empty")
    if y is None or y == x:  # a one-axis sweep: a single row, not a diagonal
        grid, y = [{**r, " ": ""} for r in grid], " "
    missing = [k for k in (x, y, value) if k not in grid[0]]
    if missing:
        raise KeyError(f"sweep rows lack {missing}; they have {sorted(grid[0])}")
    if facet is None:
        swept = [k for k in grid[0] if k not in (x, y, value) and k not in METRIC_KEYS
                 and len({repr(r.get(k)) for r in grid}) > 1]
        facet = swept[0] if swept else None
    panels = sorted({r.get(facet) for r in grid}, key=str) if facet else [None]
    xs, ys = sorted({r[x] for r in grid}), sorted({r[y] for r in grid})
    values = [r[value] for r in grid if r[value] is not None]
    vmin, vmax = (min(values), max(values)) if values else (0, 1)
    best = max((r for r in grid if r[value] is not None), key=lambda r: r[value], default=None)
    best_cell = (best[y], best[x], best.get(facet) if facet else None) if best else None
    fig = Figure(figsize=(1.2 + 0.9 * len(xs) * len(panels) + 1, 1.2 + 0.6 * len(ys)), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        cells = np.full((len(ys), len(xs)), np.nan)
        for r in grid:
            if (facet is None or r.get(facet) == panel) and r[value] is not None:
                cells[ys.index(r[y]), xs.index(r[x])] = r[value]
        im = ax.imshow(cells, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
        for (i, j), v in np.ndenumerate(cells):
            if not np.isnan(v):
                star = "*" if best_cell == (ys[i], xs[j], panel) else ""
                ax.text(j, i, f"{v:.3g}{star}", ha="center", va="center", fontsize=8,
                        color="white" if v < (vmin + vmax) / 2 else "black")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set(xlabel=x, ylabel=y, title=f"{facet} = {panel}" if facet else value)
    fig.colorbar(im, ax=list(axes), label=f"{value} (validation; * best)")
    return fig


STATE_MARKERS = {"finished": dict(marker="o"), "pruned": dict(marker="x"), "failed": dict(marker="s", alpha=0.4)}


def plot_trials(summary: dict) -> Figure:
    """A hyperparameter sweep (evaluation.trials.summarise): the validation objective against each searched
    parameter (log axis where the values span decades; choices as categories), and by trial with the best so far.
    Pruned trials show the score they were stopped at (x)."""
    rows, objective, names = summary["trials"], summary["objective"], summary["parameters"]
    scored = [r for r in rows if r["objective"] is not None]
    fig = Figure(figsize=(3.2 * (len(names) + 1), 3.0), layout="constrained")
    axes = fig.subplots(1, len(names) + 1, squeeze=False)[0]
    best = summary["best"]["trial"]
    for ax, name in zip(axes, names):
        values = [r[name] for r in scored if r[name] is not None]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        ticks = [] if numeric else sorted({str(v) for v in values})
        for state, style in STATE_MARKERS.items():
            pts = [r for r in scored if r["state"] == state and r[name] is not None]
            if not pts:
                continue
            xs = [r[name] if numeric else ticks.index(str(r[name])) for r in pts]
            ax.scatter(xs, [r["objective"] for r in pts], label=state, color="tab:blue", **style)
        for r in scored:
            if r["trial"] == best and r[name] is not None:
                ax.scatter([r[name] if numeric else ticks.index(str(r[name]))], [r["objective"]], s=160,
                           facecolors="none", edgecolors="tab:red", label="best")
        if numeric and values and min(values) > 0 and max(values) / min(values) >= 20:
            ax.set_xscale("log")
        if ticks:
            ax.set_xticks(range(len(ticks)), ticks)
        ax.set(xlabel=name, ylabel=f"validation {objective}" if ax is axes[0] else None)
        if not values:
            _note(ax, f"no trial drew {name}")
    history = axes[-1]
    for state, style in STATE_MARKERS.items():
        pts = [r for r in scored if r["state"] == state]
        if not pts:
            continue
        history.scatter([r["trial"] for r in pts], [r["objective"] for r in pts], color="tab:blue", label=state,
                        **style)
    finished = sorted((r["trial"], r["objective"]) for r in scored if r["state"] == "finished")
    if finished:
        running = np.maximum.accumulate([v for _, v in finished])
        history.step([t for t, _ in finished], running, where="post", color="tab:red", label="best so far")
    history.xaxis.set_major_locator(MaxNLocator(integer=True))
    history.set(xlabel="trial", title="history")
    history.legend(fontsize=7)
    fig.suptitle(f"{len(rows)} trials; best: trial {best} (validation {objective} {summary['best']['objective']:.3f})",
                 fontsize=10)
    return fig


def plot_caption_lengths(stats: dict) -> Figure:
    """Histogram of caption lengths in words, one panel per split, with the mean marked."""
    lengths = {s: v for s, v in stats["caption_words"].items() if v}
    fig = Figure(figsize=(4 * max(1, len(lengths)), 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(lengths)), sharex=True, squeeze=False)[0]
    top = max((max(v) for v in lengths.values()), default=1)
    for ax, (split, values) in zip(axes, lengths.items()):
        ax.hist(values, bins=np.arange(0.5, top + 1.5), color=SPLIT_COLOURS.get(split))
        mean = float(np.mean(values))
        ax.axvline(mean, color="k", ls="--", lw=1, label=f"mean {mean:.1f}")
        ax.set(title=f"{split} ({len(values)} captions)", xlabel="caption length (words)", ylabel="captions")
        ax.legend()
    return fig


def plot_top_words(stats: dict, n: int = 20) -> Figure:
    """The most frequent train-caption words: all words, and without STOP_WORDS."""
    ranked = list(stats["top_words"])
    content = [(w, c) for w, c in ranked if w not in STOP_WORDS]
    fig = Figure(figsize=(10, 0.25 * n + 1.5), layout="constrained")
    for ax, (title, items) in zip(fig.subplots(1, 2), (("all words", ranked[:n]), ("content words", content[:n]))):
        if items:
            ax.barh(range(len(items)), [c for _, c in items], color="tab:blue")
            ax.set_yticks(range(len(items)), [w for w, _ in items])
            ax.invert_yaxis()
        else:
            _note(ax, "no words")
        ax.set(title=f"Most frequent {title} (train)", xlabel="occurrences in train captions")
    return fig


def plot_image_sizes(stats: dict) -> Figure:
    """Image width vs height per split (sampled), and the distribution of aspect ratios."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_size, ax_aspect = fig.subplots(1, 2)
    for split, sizes in stats["image_sizes"].items():
        if sizes:
            w, h = np.array(sizes, dtype=float).T
            ax_size.scatter(w, h, s=12, alpha=0.5, label=f"{split} ({len(sizes)} sampled)",
                            color=SPLIT_COLOURS.get(split))
    for split, aspects in stats["aspects"].items():
        if aspects:
            ax_aspect.hist(aspects, bins=30, alpha=0.5, label=split, color=SPLIT_COLOURS.get(split))
    ax_size.set(title="Image sizes", xlabel="width (pixels)", ylabel="height (pixels)")
    ax_aspect.set(title="Aspect ratios", xlabel="width / height", ylabel="images")
    for ax in (ax_size, ax_aspect):
        ax.legend() if ax.has_data() else _note(ax, "no images")
    return fig


def _grid(n: int, ncols: int, cell=(3.0, 3.6)) -> tuple[Figure, list]:
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    # Extra vertical padding: a row's caption (xlabel) otherwise touches the next row's title.
    fig = Figure(figsize=(cell[0] * ncols, cell[1] * nrows), layout=ConstrainedLayoutEngine(h_pad=0.12))
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_axis_off()
    for ax in axes[:n]:  # not set_axis_off: captions go in the xlabel, which constrained layout makes room for
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
    return fig, axes


def _undecoded(split, indices: list[int]) -> list[dict]:
    """Rows at `indices` with the image column left as {bytes, path}, so to_rgb can name a broken file."""
    return list(undecoded(split.select(indices)))


def _show_image(ax, source, image_id: str) -> None:
    """Draw a stored image; a file that cannot be decoded becomes a grey tile naming it (and a warning)."""
    from ..runtime.images import BadImageError, to_rgb

    path = source.get("path") if isinstance(source, dict) else None
    try:
        ax.imshow(to_rgb(source, f"{path} (image_id {image_id})" if path else f"image_id {image_id}"))
    except BadImageError as e:
        warnings.warn(str(e), stacklevel=3)
        ax.imshow(np.full((8, 8, 3), 0.85))
        label = "\n".join(textwrap.wrap(Path(path).name if path else image_id, 28)[:3])
        ax.text(0.5, 0.5, f"cannot read\n{label}", ha="center", va="center", transform=ax.transAxes,
                fontsize=8, color="tab:red")


def plot_gallery(split, n: int = 12, seed: int = 0, captions_per_image: int = 2, ncols: int = 4) -> Figure:
    """A seeded random grid of images from a split, each with its first captions wrapped under it."""
    count = min(n, len(split))
    picks = sorted(np.random.default_rng(seed).choice(len(split), count, replace=False).tolist()) if count else []
    fig, axes = _grid(max(1, count), ncols)
    for ax, row in zip(axes, _undecoded(split, picks)):
        _show_image(ax, row[IMAGE], str(row[IMAGE_ID]))
        caps = [_wrap(c, 36, 2) for c in row[CAPTIONS][:captions_per_image]]
        ax.set_title(_wrap(str(row[IMAGE_ID]), 36, 1), fontsize=7, color="0.4")
        ax.set_xlabel("\n".join(caps), fontsize=8)
    if not count:
        _note(axes[0], "the split is empty")
    return fig


def plot_near_duplicates(pairs: list[dict], ds, max_pairs: int = 6) -> Figure:
    """Each near-duplicate pair (from leaks.near_duplicates) side by side, with splits, ids and hash distance."""
    shown = pairs[:max_pairs]
    fig, axes = _grid(2 * max(1, len(shown)), 2, cell=(2.8, 2.8))
    for k, p in enumerate(shown):
        for side, ax in zip("ab", axes[2 * k:2 * k + 2]):
            split, image_id = p[f"split_{side}"], p[f"id_{side}"]
            index = list(map(str, ds[split][IMAGE_ID])).index(str(image_id))
            _show_image(ax, _undecoded(ds[split], [index])[0][IMAGE], str(image_id))
            ax.set_title(_wrap(f"{split}: {image_id}" + (f" (d={p['distance']})" if side == "b" else ""), 34, 2),
                         fontsize=8)
    if not shown:
        _note(axes[0], "no near-duplicate pairs")
    return fig


def plot_scored_gallery(rows: list[dict], split, title: str, key: str = "CIDEr", n_refs: int = 3,
                        ncols: int = 4) -> Figure:
    """Images with the prediction, a few references and the score (for the worst-k / best-k rows; for rows from
    analysis.disagreements, the other run's caption and score too)."""
    position = {str(i): k for k, i in enumerate(split[IMAGE_ID])}
    missing = [r["image_id"] for r in rows if str(r["image_id"]) not in position]
    if missing:
        raise ValueError(f"{len(missing)} image id(s) are not in the split, e.g. {missing[:5]}")
    fig, axes = _grid(max(1, len(rows)), ncols, cell=(3.2, 4.4))
    sources = _undecoded(split, [position[str(r["image_id"])] for r in rows]) if rows else []
    for ax, r, src in zip(axes, rows, sources):
        _show_image(ax, src[IMAGE], str(r["image_id"]))
        score = r.get("scores", {}).get(key)
        ax.set_title(f"{key} {score:.3f}" if score is not None else f"{key} n/a", fontsize=9)
        text = ["pred: " + _wrap(r["prediction"], 34, 2)] + ["ref: " + _wrap(c, 34, 2) for c in r["references"][:n_refs]]
        if r.get("flag"):  # analysis.hallucinated / analysis.repeating: what the gallery is about
            text.insert(1, _wrap(r["flag"], 34, 2))
        if "compared" in r:  # analysis.disagreements: the other run's caption and score beside this run's
            other = r["compared"]
            ax.set_title(f"{key} {score:.3f} vs {other['score']:.3f}", fontsize=9)
            text.insert(1, f"{other['label']}: " + _wrap(other["prediction"], 34, 2))
        ax.set_xlabel("\n".join(text), fontsize=7.5, loc="left", multialignment="left")
    if not rows:
        _note(axes[0], "no rows")
    fig.suptitle(title, fontsize=13)
    return fig


def plot_score_distribution(rows: list[dict], key: str = "CIDEr", baseline: list[dict] | None = None) -> Figure:
    """Histogram of per-image scores (fine-tuned, and the baseline if given), means marked."""
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.subplots()
    series = [("fine-tuned", rows)] + ([("baseline", baseline)] if baseline else [])
    data = {name: [r["scores"][key] for r in rs if r.get("scores", {}).get(key) is not None] for name, rs in series}
    every = [v for vs in data.values() for v in vs]
    bins = np.linspace(min(every, default=0), max(every, default=1) or 1, 31)
    for name, values in data.items():
        if values:
            ax.hist(values, bins=bins, alpha=0.6, color=MODEL_COLOURS.get(name), label=f"{name} (n={len(values)})")
            ax.axvline(np.mean(values), color=MODEL_COLOURS.get(name), ls="--", lw=1.2)
    ax.set(title=f"Per-image {key} (dashed: mean)", xlabel=f"{key} of one image's caption", ylabel="images")
    ax.legend() if every else _note(ax, f"no per-image {key} scores")
    return fig


def plot_length_scatter(rows: list[dict], key: str = "CIDEr") -> Figure:
    """Predicted caption length vs the mean reference length, in words, coloured by score, with y = x."""
    ref = np.array([np.mean([len(words(c)) for c in r["references"]]) for r in rows], dtype=float)
    pred = np.array([len(words(r["prediction"])) for r in rows], dtype=float)
    score = [r.get("scores", {}).get(key) for r in rows]
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, pred.size)  # lengths are integers: unstack the points
    if all(s is not None for s in score) and rows:
        points = ax.scatter(ref, pred + jitter, c=score, cmap="viridis", s=14, alpha=0.7)
        fig.colorbar(points, ax=ax, label=key)
    else:
        ax.scatter(ref, pred + jitter, s=14, alpha=0.7)
    top = max([*ref, *pred, 1]) + 1
    ax.plot([0, top], [0, top], color="0.5", lw=1, label="y = x")
    ax.set(title="Caption length", xlabel="mean reference length (words)", ylabel="predicted length (words)",
           xlim=(0, top), ylim=(0, top))
    for axis in (ax.xaxis, ax.yaxis):  # word counts: whole-number ticks, not steps of 2.5
        axis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left")
    return fig


def plot_word_usage(table: dict) -> Figure:
    """Diverging bars: share of predictions minus share of references containing each word."""
    items = list(table.get("overused", []))[::-1] + list(table.get("underused", []))
    items.sort(key=lambda t: t["difference"])
    fig = Figure(figsize=(7, 0.25 * len(items) + 1.6), layout="constrained")
    ax = fig.subplots()
    if items:
        diffs = [t["difference"] for t in items]
        ax.barh(range(len(items)), diffs, color=["tab:red" if d < 0 else "tab:blue" for d in diffs])
        ax.set_yticks(range(len(items)), [f"{t['word']} ({t['prediction_count']}/{t['reference_count']})"
                                          for t in items])
        ax.axvline(0, color="0.3", lw=0.8)
    else:
        _note(ax, "no content words")
    ax.set(title="Words the model over- (blue) and under-uses (red)",
           xlabel="share of predictions - share of references containing the word",
           ylabel="word (predictions / references containing it)")
    return fig


def plot_slices(slices: list[dict], key: str = "CIDEr", max_slices: int = 20) -> Figure:
    """Mean score per slice with its bootstrap 95% CI and size, and the overall mean; worst and best if many."""
    ranked = sorted(slices, key=lambda s: s["mean"])
    if len(ranked) > max_slices:
        ranked = ranked[:max_slices // 2] + ranked[-(max_slices - max_slices // 2):]
    fig = Figure(figsize=(7, 0.28 * len(ranked) + 1.8), layout="constrained")
    ax = fig.subplots()
    if ranked:
        means = [s["mean"] for s in ranked]
        err = np.array([[_err(m, s, side) for m, s in zip(means, ranked)] for side in ("low", "high")])
        ax.barh(range(len(ranked)), means, xerr=err, capsize=2, color="tab:blue", alpha=0.8)
        ax.set_yticks(range(len(ranked)), [f"{s['slice']} (n={s['n']})" for s in ranked])
        ax.invert_yaxis()
        overall = ranked[0]["mean"] - ranked[0]["gap"]
        ax.axvline(overall, color="k", ls="--", lw=1, label=f"all images {overall:.3f}")
        ax.legend(loc="lower right")
    else:
        _note(ax, "no slice is large enough (raise the test set or lower min_slice_size)")
    ax.set(title=f"{key} by slice: images whose references mention the word (95% CI)",
           xlabel=f"mean per-image {key}")
    return fig


def html_table(rows, max_rows: int = 50, digits: int = 3, index: str = ""):
    """An IPython HTML table from a list of dicts, a dict of dicts (keys become column `index`) or a flat dict."""
    from IPython.display import HTML

    if isinstance(rows, dict):
        if rows and all(isinstance(v, dict) for v in rows.values()):
            rows = [{index: k, **v} for k, v in rows.items()]
        else:
            rows = [{"key": k, "value": v} for k, v in rows.items()]
    rows = list(rows)
    columns = list(dict.fromkeys(c for r in rows for c in r))

    def cell(v):
        if isinstance(v, float):
            v = f"{v:.{digits}f}" if math.isfinite(v) else str(v)
        elif v is None:
            v = "n/a"
        elif isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(r.get(c)) for c in columns) + "</tr>" for r in rows[:max_rows])
    more = f"<p>... {len(rows) - max_rows} more rows</p>" if len(rows) > max_rows else ""
    if not rows:
        return HTML("<p><i>(no rows)</i></p>")
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}")


def plot_seed_spread(comparison: dict) -> Figure:
    """Each training seed's score with its bootstrap 95% CI, and the mean ± sd band across seeds, per metric."""
    keys = list(comparison["metrics"])
    fig = Figure(figsize=(max(6, 2.2 * len(keys)), 3.2), layout="constrained")
    axes = fig.subplots(1, max(1, len(keys)), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        m = comparison["metrics"][key]
        seeds = list(m["seeds"])
        values = [m["seeds"][s]["value"] for s in seeds]
        err = np.array([[_err(v, m["seeds"][s], side) for v, s in zip(values, seeds)] for side in ("low", "high")])
        ax.axhspan(m["mean"] - m["sd"], m["mean"] + m["sd"], color="tab:orange", alpha=0.2, lw=0)
        ax.axhline(m["mean"], color="tab:orange", lw=1)
        ax.errorbar(range(len(seeds)), values, yerr=err, fmt="o", capsize=4, color=MODEL_COLOURS["fine-tuned"])
        ax.set_xticks(range(len(seeds)), [str(s) for s in seeds])
        ax.set_xlim(-0.5, len(seeds) - 0.5)
        ax.set(title=key.replace("_", "-"), xlabel="seed")
    if not keys:
        _note(axes[0], "no metric was scored for every seed")
    fig.text(0.01, -0.02, "Whiskers: bootstrap 95% CI over test images (one trained model). "
             "Band: mean ± sd across training seeds.", fontsize=8, va="top", color="0.3")
    return fig
