"""Every figure builds from small synthetic inputs, with the expected panels, bars and images, and edge cases."""
from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, Features, Sequence, Value
from datasets import Image as ImageFeature
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from PIL import Image

from blipnb.notebook import viz
from blipnb.schema import NGRAM_KEYS


def bars(ax) -> int:
    return sum(len(c) for c in ax.containers if isinstance(c, BarContainer))


def texts(fig) -> str:
    return " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))


LOG = [{"loss": 3.0, "step": 1}, {"loss": 2.5, "step": 2}, {"eval_loss": 2.6, "eval_cider": 0.2, "eval_bleu4": 0.05,
                                                             "step": 2}, {"loss": 2.0, "step": 3},
       {"eval_loss": 2.1, "eval_cider": 0.4, "eval_bleu4": 0.1, "step": 4}, {"train_loss": 2.4, "step": 4}]


def test_training_curves_plot_train_and_validation_series():
    fig = viz.plot_training_curves(LOG)
    assert isinstance(fig, Figure)
    loss, score, bleu = fig.axes  # BLEU-4 on a twin axis: a different scale from CIDEr
    assert [len(line.get_xdata()) for line in loss.lines] == [3, 2]
    assert list(score.lines[0].get_ydata()) == [0.2, 0.4] and list(bleu.lines[0].get_ydata()) == [0.05, 0.1]


def test_training_curves_without_eval_entries_say_so():
    fig = viz.plot_training_curves([h for h in LOG if "eval_loss" not in h])
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 1 and not fig.axes[1].lines
    assert "no validation scores" in texts(fig)
    assert len(viz.plot_training_curves([]).axes) == 2


def result(base: float, spice_reason: str | None = "disabled (do_spice=False)"):
    metrics = {k: base for k in NGRAM_KEYS}
    metrics["CIDEr"], metrics["sacreBLEU"] = base * 5, base * 100
    unavailable = {}
    if spice_reason:
        metrics["SPICE"], unavailable["SPICE"] = None, spice_reason
    ci = {k: {"value": v, "low": None if v is None else v * 0.9, "high": None if v is None else v * 1.1}
          for k, v in metrics.items()}
    return {"metrics": metrics, "unavailable": unavailable, "ci": ci}


METRICS = {"split": "test", "n_images": 10, "results": {"fine-tuned": result(0.3), "baseline": result(0.1)},
           "comparison": {k: {"a": 0.3, "b": 0.1, "diff": 0.2, "low": 0.1, "high": 0.3, "p_a_wins": 0.97}
                          for k in NGRAM_KEYS} | {"SPICE": {"a": None, "b": None, "diff": None, "low": None,
                                                             "high": None, "p_a_wins": None}}}


def test_metric_comparison_groups_bars_by_scale_and_names_null_metrics():
    fig = viz.plot_metric_comparison(METRICS)
    unit, cider, sacre = fig.axes
    assert (bars(unit), bars(cider), bars(sacre)) == (2 * 6, 2, 2)  # SPICE is null: left out
    assert "SPICE (disabled (do_spice=False))" in texts(fig)
    assert all(c.errorbar is not None for c in unit.containers if isinstance(c, BarContainer))


def test_metric_comparison_with_one_model_and_a_metric_null_for_one_model_only():
    one = {"results": {"fine-tuned": result(0.3, spice_reason=None)}}
    assert bars(viz.plot_metric_comparison(one).axes[0]) == 7
    mixed = {"results": {"fine-tuned": result(0.3, spice_reason=None), "baseline": result(0.1)}}
    assert bars(viz.plot_metric_comparison(mixed).axes[0]) == 7 + 6  # SPICE bar only for the fine-tuned model


def test_paired_differences_annotate_the_win_share():
    fig = viz.plot_paired_differences(METRICS["comparison"])
    assert len(fig.axes) == 3 and len(fig.axes[0].get_xticks()) == 6
    assert "P=0.97" in texts(fig) and "Not shown (null): SPICE" in texts(fig)


GRID = [{"num_beams": b, "length_penalty": lp, "max_new_tokens": t, "CIDEr": b + lp + t / 100, "Bleu_4": 0.1}
        for b in (1, 3) for lp in (0.8, 1.0, 1.2) for t in (12, 20)]


