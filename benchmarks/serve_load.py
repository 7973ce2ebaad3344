"""Load test of `blipnb serve`: N concurrent clients for T seconds on loopback, dynamic batching against
--max-batch-size 1 in the same run; throughput, p50/p99 latency, failures, and the server's memory over the run.

    python benchmarks/serve_load.py --out benchmarks/results/serve_load_cpu.json          # sample model, CPU
    python benchmarks/serve_load.py --model runs/sample/model --clients 16 --seconds 30    # a trained export
    python benchmarks/serve_load.py --blip-base --device cuda --out x.json                 # BLIP base, random init

Without --model it exports an untrained BLIP with the sample preset's architecture and decoding (beam 3, up to 30
tokens; untrained, every caption runs all 30), or BLIP base's (BlipConfig(), 384 px) with --blip-base. Each server
is started here, warmed up, measured, and stopped; every request is a JPEG body (client threads keep one
connection each). Bounded: at most --max-requests per server and --seconds of load, to 127.0.0.1 only.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from common import Results, add_repo_to_path, parser

add_repo_to_path()
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "notebooks" / "params" / "sample.yaml"


def build_model(out: Path, blip_base: bool) -> Path:
    """An untrained export (model, processor, endpoint files) with the sample's architecture, or BLIP base's."""
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil, BlipProcessor

    from blipnb.model.deploy import write_endpoint
    from blipnb.model.tiny import build_tiny_blip, train_tokenizer
    from blipnb.presets import load_preset

    cfg = load_preset(SAMPLE, run_dir=str(out))
    # The sample's words, for the tokenizer (the weights are random anyway); no `datasets`, absent on the GPU image.
    captions = [f"a {size} {colour} {shape} in the {place}" for size in ("small", "large")
                for colour in ("red", "green", "blue", "yellow") for shape in ("circle", "square", "triangle")
                for place in ("top left", "top right", "bottom left", "bottom right")]
    if not blip_base:
        path = build_tiny_blip(captions, out / "model", cfg.model, seed=0)
    else:
        tok = train_tokenizer(captions, 200)
        ids = {t: tok.convert_tokens_to_ids(t) for t in ("[DEC]", "[SEP]", "[PAD]")}
        config = BlipConfig(text_config=dict(bos_token_id=ids["[DEC]"], sep_token_id=ids["[SEP]"],
                                             eos_token_id=ids["[SEP]"], pad_token_id=ids["[PAD]"]))
        torch.manual_seed(0)
        path = out / "model"
        BlipForConditionalGeneration(config).save_pretrained(path)
        size = config.vision_config.image_size
        BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": size, "width": size}),
                      tokenizer=tok).save_pretrained(path)
    write_endpoint(path, cfg.generation)
    return path


def test_images(n: int = 16) -> list[bytes]:
    """JPEG bodies: the sample's coloured shapes, 320x240 as a photo would arrive (the server resizes them)."""
    from PIL import Image, ImageDraw

    out = []
    for i in range(n):
        image = Image.new("RGB", (320, 240), (255, 255, 255))
        ImageDraw.Draw(image).ellipse((20 + 10 * i, 30, 140 + 10 * i, 150), fill=(40 * i % 255, 90, 200))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children (the server's HTTP, manager and model processes)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


class Server:
    """`blipnb serve` in a subprocess on a free loopback port."""

    def __init__(self, model: Path, max_batch_size: int, batch_timeout: float, threads: int | None, device: str,
                 log: Path, max_queue: int | None = None):
        self.port = free_port()
        cmd = [sys.executable, "-m", "blipnb.serve", str(model), "--port", str(self.port), "--max-batch-size",
               str(max_batch_size), "--batch-timeout", str(batch_timeout), "--device", device]
        if max_queue:
            cmd += ["--max-queue", str(max_queue)]
        if threads:
            cmd += ["--threads", str(threads)]
        self.log = log
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # blipnb from this checkout
        with open(log, "a") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path})

    def wait_healthy(self, timeout: float = 300) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"blipnb serve exited: {self.log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"/health never answered 200 in {timeout} s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def load(port: int, images: list[bytes], clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` threads, each on its own keep-alive connection, send JPEGs until `seconds` pass or
    `max_requests` were sent; returns latencies of the successes, the failures, and how many were shed (503, after
    which the client waits Retry-After seconds, as clients and load balancers do)."""
    lock = threading.Lock()
    sent, shed = [0], [0]
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.perf_counter() + seconds

    def client(k: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = k
        while time.perf_counter() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    return
                sent[0] += 1
            start = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=images[i % len(images)], headers={"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                body = r.read()
                if r.status == 503:  # the queue is full: not a failure; back off as asked
                    with lock:
                        shed[0] += 1
                    time.sleep(min(float(r.getheader("Retry-After") or 1), max(0.0, deadline - time.perf_counter())))
                    i += clients
                    continue
                ok = r.status == 200 and json.loads(body)[0]["generated_text"] is not None
            except Exception as e:  # a failed request is counted, not fatal
                ok, body = False, repr(e).encode()
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    failures.append(body[:200].decode("utf-8", "replace"))
            i += clients

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall_s": time.perf_counter() - start, "latencies": latencies, "failures": failures, "shed": shed[0]}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def measure(name: str, model: Path, args, max_batch_size: int, images: list[bytes], log: Path) -> dict:
    server = Server(model, max_batch_size, args.batch_timeout, args.threads, args.device, log, args.max_queue)
    try:
        startup = server.wait_healthy()
        load(server.port, images, args.clients, 60, 2 * args.clients)  # warm-up: first calls, allocator, caches
        rss_start = tree_rss_mb(server.proc.pid)
        peak, timeline = [rss_start], [round(rss_start, 1)]
        stop = threading.Event()

        def sample():
            ticks = 0
            while not stop.wait(0.25):
                rss = tree_rss_mb(server.proc.pid)
                peak[0], ticks = max(peak[0], rss), ticks + 1
                if ticks % 4 == 0:
                    timeline.append(round(rss, 1))

        sampler = threading.Thread(target=sample)
        sampler.start()
        run = load(server.port, images, args.clients, args.seconds, args.max_requests)
        stop.set()
        sampler.join()
        rss_end = tree_rss_mb(server.proc.pid)
    finally:
        exit_code = server.stop()
    lat = run["latencies"]
    n_ok, n_failed = len(lat), len(run["failures"])
    return {"name": name, "max_batch_size": max_batch_size, "batch_timeout_s": args.batch_timeout,
            "max_queue": args.max_queue or 4 * max_batch_size,  # blipnb serve's default: 4 batches per worker
            "clients": args.clients, "requests_ok": n_ok, "requests_failed": n_failed,
            "requests_shed": run["shed"], "shed_share": run["shed"] / max(1, n_ok + n_failed + run["shed"]),
            "failure_examples": run["failures"][:3], "wall_s": round(run["wall_s"], 2),
            "throughput_rps": n_ok / run["wall_s"], "p50_ms": 1000 * percentile(lat, 50) if lat else None,
            "p99_ms": 1000 * percentile(lat, 99) if lat else None, "max_ms": 1000 * max(lat) if lat else None,
            "startup_s": round(startup, 1), "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
            "rss_peak_mb": round(peak[0], 1), "rss_growth_mb": round(rss_end - rss_start, 1),
            "rss_every_s_mb": timeline,
            "server_exit_code": exit_code, "batch_sizes_seen": batch_sizes(log),
            "load_average_1min_end": round(os.getloadavg()[0], 2)}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="an exported model folder (default: build one)")
    p.add_argument("--blip-base", action="store_true", help="without --model: BLIP base's architecture, random init")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=30.0, help="load per server (after a warm-up)")
    p.add_argument("--max-requests", type=int, default=5000, help="requests per server, at most")
    p.add_argument("--max-batch-size", type=int, default=16, help="the batched server's (the other one's is 1)")
    p.add_argument("--batch-timeout", type=float, default=0.01)
    p.add_argument("--max-queue", type=int, default=None, help="the servers' --max-queue (default: theirs, 4 batches)")
    args = p.parse_args()
    gpu = args.device == "cuda" or (args.device is None and torch.cuda.is_available() and not args.tiny)
    args.device = "cuda" if gpu else "cpu"
    if not gpu and args.threads is None:
        args.threads = 1  # the model's process; the HTTP process and the clients share the other cores
    tmp = tempfile.TemporaryDirectory(prefix="serve_load_")
    model = args.model or build_model(Path(tmp.name), args.blip_base)
    what = str(args.model) if args.model else ("BLIP base (BlipConfig(), random init)" if args.blip_base
                                                 else "sample architecture (untrained)")
    results = Results("serve_load", args, torch.device(args.device), model=what,
                      decoding=json.loads((model / "decoding_defaults.json").read_text()),
                      server_threads=args.threads, load_average_1min_start=round(os.getloadavg()[0], 2))
    images = test_images()
    rows = {}
    for name, mbs in (("batched", args.max_batch_size), ("unbatched", 1)):
        rows[name] = measure(name, model, args, mbs, images, Path(tmp.name) / f"serve_{name}.log")
        results.add(rows[name])
    unbatched = rows["unbatched"]["throughput_rps"]
    results.data["ratio_batched_to_unbatched"] = rows["batched"]["throughput_rps"] / unbatched if unbatched else None
    results.save()
    print(json.dumps({"ratio_batched_to_unbatched": results.data["ratio_batched_to_unbatched"]}))


def batch_sizes(log: Path) -> dict[str, int]:
    """How many batches of each size the server ran (its per-batch log lines; warm-up included)."""
    sizes = [int(line.split()[4]) for line in log.read_text().splitlines() if line.startswith("blipnb serve: batch of")]
    return {str(b): sizes.count(b) for b in sorted(set(sizes))}


if __name__ == "__main__":
    main()
