"""docs/results.md is generated from benchmarks/results/*.json: it is never stale, and every number on it comes from
one of those files. benchmarks/record_demo.py turns a finished run directory into such a file."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results.md"

# A number in the page's prose or tables: 1,342.0 / 0.848 / -0.120 / 16, not the 4 of p50 or H200 or a file name's
# digits. A difference keeps its sign, so it must match the file's value with that sign.
PAGE_NUMBER = re.compile(r"(?<![\w.,])(-?(?:\d{1,3}(?:,\d{3})+|\d+))(\.\d+)?(?!\w)")
ANY_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")  # with its sign, as the page shows it
CODE = re.compile(r"`[^`\n]*`")


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def json_numbers(folder: Path) -> tuple[list[float], set[str]]:
    """Every numeric value in the folder's JSON files, and every digit run written in them or in their names."""
    values, texts = [], set()

    def walk(x):
        if isinstance(x, bool):
            return
        if isinstance(x, (int, float)):
            values.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for path in folder.glob("*.json"):
        raw = path.read_text(encoding="utf-8")
        for found in (ANY_NUMBER.findall(path.name), ANY_NUMBER.findall(raw)):
            texts.update(found)
            texts.update(t.lstrip("-") for t in found)  # "0-100" holds 100 too
        walk(json.loads(raw))
    return values, texts


def unbacked_numbers(page: str, folder: Path) -> list[str]:
    """The numbers on `page` that no JSON file in `folder` holds (at the precision the page shows)."""
    values, texts = json_numbers(folder)
    missing = [tok for span in CODE.findall(page) for tok in ANY_NUMBER.findall(span) if tok not in texts]
    for m in PAGE_NUMBER.finditer(CODE.sub(" ", page)):
        token = m.group(1).replace(",", "") + (m.group(2) or "")
        if token in texts:
            continue
        decimals = len(m.group(2) or ".") - 1
        if decimals == 0:
            found = any(v == int(token) for v in values)
        else:
            found = any(f"{v:.{decimals}f}" == token for v in values)
        if not found:
            missing.append(m.group(0))
    return missing


