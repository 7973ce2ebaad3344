"""`blipnb serve MODEL_DIR --port P`: caption images over HTTP with dynamic batching (LitServe), through the runtime
an export deploys behind handler.py and code/inference.py (blipnb.runtime), so the server, the hosts and the tests
run one implementation.

    POST /predict  JSON {"inputs": "<base64 image>", "parameters": {...}}, or the image itself as the body
                   (Content-Type image/jpeg, image/png, ...; decoding parameters in the query string)
                   -> [{"generated_text": "..."}]
    GET  /health   200 "ok" once the model is loaded

Each request is checked where it arrives (RequestGate, in the HTTP process): bad input is answered at once with a
4xx and a JSON {"error": ...}, and never joins a batch. LitServe gathers up to --max-batch-size good requests,
waiting at most --batch-timeout seconds; requests with different decoding settings go to separate generate calls
(Captioner.caption groups them). Every request is logged to stderr: method, path, status, latency.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import time
from pathlib import Path
import litserve as ls
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from .runtime import hosts
from .runtime.captioner import Captioner, group_by_decoding
from .runtime.decoding import Decoding
from .runtime.hosts import BadRequest, parameters_from_query, request_decoding

PROG = "blipnb serve"
PREDICT_PATH = "/predict"


def build_parser() -> argparse.ArgumentParser:
    """The options of `blipnb serve`."""
    p = argparse.ArgumentParser(prog=PROG, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Caption images over HTTP with dynamic batching: POST /predict (JSON "
                                "with a base64 image, or the image as the body), GET /health.")
    p.add_argument("model_dir", help="an exported model folder, e.g. runs/sample/model")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1", "0.0.0.0", "::"),
                   help="127.0.0.1 answers this machine only; 0.0.0.0 or :: every interface")
    p.add_argument("--max-batch-size", type=int, default=16, help="requests captioned together (1: no batching)")
    p.add_argument("--batch-timeout", type=float, default=0.01,
                   help="seconds a batch waits to fill before it runs with what it has")
    p.add_argument("--max-upload-mb", type=float, default=hosts.MAX_UPLOAD_BYTES / 2**20,
                   help="largest request body, in MiB (413 above)")
    p.add_argument("--max-image-pixels", type=int, default=hosts.MAX_IMAGE_PIXELS,
                   help="largest image (width x height, read from its header before decoding; 413 above)")
    p.add_argument("--workers", type=int, default=1, help="model copies (inference processes) per device")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: torch's)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda if there is one")
    p.add_argument("--request-timeout", type=float, default=60.0,
                   help="seconds a request may wait for the model before a 504")
    return p


class RequestGate:
    """ASGI middleware in the HTTP process: checks each prediction request completely (size, content type, JSON,
    image, parameters) before it is queued, rewrites a good one as {"inputs": base64, "parameters": checked} for
    CaptionAPI, answers a bad one with its 4xx, and logs every request to stderr."""

    def __init__(self, app, *, model_dir: str, max_bytes: int, max_pixels: int, path: str = PREDICT_PATH):
        self.app, self.path, self.max_bytes, self.max_pixels = app, path, max_bytes, max_pixels
        self.decoding = Decoding.load(model_dir)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 0

        async def logged_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["path"] == self.path and scope["method"] == "POST":
                await self._predict(scope, receive, logged_send)
            else:
                await self.app(scope, receive, logged_send)
        finally:
            print(f"{PROG}: {scope['method']} {scope['path']} {status} {1000 * (time.perf_counter() - start):.1f} ms",
                  file=sys.stderr, flush=True)

    async def _predict(self, scope, receive, send):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(receive)
            payload = await run_in_threadpool(self.check, body, headers.get("content-type"), scope["query_string"])
        except BadRequest as e:
            response = JSONResponse({"error": str(e)}, status_code=e.status)
            return await response(scope, receive, send)
        data = json.dumps(payload).encode()
        kept = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-type", b"content-length")]
        rewritten = kept + [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": data, "more_body": False}

        await self.app({**scope, "headers": rewritten}, replay, send)

    async def _read_body(self, receive) -> bytes:
        """The whole body; past the limit the rest is read and dropped, so the client hears the 413 rather than a
        reset connection (a client sending far more than that is cut off)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            size += len(message.get("body", b""))
            if size <= self.max_bytes:
                chunks.append(message.get("body", b""))
            if not message.get("more_body") or size > 4 * self.max_bytes + 2**20:
                break
        if size > self.max_bytes:
            raise BadRequest(f"the request body is over the limit of {self.max_bytes} bytes", 413)
        return b"".join(chunks)

    def check(self, body: bytes, content_type: str | None, query: bytes) -> dict:
        """The request as CaptionAPI reads it, or BadRequest; images are decoded here once to be checked."""
        _, params, batched = hosts.read_body(body, content_type, self.max_bytes, self.max_pixels)
        if batched:
            raise BadRequest("send one image per request: the server batches requests itself", 422)
        if (content_type or "").split(";")[0].strip().lower() == "application/json":
            if query:
                raise BadRequest("a JSON request sends its decoding parameters in 'parameters', not the query "
                                 "string", 422)
            image = json.loads(body)["inputs"]
        else:
            image = base64.b64encode(body).decode("ascii")
            params = parameters_from_query(query)
        request_decoding(self.decoding, params)  # names, types, ranges; e.g. min_new_tokens over the run's max
        return {"inputs": image, "parameters": params}


