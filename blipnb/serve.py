"""`blipnb serve MODEL_DIR --port P`: caption images over HTTP with dynamic batching (LitServe), through the runtime
an export deploys behind handler.py and code/inference.py (blipnb.runtime), so the server, the hosts and the tests
run one implementation.

    POST /predict  JSON {"inputs": "<base64 image>", "parameters": {...}}, or the image itself as the body
                   (Content-Type image/jpeg, image/png, ...; decoding parameters in the query string)
                   -> [{"generated_text": "..."}]
    GET  /health   200 "ok" once the model is loaded

Each request is checked where it arrives (RequestGate, in the HTTP process): without the API key it is answered
401, past --max-queue requests waiting 503 with Retry-After, bad input at once with a 4xx and a JSON {"error": ...};
none of those joins a batch. /health is open. LitServe gathers up to --max-batch-size good requests,
waiting at most --batch-timeout seconds; requests with different decoding settings go to separate generate calls
(Captioner.caption groups them). Every request is logged to stderr: method, path, status, latency.
"""
from __future__ import annotations

import argparse
import base64
import hmac
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
HEALTH_PATH = "/health"
KEY_ENV = "BLIPNB_API_KEY"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
QUEUE_PER_BATCH = 4  # the default --max-queue: this many full batches per worker may wait
RETRY_AFTER_S = 1


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
    p.add_argument("--api-key", default=None,
                   help=f"the key every request but /health must send (Authorization: Bearer KEY, or X-API-Key: KEY); "
                        f"default: ${KEY_ENV}. Needed off loopback unless --no-auth")
    p.add_argument("--no-auth", action="store_true",
                   help="serve on a non-loopback --host without a key (anyone who reaches the port can use the model)")
    p.add_argument("--max-queue", type=int, default=None,
                   help=f"requests accepted and not yet answered, at most; past it 503 with Retry-After (default: "
                        f"{QUEUE_PER_BATCH} x --max-batch-size x --workers)")
    return p


def check_access(args, parser) -> str | None:
    """The API key to require (None: none), or a parser error in one line: off loopback a key is required unless
    --no-auth is given, and then a warning is printed."""
    key = args.api_key if args.api_key is not None else os.environ.get(KEY_ENV) or None
    if key is not None and not key.strip():
        parser.error(f"--api-key (or ${KEY_ENV}) is empty")
    if key is None and args.host not in LOOPBACK and not args.no_auth:
        parser.error(f"--host {args.host} serves every interface: set a key with --api-key or ${KEY_ENV} (requests "
                     "then send Authorization: Bearer KEY), or pass --no-auth to serve without one")
    if key is None and args.host not in LOOPBACK:
        print(f"{PROG}: WARNING: --no-auth on {args.host}: anyone who reaches port {args.port} can use the model",
              file=sys.stderr, flush=True)
    return key


