"""The suite in a real browser, as a person uses it: `blipnb lab` (what `make lab` runs) prepares the five notebooks
with the smoke preset and starts JupyterLab with a token; Debian's chromium, driven by npm's playwright-core, opens
the printed URL and runs 01 to 05 in order with Run All, then works 04's and 05's widgets the way a person would:
04's slider, order, sort and filter; 05's three decoding modes, Caption, the image picker and two uploads through the
file chooser. `drive.mjs` writes what it saw to report.json beside its screenshots, and the tests below assert on
that.

Needs `node`, `chromium` (Debian's, at /usr/bin/chromium or $BLIPNB_CHROMIUM) and `npm ci --prefix tests/browser`.
Without them the suite is skipped with one line saying what is missing; under BLIPNB_REQUIRE_BROWSER=1 (CI) the
skip is a failure. Screenshots go to $BLIPNB_ARTIFACTS/browser, else tests/browser/screenshots/ (git-ignored).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

from blipnb import runs
from blipnb.config import DataConfig
from blipnb.data import load_captions
from blipnb.notebook import HEADLESS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMOKE = ROOT / "notebooks" / "params" / "smoke.yaml"
CHROMIUM = os.environ.get("BLIPNB_CHROMIUM", "/usr/bin/chromium")
WIDE = (128, 64)  # the uploaded test image: 2:1, so a stretched or squeezed drawing shows in its aspect ratio
ASPECT_TOLERANCE = 0.02
DRIVE_TIMEOUT_S = 540

pytestmark = pytest.mark.browser


def missing_tools() -> list[str]:
    """What the browser suite needs and this machine lacks, each with how to get it."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node (apt-get install nodejs npm)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium, or set BLIPNB_CHROMIUM)")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        missing.append("playwright-core (npm ci --prefix tests/browser)")
    if shutil.which("jupyter-lab", path=str(Path(sys.executable).parent)) is None:
        missing.append("jupyterlab (pip install -e '.[notebooks]')")
    return missing


def artifacts_dir() -> Path:
    base = os.environ.get("BLIPNB_ARTIFACTS")
    return Path(base) / "browser" if base else HERE / "screenshots"