class CaptionAPI(ls.LitAPI):
    """The inference worker: a Captioner over the model folder; predict captions a batch of checked requests."""

    def __init__(self, model_dir: str, max_bytes: int, max_pixels: int, threads: int | None = None, **kwargs):
        super().__init__(api_path=PREDICT_PATH, **kwargs)
        self.model_dir, self.max_bytes, self.max_pixels, self.threads = model_dir, max_bytes, max_pixels, threads

    def setup(self, device):
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        self.captioner = Captioner(self.model_dir, device=device)

    def decode_request(self, request):
        try:
            images, params, _ = hosts.read_payload(request, self.max_bytes, self.max_pixels)
            return images[0], request_decoding(self.captioner.decoding, params)
        except BadRequest as e:  # RequestGate lets none through; if one came, it is answered alone
            return e

    def predict(self, x):
        items = x if self.max_batch_size > 1 else [x]
        good = [i for i, item in enumerate(items) if not isinstance(item, BadRequest)]
        start, decodings = time.perf_counter(), [items[i][1] for i in good]
        captions = self.captioner.caption([items[i][0] for i in good], decodings) if good else []
        print(f"{PROG}: batch of {len(good)} in {len(group_by_decoding(decodings))} generate call(s), "
              f"{1000 * (time.perf_counter() - start):.1f} ms", file=sys.stderr, flush=True)
        out = list(items)
        for i, caption in zip(good, captions):
            out[i] = caption
        return out if self.max_batch_size > 1 else out[0]

    def encode_response(self, output):
        if isinstance(output, BadRequest):
            return JSONResponse({"error": str(output)}, status_code=output.status)
        return hosts.answer([output], batched=False)


def build_server(args) -> ls.LitServer:
    """A LitServer for parsed `blipnb serve` options."""
    max_bytes = int(args.max_upload_mb * 2**20)
    api = CaptionAPI(str(args.model_dir), max_bytes, args.max_image_pixels, args.threads,
                     max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    gate = (RequestGate, {"model_dir": str(args.model_dir), "max_bytes": max_bytes,
                          "max_pixels": args.max_image_pixels})
    return ls.LitServer(api, accelerator=args.device, workers_per_device=args.workers, timeout=args.request_timeout,
                        middlewares=[gate])


def main(argv: list[str] | None = None) -> int:
    """`blipnb serve ...`: runs until SIGINT or SIGTERM, then stops its worker processes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (Path(args.model_dir) / "config.json").is_file():
        parser.error(f"{args.model_dir!r} is not a model folder (it has no config.json); export one with notebook "
                     "02 or `blipnb train`, e.g. runs/sample/model")
    for name, low in (("max_batch_size", 1), ("workers", 1), ("max_image_pixels", 1)):
        if getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be at least {low}")
    if args.batch_timeout < 0 or args.max_upload_mb <= 0:
        parser.error("--batch-timeout must be >= 0 and --max-upload-mb > 0")
    server = build_server(args)

    main_pid = os.getpid()

    def stop(signum, frame):
        if os.getpid() != main_pid:  # a forked HTTP process, told to stop by LitServer: end quietly
            raise SystemExit(0)
        raise KeyboardInterrupt  # LitServer's graceful shutdown: workers and HTTP processes end with it

    signal.signal(signal.SIGTERM, stop)
    print(f"{PROG}: {args.model_dir} on http://{args.host}:{args.port}{PREDICT_PATH} (max batch "
          f"{args.max_batch_size}, batch timeout {args.batch_timeout} s); /health answers once the model is loaded",
          file=sys.stderr, flush=True)
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
