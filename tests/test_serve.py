"""`blipnb serve` as a user runs it: a subprocess on a free loopback port, good and bad requests, a concurrent burst
with mixed decoding settings (each answer equal to the same request sent alone), then a clean stop."""
import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from PIL import Image

from blipnb.config import GenerationConfig, ModelConfig
from blipnb.model.deploy import write_endpoint

CAPTIONS = ["a large red circle in the top left", "there is a small blue square at the bottom right",
            "two shapes: a green triangle and a purple circle"] * 20
MAX_UPLOAD_MB = 0.5
MAX_PIXELS = 1_000_000


def jpeg(color, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, options: list[str], root, env: dict | None = None):
    """`blipnb serve model_dir --port P *options` on a free loopback port, logging to root/serve.log; returns
    (process, url, log) once /health answers 200 (which needs no key)."""
    port, log = free_port(), root / "serve.log"
    cmd = [sys.executable, "-m", "blipnb.cli", "serve", str(model_dir), "--port", str(port), *options]
    with open(log, "a") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, f"blipnb serve exited:\n{log_text(log)[-4000:]}"
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                return proc, url, log
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"/health never answered 200:\n{log_text(log)[-4000:]}")


def tiny_export(root, decoding: GenerationConfig):
    """An untrained tiny BLIP exported to root/model with `decoding` stored as its own."""
    from blipnb.model.tiny import build_tiny_blip

    model_dir = build_tiny_blip(CAPTIONS, root / "model", ModelConfig(from_scratch=True, image_size=32, vocab_size=100,
                                                                      hidden_size=64, num_layers=1, num_heads=2))
    write_endpoint(model_dir, decoding)
    return model_dir


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`blipnb serve` on an untrained tiny BLIP; stopped with SIGTERM at the end, which must end every process."""
    root = tmp_path_factory.mktemp("serve")
    model_dir = tiny_export(root, GenerationConfig(num_beams=1, max_new_tokens=8))
    proc, url, log = start_server(model_dir, ["--max-batch-size", "8", "--batch-timeout", "0.05", "--max-upload-mb",
                                              str(MAX_UPLOAD_MB), "--max-image-pixels", str(MAX_PIXELS), "--threads",
                                              "1"], root)
    children = psutil.Process(proc.pid).children(recursive=True)
    yield {"url": url, "proc": proc, "log": log, "model_dir": model_dir}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"blipnb serve did not stop on SIGTERM:\n{log_text(log)[-4000:]}")
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"processes left running after the server stopped: {alive}"


def log_text(log) -> str:
    return log.read_text()


def post(url, body: bytes, content_type: str, query: str = "") -> tuple[int, object]:
    req = urllib.request.Request(f"{url}/predict{'?' + query if query else ''}", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post_json(url, image: bytes, parameters=None) -> tuple[int, object]:
    payload = {"inputs": base64.b64encode(image).decode()}
    if parameters is not None:
        payload["parameters"] = parameters
    return post(url, json.dumps(payload).encode(), "application/json")


def test_good_json_and_raw_image_requests(server):
    from blipnb.runtime.captioner import Captioner
    from blipnb.runtime.decoding import NAMED
    from blipnb.runtime.hosts import decode_image, request_decoding

    url, image = server["url"], jpeg((200, 30, 30))
    status, body = post_json(url, image)
    assert status == 200 and isinstance(body, list) and list(body[0]) == ["generated_text"]
    assert post(url, image, "image/jpeg") == (200, body)  # the same image as the raw body: the same caption
    local = Captioner(server["model_dir"], device="cpu")  # what handler.py answers for it
    assert body[0]["generated_text"] == local.caption([decode_image(image)], [local.decoding])[0]
    asked = request_decoding(local.decoding, {"num_beams": 3, "max_new_tokens": 4})
    beam = local.caption([decode_image(image)], [asked])[0]
    assert post(url, image, "image/jpeg", "num_beams=3&max_new_tokens=4") == (200, [{"generated_text": beam}])
    assert post_json(url, image, {"num_beams": 3, "max_new_tokens": 4}) == (200, [{"generated_text": beam}])
    # The BLIP paper's decoding with num_beams 5 on top: five beams, the paper's lengths.
    five = request_decoding(local.decoding, {**NAMED["blip_paper"], "num_beams": 5})
    assert (five.num_beams, five.max_new_tokens, five.length_counts_prompt) == (5, 20, True)
    expected = local.caption([decode_image(image)], [five])[0]
    assert post_json(url, image, {**NAMED["blip_paper"], "num_beams": 5}) == (200, [{"generated_text": expected}])


B64 = base64.b64encode(jpeg((5, 5, 5))).decode()


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (2000, 2000)).save(buf, "PNG")  # 4 megapixels in a few hundred bytes
    return buf.getvalue()


BAD = {
    "non-image bytes": (lambda url: post(url, b"this is not an image", "image/jpeg"), 400, "not an image"),
    "empty body": (lambda url: post(url, b"", "image/png"), 400, "empty"),
    "decompression bomb": (lambda url: post(url, _bomb(), "image/png"), 413, "pixels"),
    "oversized upload": (lambda url: post(url, b"\xff" * int(MAX_UPLOAD_MB * 2**20 + 1), "image/jpeg"), 413,
                         "over the limit"),
    "num_beams 0": (lambda url: post(url, jpeg((1, 2, 3)), "image/jpeg", "num_beams=0"), 422, "num_beams"),
    "num_beams 1000": (lambda url: post_json(url, jpeg((1, 2, 3)), {"num_beams": 1000}), 422, "between 1 and 16"),
    "unknown parameter": (lambda url: post_json(url, jpeg((1, 2, 3)), {"beam": 2}), 422, "did you mean"),
    "mistyped query value": (lambda url: post(url, jpeg((1, 2, 3)), "image/jpeg", "max_new_tokens=ten"), 422,
                             "must be int"),
    "URL": (lambda url: post(url, json.dumps({"inputs": "http://127.0.0.1:1/x.jpg"}).encode(), "application/json"),
            400, "never fetches URLs"),
    "invalid JSON": (lambda url: post(url, b'{"inputs": ', "application/json"), 400, "not valid JSON"),
    "unsupported type": (lambda url: post(url, jpeg((1, 2, 3)), "text/plain"), 415, "Content-Type"),
    "several images": (lambda url: post(url, json.dumps({"inputs": [B64, B64]}).encode(), "application/json"), 422,
                       "one image per request"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_request_gets_a_4xx_with_a_reason(server, case):
    call, status, words = BAD[case]
    got, body = call(server["url"])
    assert got == status and words in body["error"], (got, body)
    assert server["proc"].poll() is None


def test_the_server_keeps_serving_after_bad_requests_and_logs_them(server):
    assert post(server["url"], jpeg((9, 9, 9)), "image/jpeg")[0] == 200
    lines = log_text(server["log"]).splitlines()
    assert any(line.startswith("blipnb serve: POST /predict 413 ") for line in lines)
    assert any(line.startswith("blipnb serve: POST /predict 200 ") and line.endswith(" ms") for line in lines)


def test_a_concurrent_burst_with_mixed_decoding_matches_single_requests(server):
    url = server["url"]
    images = [jpeg(c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0))]
    settings = [{}, {"num_beams": 2}, {"max_new_tokens": 3}, {"num_beams": 2, "max_new_tokens": 5}]
    alone = {(i, s): post_json(url, images[i], settings[s]) for i in range(4) for s in range(4)}
    assert all(status == 200 for status, _ in alone.values())
    jobs = [(i % 4, (i // 4) % 4) for i in range(32)]  # every (image, settings) pair twice, interleaved

    def send(job):
        i, s = job
        return post_json(url, images[i], settings[s]) if (i + s) % 2 else \
            post(url, images[i], "image/jpeg", "&".join(f"{k}={v}" for k, v in settings[s].items()))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, jobs))
    assert [a for a in answers] == [alone[job] for job in jobs]
    batches = [line for line in log_text(server["log"]).splitlines() if line.startswith("blipnb serve: batch of ")]
    assert max(int(line.split()[4]) for line in batches) > 1, "no two requests were ever batched"