MISSING = missing_tools()
REQUIRED = os.environ.get("BLIPNB_REQUIRE_BROWSER") == "1"
if MISSING and not REQUIRED:  # one line for the whole module in make test's -rs summary
    pytest.skip("browser suite skipped: missing " + "; ".join(MISSING), allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """`blipnb lab -f smoke --no-browser` on a fresh run directory and a free loopback port, as `make lab` starts it;
    yields the URL it prints (with its token). Stopped with its kernels at the end."""
    if MISSING:  # and BLIPNB_REQUIRE_BROWSER=1: every test of the suite fails, naming what is missing
        pytest.fail("browser suite cannot run, and BLIPNB_REQUIRE_BROWSER=1 makes that a failure: missing "
                    + "; ".join(MISSING), pytrace=False)
    port, home = _free_port(), tmp_path_factory.mktemp("jupyter")
    run_dir = tmp_path_factory.mktemp("lab") / "run"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop(HEADLESS, None)  # the kernels must behave as under a person's JupyterLab
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" toast over the page
    # What the driver needs of the page (window.jupyterapp), and no update check: settings, not blipnb lab's defaults.
    (home / "config").mkdir()
    (home / "config" / "jupyter_lab_config.json").write_text(json.dumps({"LabApp": {
        "expose_app_in_browser": True, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}))
    log_path = home / "lab.log"
    log = open(log_path, "w")
    server = subprocess.Popen([sys.executable, "-m", "blipnb.cli", "lab", "-f", str(SMOKE), "--out", str(run_dir),
                               "--no-browser", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, url = time.time() + 180, None
        while True:
            found = [line.split("open ", 1)[1] for line in log_path.read_text().splitlines()
                     if line.startswith("blipnb lab: open ")]
            url = url or (found[0] if found else None)
            try:
                if url:
                    origin, token = url.split("/lab/")[0], url.split("token=")[1]
                    with urllib.request.urlopen(f"{origin}/api/status?token={token}", timeout=2):
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise AssertionError(f"blipnb lab did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        assert (run_dir / runs.NOTEBOOKS_DIR / "02_finetune.ipynb").is_file()
        yield url, run_dir
    finally:
        # Its own process group holds blipnb lab, JupyterLab and the kernels it started: stop them all.
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(server.pid, sig)
                server.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


@pytest.fixture(scope="module")
def report(lab, tmp_path_factory, pytestconfig) -> dict:
    """Run drive.mjs against the lab; its report.json (and screenshots) in artifacts_dir()."""
    out = artifacts_dir()
    shutil.rmtree(out, ignore_errors=True)
    files = tmp_path_factory.mktemp("uploads")
    wide = files / "wide.png"
    image = Image.new("RGB", WIDE, "white")
    ImageDraw.Draw(image).ellipse((WIDE[0] // 2 - 28, 4, WIDE[0] // 2 + 28, 60), fill="red")  # a circle: stays round
    image.save(wide)
    (files / "notes.txt").write_text("these are notes, not a picture\n")
    proc = subprocess.run(["node", str(HERE / "drive.mjs"), lab[0], ".", str(out), str(wide),
                           str(files / "notes.txt")], cwd=HERE, capture_output=True, text=True,
                          timeout=DRIVE_TIMEOUT_S, env={**os.environ, "BLIPNB_CHROMIUM": CHROMIUM})
    path = out / "report.json"
    assert proc.returncode == 0 and path.exists(), (
        f"drive.mjs failed (rc {proc.returncode}); screenshots in {out}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(path.read_text())
    # One line in the log (past -q and output capture) saying the suite really ran, and where its pictures are.
    runs_s = ", ".join(f"{nb} {seen.get('runSeconds', 0):.0f} s" for nb, seen in data["notebooks"].items())
    with pytestconfig.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        pytestconfig.pluginmanager.get_plugin("terminalreporter").write_line(
            f"\ntests/browser: ran {runs_s} in {data.get('browser', 'chromium')}; screenshots in {out}")
    return data


def _steps(report: dict, nb: str) -> dict[str, dict]:
    return {s["step"]: s for s in report["notebooks"][nb]["steps"]}


@pytest.mark.parametrize("nb", ["01", "02", "03", "04", "05"])
def test_notebook_runs_in_the_browser_without_errors(report, nb):
    seen = report["notebooks"][nb]
    assert seen["ranAll"] and seen["unexecuted"] == 0 and not seen["cellErrors"], seen
    assert seen["widgetErrors"] == 0, "a widget showed 'Error displaying widget'"
    assert not report["pageErrors"], report["pageErrors"]
    # Expected warnings (tied weights, PTBTokenizer's progress) are silenced at their source: no red stderr block.
    assert not seen["stderr"], seen["stderr"]


def test_images_keep_their_aspect_ratio(report):
    drawn = [(nb, s["step"], im) for nb in ("04", "05") for s in report["notebooks"][nb]["steps"]
             for im in s["images"] if im["visible"]]
    assert len(drawn) >= 10, drawn
    for nb, step, im in drawn:
        (nw, nh), (bw, bh) = im["natural"], im["box"]
        assert nw > 0 and nh > 0, f"{nb} {step}: a broken image is shown"
        assert abs((bw / bh) / (nw / nh) - 1) <= ASPECT_TOLERANCE, f"{nb} {step}: {nw}x{nh} drawn at {bw}x{bh}"
    uploaded = [im for im in _steps(report, "05")["uploaded"]["images"] if im["visible"]]
    assert [im["natural"] for im in uploaded] == [list(WIDE)]


def test_04_controls_change_the_row_and_no_match_says_so(report):
    steps = _steps(report, "04")
    for step, previous in (("slider", "initial"), ("order", "slider"), ("filter", "sort"),
                           ("no_match", "filter"), ("filter_cleared", "no_match")):
        assert steps[step]["text"] != steps[previous]["text"], f"04: {step} did not change what is shown"
    assert "1 of" in steps["filter"]["text"] and steps["filter"]["word"] in steps["filter"]["text"].lower()
    no_match = steps["no_match"]
    assert not [im for im in no_match["images"] if im["visible"]], "04 shows an image (or a broken one) for no match"
    assert any("No prediction or reference contains" in m for m in no_match["messages"]), no_match["messages"]


def test_05_captions_follow_the_image(report):
    steps = _steps(report, "05")
    assert len(steps["initial"]["panels"]) == 2 and all(not p["captions"] for p in steps["initial"]["panels"])
    for mode, n in (("greedy", 1), ("beam", 1), ("sampling", 3)):
        assert [len(p["captions"]) for p in steps[mode]["panels"]] == [n, n], (mode, steps[mode]["panels"])
        assert mode in steps[mode]["status"]
    assert steps["sampling"]["panels"] != steps["greedy"]["panels"]
    # A new image clears the previous image's captions until Caption is pressed again.
    for step in ("picked", "uploaded"):
        assert all(not p["captions"] for p in steps[step]["panels"]), (step, steps[step]["panels"])
    assert steps["picked"]["images"][0]["src"] != steps["sampling"]["images"][0]["src"]
    for step in ("picked_captioned", "uploaded_captioned"):
        assert all(p["captions"] for p in steps[step]["panels"]), (step, steps[step]["panels"])
    assert steps["uploaded"]["picker"] == "wide.png" and "wide.png" in steps["uploaded_captioned"]["status"]


def test_05_a_non_image_upload_is_one_sentence_and_keeps_the_image(report):
    steps = _steps(report, "05")
    status = steps["bad_upload"]["status"]
    assert "notes.txt is not an image" in status and "BytesIO" not in status and "<" not in status, status
    assert status.count(". ") == 0 and status.count(":") <= 1, status
    assert steps["bad_upload"]["picker"] == "wide.png"
    assert steps["bad_upload"]["images"] == steps["uploaded_captioned"]["images"]  # still wide.png, as named
    assert steps["bad_upload"]["panels"] == steps["uploaded_captioned"]["panels"]


def test_labels_and_table_captions_are_not_clipped(report):
    for nb in ("04", "05"):
        assert not report["notebooks"][nb]["clippedLabels"], (nb, report["notebooks"][nb]["clippedLabels"])
    table = report["notebooks"]["05"]["table"]
    assert table, "05's greedy/beam/sampling table was not found"
    assert not [cell for cell in table if cell.rstrip().endswith("...")], table


def test_04_correction_is_recorded_and_01_applies_it(report, lab, tmp_path):
    import papermill

    steps = _steps(report, "04")
    assert "recorded for" in " ".join(steps["dropped"]["messages"]), steps["dropped"]["messages"]
    path = lab[1] / runs.CORRECTIONS
    (line,) = runs.read_jsonl(path)
    assert line["drop"] is True and line["reference"] == 0
    assert line["old"] in steps["filter_cleared"]["text"]
    run = tmp_path / "corrected"
    papermill.execute_notebook(str(ROOT / "notebooks" / "01_data_exploration.ipynb"), str(tmp_path / "01.ipynb"),
                               parameters={"preset": "smoke", "run_dir": str(run), "corrections": str(path)},
                               kernel_name="python3", progress_bar=False, cwd=str(ROOT))
    counts = runs.read_json(run / runs.DATA_SUMMARY)["corrections"]
    assert (counts["references_dropped"], counts["references_edited"], counts["images_changed"]) == (1, 0, 1)
    smoke = yaml.safe_load(SMOKE.read_text())
    data = {k: v for k, v in smoke.items() if k in {f.name for f in dataclasses.fields(DataConfig)}}
    before = dict(zip(*_ids_and_refs(load_captions(DataConfig(**data))["test"])))
    after = dict(zip(*_ids_and_refs(load_captions(DataConfig(**data, corrections=str(path)))["test"])))
    image = line["image_id"]
    assert after[image] == before[image][1:] and before[image][0] == line["old"]


def _ids_and_refs(split):
    return split["image_id"], split["captions"]
