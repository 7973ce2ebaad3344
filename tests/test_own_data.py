"""Every kind of data a user brings, through all five notebooks with their checks, read back from the run directory.

Each source runs the notebooks' own cells in-process (tests/inprocess.py) on the smoke preset: a one-caption CSV
folder, a JSONL folder mixing caption counts, formats and modes, a COCO captions file, and the hub sources from
local fixtures of their schema (images stored as bytes, not files). Their splits are small on purpose: 1 to 3
validation and test images, where a bootstrap or a gallery has little to work with.
"""
import shutil

import pytest
from data_sources import (
    make_caption_rows_parquet,
    make_coco_json,
    make_flickr8k_parquet,
    make_karpathy,
    make_mixed_folder,
    make_one_caption_folder,
)
from inprocess import run_suite

from blipnb import runs
from blipnb.schema import CAPTIONS, HUMAN_CEILING, METRIC_KEYS, SPLITS
from blipnb.scoring.ceiling import NO_CEILING


def one_caption_csv(root):
    return {"source": "folder", "data_dir": str(make_one_caption_folder(root / "mine"))}


def mixed_jsonl(root):
    return {"source": "folder", "data_dir": str(make_mixed_folder(root / "mixed"))}


def coco_json(root):
    return {"source": "coco_json", "annotations": str(make_coco_json(root, n=12)), "data_dir": str(root / "imgs")}


def flickr8k_hub(root):
    return {"source": "flickr8k", "hub_id": str(make_flickr8k_parquet(root / "hub"))}


def flickr8k_rows_hub(root):  # 20 images grouped from 100 rows, a seeded 90/5/5 split: 1 validation, 1 test image
    return {"source": "flickr8k_rows", "hub_id": str(make_caption_rows_parquet(root / "hub", n_images=20))}


def coco_karpathy(root):
    coco_root, ann = make_karpathy(root)
    return {"source": "coco_karpathy", "data_dir": str(coco_root), "annotations": str(ann)}


SOURCES = [one_caption_csv, mixed_jsonl, coco_json, flickr8k_hub, flickr8k_rows_hub, coco_karpathy]


@pytest.fixture(params=SOURCES, ids=lambda f: f.__name__)
def own_run(request, tmp_path, no_java):
    """(source kind, its run directory, the split sizes and captions per test image) after 01 -> 05. Scored without
    Java (its fallbacks, which say so), within the test budget: the notebooks' cells are the same either way, and
    the notebooks run with Java under nbval."""
    kind = request.param.__name__
    data = request.param(tmp_path / "data")
    namespaces = run_suite(tmp_path / "run", **data)
    ds = namespaces["03_evaluate"]["ds"]
    return kind, runs.RunDir(tmp_path / "run"), ds


def test_own_data_runs_every_notebook_and_each_wrote_what_the_next_reads(own_run):
    kind, run, ds = own_run
    sizes = {s: len(ds[s]) for s in SPLITS}
    assert runs.read_json(run / runs.DATA_SUMMARY)["sizes"] == sizes
    assert (run / runs.MODEL_DIR / "model.safetensors").is_file()
    metrics = runs.read_json(run / runs.METRICS)
    test_refs = ds["test"][CAPTIONS]
    assert metrics["n_images"] == len(test_refs) <= 3
    for result in metrics["results"].values():
        assert set(result["metrics"]) == set(METRIC_KEYS)
        assert result["refs_per_image"]["min"] == min(map(len, test_refs))
        assert any("image(s) scored" in w for w in result["sanity"])  # too few images for the intervals
    several = sum(len(r) >= 2 for r in test_refs)
    if several:
        assert metrics[HUMAN_CEILING]["n_images"] == several and metrics[HUMAN_CEILING]["of_images"] == len(test_refs)
    else:
        assert metrics[HUMAN_CEILING] is None and metrics["unavailable"][HUMAN_CEILING] == NO_CEILING
    single = sum(map(len, test_refs)) / len(test_refs) < 2
    assert single == any("not comparable with published" in w for w in metrics["results"]["fine-tuned"]["sanity"])
    card = (run / runs.MODEL_DIR / runs.MODEL_CARD).read_text()
    assert f"{metrics['n_images']} images" in card
    tables = runs.read_json(run / runs.ERROR_ANALYSIS)
    assert tables["n_images"] == len(test_refs) and tables["attributes"] is None  # not the sample
    assert all(run.figure(f).is_file() for f in ("gallery.png", "training_curves.png", "metric_comparison.png",
                                                  "worst.png"))
    captions = run / "captions.csv"
    on_disk = kind in ("one_caption_csv", "mixed_jsonl", "coco_json", "coco_karpathy")
    assert captions.is_file() == on_disk  # hub images are bytes in parquet: no folder to caption
    if on_disk:
        assert len(captions.read_text().splitlines()) > len(test_refs)


def test_one_caption_folder_reads_as_a_user_wrote_it(tmp_path):
    """The CSV of the README's "Your own folder", comma inside a quoted caption included."""
    from data_sources import folder_cfg

    from blipnb.data import load_captions
    ds = load_captions(folder_cfg(make_one_caption_folder(tmp_path)))
    assert {len(c) for s in SPLITS for c in ds[s][CAPTIONS]} == {1}
    assert ds["train"][0][CAPTIONS][0].endswith(", seen from afar")


def test_03_and_04_compare_a_run_with_another_on_the_same_images(tmp_path, no_java):
    """compare_with in 03 and compare_run in 04: the starting model's predictions, kept as a run of their own, set
    against the fine-tuned ones on the same images."""
    from inprocess import SMOKE, run_notebook

    from blipnb.evaluation.compare import comparison_report

    data = mixed_jsonl(tmp_path / "data")
    run_suite(tmp_path / "run", **data)
    run = runs.RunDir(tmp_path / "run")
    other = runs.RunDir(tmp_path / "starting_model").ensure()
    shutil.copy(run / runs.METRICS, other / runs.METRICS)
    shutil.copy(run / runs.BASELINE_PREDICTIONS, other / runs.PREDICTIONS)
    parameters = {**SMOKE, **data, "run_dir": str(run.path)}
    run_notebook("03_evaluate", {**parameters, "compare_with": str(other.path)})
    comparison = runs.read_json(run / runs.COMPARISON_DIR / runs.COMPARISON)
    assert [r for r in comparison["runs"]] == ["run", "starting_model"]
    assert "starting_model" in comparison_report(comparison) and run.figure("run_comparison.png").is_file()
    namespace = run_notebook("04_error_analysis", {**parameters, "compare_run": str(other.path)})
    shown = namespace["disagree"]
    assert shown and all(r["compared"]["label"] == "starting_model" for r in shown)
    gaps = [abs(r["scores"]["CIDEr"] - r["compared"]["score"]) for r in shown]
    assert gaps == sorted(gaps, reverse=True) and run.figure("disagreements.png").is_file()
