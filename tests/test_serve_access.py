"""`blipnb serve` beyond this machine: an API key (good, missing, wrong; /health open), refusing a non-loopback host
without one, and a bounded queue that answers a burst's excess with 503 + Retry-After while the rest is captioned
as if sent alone, the server staying healthy and its memory flat."""
from __future__ import annotations

import base64
import json
import signal
import subprocess
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from test_serve import jpeg, start_server, tiny_export

from blipnb import serve
from blipnb.config import GenerationConfig

KEY = "s3cret-key-for-tests"
MAX_QUEUE = 2


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with a key and a queue of MAX_QUEUE; a batch of 2 waits up to 1 s to fill, so a burst finds the queue
    full. Stopped with SIGTERM at the end."""
    root = tmp_path_factory.mktemp("guarded")
    model_dir = tiny_export(root, GenerationConfig(num_beams=1, max_new_tokens=8))
    proc, url, log = start_server(model_dir, ["--max-batch-size", "2", "--batch-timeout", "1.0", "--max-queue",
                                              str(MAX_QUEUE), "--threads", "1"], root, {serve.KEY_ENV: KEY})
    yield {"url": url, "proc": proc, "log": log}
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def ask(url, image: bytes, headers: dict) -> tuple[int, object, dict]:
    body = json.dumps({"inputs": base64.b64encode(image).decode()}).encode()
    req = urllib.request.Request(f"{url}/predict", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read()), r.headers  # case-insensitive lookups
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


BEARER = {"Authorization": f"Bearer {KEY}"}


def test_serve_key_good_missing_and_wrong(guarded):
    url, image = guarded["url"], jpeg((200, 30, 30))
    status, body, _ = ask(url, image, BEARER)
    assert status == 200 and list(body[0]) == ["generated_text"]
    assert ask(url, image, {"X-API-Key": KEY})[:2] == (200, body)  # the other header
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": KEY[:-1]}, {"Authorization": KEY}):
        status, answer, sent = ask(url, image, headers)
        assert status == 401 and "API key" in answer["error"] and sent.get("WWW-Authenticate") == "Bearer", headers
        assert KEY not in json.dumps(answer)
    assert KEY not in guarded["log"].read_text()  # never logged


def test_serve_key_is_required_off_loopback_unless_no_auth(tmp_path, capsys, monkeypatch):
    (tmp_path / "config.json").write_text("{}")  # a model folder to the parser; nothing is loaded or bound
    monkeypatch.delenv(serve.KEY_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        serve.main([str(tmp_path), "--host", "0.0.0.0"])
    assert stop.value.code == 2
    said = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(said) == 1 and "--api-key" in said[0] and "--no-auth" in said[0]
    parser = serve.build_parser()
    args = parser.parse_args([str(tmp_path), "--host", "0.0.0.0", "--no-auth"])
    assert serve.check_access(args, parser) is None and "WARNING" in capsys.readouterr().err
    args = parser.parse_args([str(tmp_path), "--host", "0.0.0.0", "--api-key", KEY])
    assert serve.check_access(args, parser) == KEY and KEY not in capsys.readouterr().err
    args = parser.parse_args([str(tmp_path)])  # loopback: the key stays optional
    assert serve.check_access(args, parser) is None


def test_serve_queue_default_follows_the_batch_size():
    parser = serve.build_parser()
    assert serve.max_queue(parser.parse_args(["m", "--max-batch-size", "16"])) == serve.QUEUE_PER_BATCH * 16
    assert serve.max_queue(parser.parse_args(["m", "--max-batch-size", "8", "--workers", "2"])) == 4 * 8 * 2
    assert serve.max_queue(parser.parse_args(["m", "--max-queue", "5"])) == 5


def server_memory(proc) -> int:
    """Resident memory of the server and its processes, in bytes."""
    procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    return sum(p.memory_info().rss for p in procs if p.is_running())


def test_serve_queue_answers_a_burst_with_503_past_the_bound(guarded):
    url = guarded["url"]
    images = [jpeg((40 * i % 256, 90, 200 - 20 * i)) for i in range(12)]
    alone = [ask(url, image, BEARER) for image in images]
    assert all(status == 200 for status, _, _ in alone)
    before = server_memory(guarded["proc"])
    for _ in range(3):
        with ThreadPoolExecutor(len(images)) as pool:
            burst = list(pool.map(lambda image: ask(url, image, BEARER), images))
        served = [i for i, (status, _, _) in enumerate(burst) if status == 200]
        shed = [i for i, (status, _, _) in enumerate(burst) if status == 503]
        assert sorted(served + shed) == list(range(len(images)))  # nothing else: every request answered
        assert shed and len(served) >= MAX_QUEUE, [b[0] for b in burst]
        assert all(burst[i][1] == alone[i][1] for i in served)  # the same caption as the request sent alone
        for i in shed:
            assert burst[i][2].get("Retry-After") == str(serve.RETRY_AFTER_S) and "busy" in burst[i][1]["error"]
    assert urllib.request.urlopen(f"{url}/health", timeout=5).status == 200
    assert ask(url, images[0], BEARER)[:2] == alone[0][:2]  # and it still serves
    assert server_memory(guarded["proc"]) - before < 100 * 2**20  # flat: no queue growing behind the 503s