def test_sweep_heatmap_has_one_panel_per_value_of_the_third_key():
    fig = viz.plot_sweep_heatmap(GRID, "num_beams", "length_penalty", "CIDEr")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 and panels[0].images[0].get_array().shape == (3, 2)
    assert "max_new_tokens = 20" in texts(fig) and "4.4*" in texts(fig)  # the best cell is starred
    flat = viz.plot_sweep_heatmap([r for r in GRID if r["max_new_tokens"] == 12][:-1], "num_beams",
                                  "length_penalty", "CIDEr")
    only = [ax for ax in flat.axes if ax.images]
    assert len(only) == 1 and only[0].images[0].get_array().mask.sum() == 1  # the missing cell stays empty
    with pytest.raises(KeyError, match="METEOR"):
        viz.plot_sweep_heatmap(GRID, "num_beams", "length_penalty", "METEOR")


STATS = {"caption_words": {"train": [3, 4, 4, 5], "validation": [4, 6], "test": [2]},
         "top_words": [("a", 9), ("dog", 5), ("the", 4), ("grass", 2)],
         "image_sizes": {"train": [(64, 48), (32, 32)], "validation": [(64, 64)], "test": []},
         "aspects": {"train": [1.333, 1.0], "validation": [1.0], "test": []}}


def test_data_exploration_figures():
    lengths = viz.plot_caption_lengths(STATS)
    assert len(lengths.axes) == 3 and sum(p.get_height() for p in lengths.axes[0].patches) == 4
    all_words, content = viz.plot_top_words(STATS).axes
    assert bars(all_words) == 4 and bars(content) == 2  # "a" and "the" are stop words
    sizes, aspects = viz.plot_image_sizes(STATS).axes
    assert len(sizes.collections) == 2 and aspects.patches


@pytest.fixture()
def split(tmp_path):
    """Four images, one of them a broken file, in the canonical schema."""
    paths = [str(tmp_path / f"img{i}.png") for i in range(3)]
    for i, path in enumerate(paths):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    features = Features({"image": ImageFeature(), "image_id": Value("string"), "captions": Sequence(Value("string"))})
    return Dataset.from_dict({"image": [*paths, str(broken)], "image_id": ["i0", "i1", "i2", "bad"],
                              "captions": [[f"caption {i} one", f"caption {i} two", "third"] for i in range(4)]},
                             features=features)