class RequestGate:
    """ASGI middleware in the HTTP process: checks each prediction request completely (size, content type, JSON,
    image, parameters) before it is queued, rewrites a good one as {"inputs": base64, "parameters": checked} for
    CaptionAPI, answers a bad one with its 4xx, and logs every request to stderr."""

    def __init__(self, app, *, model_dir: str, max_bytes: int, max_pixels: int, path: str = PREDICT_PATH,
                 api_key: str | None = None, max_queue: int | None = None):
        self.app, self.path, self.max_bytes, self.max_pixels = app, path, max_bytes, max_pixels
        self.decoding = Decoding.load(model_dir)
        self.key = api_key.encode() if api_key else None
        self.max_queue, self.waiting = max_queue, 0  # accepted predictions not yet answered (one event loop)

    def authorised(self, scope) -> bool:
        """Whether the request carries the key (constant-time comparison); always, when no key is set."""
        if self.key is None:
            return True
        headers = dict(scope["headers"])
        bearer = headers.get(b"authorization", b"")
        sent = bearer[7:].strip() if bearer[:7].lower() == b"bearer " else headers.get(b"x-api-key", b"")
        return hmac.compare_digest(sent, self.key)

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
            if scope["path"] != HEALTH_PATH and not self.authorised(scope):
                await JSONResponse({"error": "this server needs an API key: send the header Authorization: Bearer "
                                             "<key> (or X-API-Key: <key>)"}, status_code=401,
                                   headers={"WWW-Authenticate": "Bearer"})(scope, receive, logged_send)
            elif scope["path"] == self.path and scope["method"] == "POST":
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
        except BadRequest as e:
            return await JSONResponse({"error": str(e)}, status_code=e.status)(scope, receive, send)
        if self.max_queue is not None and self.waiting >= self.max_queue:
            return await JSONResponse(
                {"error": f"the server is busy: {self.waiting} requests are waiting (--max-queue {self.max_queue}); "
                          f"retry after {RETRY_AFTER_S} s"},
                status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})(scope, receive, send)
        self.waiting += 1  # a place in the queue from here until the answer is sent: what --max-queue bounds
        try:
            try:
                payload = await run_in_threadpool(self.check, body, headers.get("content-type"),
                                                  scope["query_string"])
            except BadRequest as e:
                return await JSONResponse({"error": str(e)}, status_code=e.status)(scope, receive, send)
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
        finally:
            self.waiting -= 1

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


def max_queue(args) -> int:
    """--max-queue, or its default from the batch size and the workers."""
    return args.max_queue if args.max_queue is not None else QUEUE_PER_BATCH * args.max_batch_size * args.workers


def build_server(args, api_key: str | None = None) -> ls.LitServer:
    """A LitServer for parsed `blipnb serve` options, requiring `api_key` when one is given."""
    max_bytes = int(args.max_upload_mb * 2**20)
    api = CaptionAPI(str(args.model_dir), max_bytes, args.max_image_pixels, args.threads,
                     max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout)
    gate = (RequestGate, {"model_dir": str(args.model_dir), "max_bytes": max_bytes,
                          "max_pixels": args.max_image_pixels, "api_key": api_key, "max_queue": max_queue(args)})
    return ls.LitServer(api, accelerator=args.device, workers_per_device=args.workers, timeout=args.request_timeout,
                        middlewares=[gate])


def main(argv: list[str] | None = None) -> int:
    """`blipnb serve ...`: runs until SIGINT or SIGTERM, then stops its worker processes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (Path(args.model_dir) / "config.json").is_file():
        parser.error(f"{args.model_dir!r} is not a model folder (it has no config.json); export one with notebook "
                     "02 or `blipnb train`, e.g. runs/sample/model")
    for name, low in (("max_batch_size", 1), ("workers", 1), ("max_image_pixels", 1), ("max_queue", 1)):
        if getattr(args, name) is not None and getattr(args, name) < low:
            parser.error(f"--{name.replace('_', '-')} must be at least {low}")
    if args.batch_timeout < 0 or args.max_upload_mb <= 0:
        parser.error("--batch-timeout must be >= 0 and --max-upload-mb > 0")
    api_key = check_access(args, parser)
    server = build_server(args, api_key)

    main_pid = os.getpid()

    def stop(signum, frame):
        if os.getpid() != main_pid:  # a forked HTTP process, told to stop by LitServer: end quietly
            raise SystemExit(0)
        raise KeyboardInterrupt  # LitServer's graceful shutdown: workers and HTTP processes end with it

    signal.signal(signal.SIGTERM, stop)
    print(f"{PROG}: {args.model_dir} on http://{args.host}:{args.port}{PREDICT_PATH} (max batch "
          f"{args.max_batch_size}, batch timeout {args.batch_timeout} s, at most {max_queue(args)} waiting; API key "
          f"{'required' if api_key else 'off'}); {HEALTH_PATH} answers once the model is loaded",
          file=sys.stderr, flush=True)
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