def test_the_committed_page_is_what_the_script_writes():
    out = subprocess.run([sys.executable, "benchmarks/results_page.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr + "\n(run `python benchmarks/results_page.py` and commit docs/results.md)"


def test_every_number_on_the_page_comes_from_a_json_file():
    page = PAGE.read_text(encoding="utf-8")
    assert unbacked_numbers(page, RESULTS) == []
    for path in RESULTS.glob("*.json"):
        assert f"`{path.name}`" in page, f"{path.name} is not named on the page"


def test_the_check_catches_a_stale_page_and_a_number_without_a_file(tmp_path):
    page = tmp_path / "results.md"
    page.write_text(PAGE.read_text(encoding="utf-8").replace("Memory guide", "Memory guide, edited"))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/results_page.py"), "--check", "--out", str(page)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "results_page.py" in out.stderr
    assert unbacked_numbers("| batched req/s | 123.4 |\nratio **9.9×**", RESULTS) == ["123.4", "9.9"]


def fake_run(run_dir: Path, seed: int = 0) -> Path:
    """A finished run directory as the notebooks leave it, reduced to what record_demo reads."""
    (run_dir / "notebooks").mkdir(parents=True)
    ci = {"Bleu_4": {"value": 0.848 + seed / 1000, "low": 0.828, "high": 0.868},
          "CIDEr": {"value": 4.65, "low": 4.51, "high": 4.8}, "SPICE": None}
    result = {"metrics": {"Bleu_4": 0.848 + seed / 1000, "CIDEr": 4.65, "SPICE": None}, "ci": ci,
              "unavailable": {"SPICE": "Stanford CoreNLP jars missing"}, "n_images": 200,
              "refs_per_image": {"min": 5, "mean": 5.0, "max": 5}, "scale": "pycocoevalcap metrics on 0-1"}
    untrained = {**result, "metrics": {"Bleu_4": 0.0001, "CIDEr": 0.05, "SPICE": None}, "ci": {}}
    metrics = {"source": "sample", "split": "test", "n_images": 200, "split_hash": "abc",
               "decoding": {"num_beams": 3, "max_new_tokens": 30, "consensus_samples": 24, "temperature": 1.0,
                            "top_p": 0.9, "prompt": ""},
               "results": {"fine-tuned": result, "baseline": untrained},
               "human_ceiling": {**result, "metrics": {"Bleu_4": 0.703, "CIDEr": 3.91, "SPICE": None}, "ci": {}},
               "unavailable": {}, "provenance": {"versions": {"torch": "2.13.0+cpu", "python": "3.11.7"}}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    attributes = [{"images": "overall", "n_images": 200, "count": 0.985, "shape": 0.905, "colour": 1.0, "size": 1.0,
                   "position": 0.92 + seed / 100, "all": 0.8},
                  {"images": "hard", "n_images": 0, "count": None, "shape": None, "colour": None, "size": None,
                   "position": None, "all": None}]
    (run_dir / "error_analysis.json").write_text(json.dumps({"attributes": attributes}))
    (run_dir / "train_results.json").write_text(json.dumps({"train_seconds": 134.2}))
    for i, name in enumerate(("01_data_exploration", "02_finetune", "03_evaluate")):
        papermill = {"duration": 10.25 + i, "end_time": f"2026-12-0{i + 1}T08:28:18.975145+00:00"}
        (run_dir / "notebooks" / f"{name}.ipynb").write_text(json.dumps({"metadata": {"papermill": papermill}}))
    return run_dir


def test_record_demo_writes_the_run_and_its_seeds_and_the_page_shows_them(tmp_path):
    record_demo, results_page = script("record_demo"), script("results_page")
    runs = tmp_path / "runs"
    fake_run(runs / "sample")
    seeds = {"model": "fine-tuned", "seeds": [0, 1], "runs": {}, "metrics": {}}
    for s in (0, 1):
        seeds["runs"][str(s)] = str(fake_run(runs / f"sample-seed{s}", seed=s))
    seeds["metrics"]["Bleu_4"] = {"mean": 0.8485, "sd": 0.0007, "min": 0.848, "max": 0.849,
                                  "seeds": {"0": {"value": 0.848, "low": 0.83, "high": 0.866},
                                            "1": {"value": 0.849, "low": 0.831, "high": 0.867}}}
    (runs / "sample-seeds").mkdir()
    (runs / "sample-seeds" / "seeds.json").write_text(json.dumps(seeds))
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results, ignore=shutil.ignore_patterns("sample_demo_*"))  # only the one made here

    assert record_demo.main([str(runs / "sample"), "--machine", "testbox",
                             "--out", str(results / "sample_demo_testbox.json")]) == 0
    data = json.loads((results / "sample_demo_testbox.json").read_text())
    assert data["benchmark"] == "sample_demo" and data["command"] == "make demo"
    assert data["machine"]["cpu_count"] and data["machine"]["cpu_model"] and data["machine"]["torch"] == "2.13.0+cpu"
    assert data["models"]["fine-tuned"]["ci"]["Bleu_4"] == {"low": 0.828, "high": 0.868}
    assert data["timings"]["notebook_seconds"]["02_finetune"] == 11.2
    assert data["timings"]["train_seconds"] == 134.2 and data["run_date_utc"].startswith("2026-12-03")
    assert data["seeds"]["seeds"] == ["0", "1"] and data["seeds"]["attributes"]["1"]["position"] == 0.93

    page = results_page.render(results)
    demo = page.split("## The sample demo", 1)[1].split("\n## ", 1)[0]
    assert "`sample_demo_testbox.json`" in demo and "Command: `make demo`" in demo
    assert "| BLEU-4 | 0.848 [0.828, 0.868] | 0.000 | 0.703 |" in demo
    assert "| CIDEr | 4.65 [4.51, 4.80] |" in demo and "null: Stanford CoreNLP jars missing" in demo
    assert "| overall | 200 | 0.985 | 0.905 | 1.000 | 1.000 | 0.920 | 0.800 |" in demo
    assert "| BLEU-4 | 0.849 ± 0.001 | 0.848 [0.830, 0.866] | 0.849 [0.831, 0.867] |" in demo
    assert "| position (04) |  | 0.920 | 0.930 |" in demo
    assert "Not measured yet" not in demo
    assert unbacked_numbers(page, results) == []


def test_without_a_demo_file_the_page_says_how_to_measure_it(tmp_path):
    results_page = script("results_page")
    page = results_page.render(tmp_path)
    demo = page.split("## The sample demo", 1)[1].split("\n## ", 1)[0]
    assert "not measured yet: run `make demo` then `python benchmarks/record_demo.py runs/sample`" in demo.lower()
    assert page.count("Not measured yet") == 6  # demo, comparison, sweep, serving, memory, throughput: empty folder