def test_gallery_shows_images_with_captions_and_names_a_broken_file(split):
    with pytest.warns(UserWarning, match="broken.png"):
        fig = viz.plot_gallery(split, n=12, ncols=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4 and "caption 0 one" in texts(fig) and "third" not in texts(fig)
    assert "broken.png" in texts(fig)
    assert len([ax for ax in viz.plot_gallery(split.select([0, 1, 2]), n=2).axes if ax.images]) == 2


def test_scored_gallery_and_near_duplicates(split):
    rows = [{"image_id": "i2", "prediction": "a blob", "references": ["r1", "r2", "r3", "r4"], "scores": {"CIDEr": 0.5}},
            {"image_id": "i0", "prediction": "blobs", "references": ["r5"], "scores": {}}]
    fig = viz.plot_scored_gallery(rows, split, "worst")
    assert len([ax for ax in fig.axes if ax.images]) == 2
    assert "CIDEr 0.500" in texts(fig) and "CIDEr n/a" in texts(fig) and "r4" not in texts(fig)
    with pytest.raises(ValueError, match="nope"):
        viz.plot_scored_gallery([{**rows[0], "image_id": "nope"}], split, "worst")
    from datasets import DatasetDict

    pair = {"split_a": "train", "id_a": "i0", "split_b": "test", "id_b": "i1", "distance": 2}
    dups = viz.plot_near_duplicates([pair], DatasetDict(train=split, test=split))
    assert len([ax for ax in dups.axes if ax.images]) == 2 and "d=2" in texts(dups)
    assert "no near-duplicate" in texts(viz.plot_near_duplicates([], DatasetDict(train=split)))


ROWS = [{"image_id": str(i), "prediction": "a dog" if i % 2 else "a dog on grass",
         "references": ["a dog runs on the grass", "dog"], "scores": {"CIDEr": i / 10}} for i in range(10)]


def test_error_analysis_figures():
    dist = viz.plot_score_distribution(ROWS, baseline=[{**r, "scores": {"CIDEr": 0.0}} for r in ROWS])
    assert len(dist.axes[0].containers) == 2 and len(dist.axes[0].lines) == 2  # two histograms, two means
    scatter = viz.plot_length_scatter(ROWS)
    assert len(scatter.axes[0].collections[0].get_offsets()) == 10
    assert "y = x" in [line.get_label() for line in scatter.axes[0].lines]
    table = {"overused": [{"word": "grass", "difference": 0.1, "prediction_count": 5, "reference_count": 2}],
             "underused": [{"word": "runs", "difference": -0.5, "prediction_count": 0, "reference_count": 9},
                           {"word": "park", "difference": -0.2, "prediction_count": 0, "reference_count": 3}]}
    usage = viz.plot_word_usage(table)
    assert bars(usage.axes[0]) == 3 and usage.axes[0].get_yticklabels()[0].get_text() == "runs (0/9)"
    slices = [{"slice": w, "n": 20, "mean": m, "low": m - 0.1, "high": m + 0.1, "gap": m - 0.5, "examples": []}
              for w, m in (("dog", 0.2), ("cat", 0.9), ("bird", 0.5))]
    fig = viz.plot_slices(slices)
    assert bars(fig.axes[0]) == 3 and "dog (n=20)" in texts(fig) and "all images 0.500" in texts(fig)
    assert bars(viz.plot_slices(slices * 10, max_slices=6).axes[0]) == 6
    assert "no slice" in texts(viz.plot_slices([]))


def test_html_table_formats_escapes_and_accepts_dicts():
    html = viz.html_table([{"name": "<b>", "value": 0.123456, "missing": None}, {"name": "x", "extra": [1, 2]}]).data
    assert "&lt;b&gt;" in html and "0.123" in html and "n/a" in html and "1, 2" in html and "<th>extra</th>" in html
    nested = viz.html_table({"train": {"n": 3}, "test": {"n": 1}}).data
    assert "<td>train</td><td>3</td>" in nested
    assert "<td>vocab</td><td>12</td>" in viz.html_table({"vocab": 12}).data
    assert "2 more rows" in viz.html_table([{"a": i} for i in range(5)], max_rows=3).data


def test_one_axis_sweep_is_a_single_row():
    grid = [{"num_beams": b, "CIDEr": 0.5 + b / 10} for b in (1, 3, 5)]
    fig = viz.plot_sweep_heatmap(grid, "num_beams", None, "CIDEr")
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (1, 3) and [t.get_text() for t in fig.axes[0].texts][-1].endswith("*")


def test_figures_read_at_the_size_shown():
    """Defects it guards against: a legend over the bars, a title naming a metric not shown, a win share running into the
    border, a loss panel squashed by the first steps, half-word ticks on a word-count axis."""
    from matplotlib.ticker import MaxNLocator

    fig = viz.plot_metric_comparison(METRICS)
    unit = fig.axes[0]
    assert unit.get_legend() is None and len(fig.legends) == 1  # above the panels, not over a bar
    assert unit.get_title() == "BLEU-1..4, METEOR, ROUGE-L (0-1)"  # SPICE is null here: not in the title
    with_spice = {**METRICS, "results": {"fine-tuned": result(0.3, spice_reason=None)}}
    assert "SPICE" in viz.plot_metric_comparison(with_spice).axes[0].get_title()

    paired = viz.plot_paired_differences(METRICS["comparison"])
    labels = [t.get_text() for t in paired.axes[1].get_xticklabels()]
    assert labels == ["CIDEr\nP=0.97"] and not paired.axes[1].texts  # under the name, not beside the point

    loss = viz.plot_training_curves(LOG).axes[0]
    assert loss.get_yscale() == "log"
    assert viz.plot_training_curves([{"loss": 0.0, "step": 1}]).axes[0].get_yscale() == "linear"  # log needs > 0

    lengths = viz.plot_length_scatter(ROWS).axes[0]
    for axis in (lengths.xaxis, lengths.yaxis):
        assert isinstance(axis.get_major_locator(), MaxNLocator)
        assert all(float(t).is_integer() for t in axis.get_major_locator()())
