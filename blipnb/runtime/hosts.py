"""Requests in, captions out: what an exported model's hosts and `blipnb serve` read and answer.

- Hugging Face Inference Endpoints: `EndpointHandler(path)({"inputs": image, "parameters": {...}})`.
- SageMaker (Hugging Face and PyTorch inference toolkits): `model_fn`, `input_fn`, `predict_fn`, `output_fn`.

It never fetches a URL or opens a path a caller sends. Images arrive as bytes, base64 or PIL images; their pixel
count is read from the header and checked before decoding; decoding parameters are checked by name, type and
range. Bad input raises BadRequest, a ValueError whose `status` is the HTTP status a server answers with.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import parse_qsl

from PIL import Image

from .captioner import Captioner
from .decoding import Decoding, DecodingError, bounds
from .images import BadImageError, ImageTooLarge, check_pixels, to_rgb

MAX_UPLOAD_BYTES = 16 * 2**20  # the largest request body (an image, or JSON holding base64 images)
MAX_IMAGE_PIXELS = 50_000_000  # width x height, read from the header before decoding
MAX_IMAGES = 32  # images in one request
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image", "application/octet-stream")  # and any image/*
_URL = re.compile(r"^\s*([a-z][a-z0-9+.-]*://|www\.)", re.IGNORECASE)
_NO_URLS = "the server never fetches URLs; send the image bytes or base64"
_LABEL = "in the request"  # how messages name an image that came without a file name


class BadRequest(ValueError):
    """Input the endpoint refuses, with a one-sentence reason; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_image(data, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """An upright RGB image from bytes, a base64 string (or data: URL) or a PIL image; never from a URL or path."""
    if isinstance(data, Image.Image):
        source = data
    else:
        source = image_bytes(data, max_bytes)
    try:
        if isinstance(source, Image.Image):
            check_pixels(source, _LABEL, max_pixels)
        return to_rgb(source, _LABEL, max_pixels)
    except ImageTooLarge as e:
        raise BadRequest(str(e), 413) from None
    except BadImageError as e:
        hint = "; send JPEG, PNG, WebP, GIF, BMP or TIFF" if "cannot identify" in str(e) else ""
        raise BadRequest(f"{e}{hint}") from None


def image_bytes(data, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The encoded image in `data` (bytes or base64 text), checked for emptiness, size and URLs."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if _URL.match(raw[:64].decode("latin-1")):
            raise BadRequest(f"the body is a URL: {_NO_URLS}")
    elif isinstance(data, str):
        raw = _from_base64(data, max_bytes)
    elif data is None:
        raise BadRequest('no image: send the image bytes, or JSON {"inputs": "<base64 image>"}')
    else:
        raise BadRequest(f"an image must be bytes or a base64 string, not {type(data).__name__}")
    if not raw:
        raise BadRequest("the image is empty (0 bytes)")
    if len(raw) > max_bytes:
        raise BadRequest(f"the image is {len(raw)} bytes, over the limit of {max_bytes}", 413)
    return raw


def _from_base64(text: str, max_bytes: int) -> bytes:
    text = text.strip()
    if _URL.match(text):
        raise BadRequest(f"'inputs' is a URL: {_NO_URLS}")
    if text.startswith("data:"):  # a data URL carries the bytes itself
        head, _, text = text.partition(",")
        if not head.endswith(";base64"):
            raise BadRequest("a data: URL must be base64-encoded (data:image/jpeg;base64,...)")
    text = "".join(text.split())  # `base64` wraps its output at 76 columns
    if len(text) > (max_bytes + 2) // 3 * 4:
        raise BadRequest(f"the base64 image is over the limit of {max_bytes} bytes", 413)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'inputs' is neither an image nor valid base64: send the image bytes or base64") from None


def request_decoding(base: Decoding, params) -> Decoding:
    """The decoding a request asks for: `base` (the model's stored decoding) with its checked `parameters` on top;
    BadRequest (422) naming what is wrong."""
    if params is None:
        return base
    if not isinstance(params, dict):
        raise BadRequest(f"'parameters' must be an object of decoding settings, not {type(params).__name__}", 422)
    try:
        return base.merged(**params)
    except DecodingError as e:
        raise BadRequest(f"parameter {e}", 422) from None


def parameters_from_query(query: bytes | str) -> dict:
    """Decoding parameters from a query string (?num_beams=3&do_sample=false), typed as Decoding's fields say;
    unknown names pass through for request_decoding to name."""
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    kinds = {name: kind for name, (kind, _, _) in bounds().items()}
    out = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        kind = kinds.get(name, str)
        try:
            if kind is bool:
                out[name] = {"true": True, "1": True, "false": False, "0": False}[value.strip().lower()]
            else:
                out[name] = kind(value)
        except (KeyError, ValueError):
            expected = "true or false" if kind is bool else kind.__name__
            raise BadRequest(f"parameter {name!r} must be {expected}, got {value!r}", 422) from None
    return out


def read_payload(payload, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_IMAGE_PIXELS):
    """(images, parameters, batched) from {"inputs": image or list of images, "parameters": {...}}."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise BadRequest('expected a JSON object {"inputs": "<base64 image>", "parameters": {...}}')
    extra = sorted(set(payload) - {"inputs", "parameters"})
    if extra:
        raise BadRequest(f"unknown field(s) {extra}: send only 'inputs' and 'parameters'", 422)
    inputs = payload["inputs"]
    batched = isinstance(inputs, list)
    items = inputs if batched else [inputs]
    if not items:
        raise BadRequest("'inputs' is an empty list")
    if len(items) > MAX_IMAGES:
        raise BadRequest(f"{len(items)} images in one request, over the limit of {MAX_IMAGES}", 413)
    params = payload.get("parameters")
    request_decoding(Decoding(), params)  # names, types and ranges, before any image is decoded
    return [decode_image(x, max_bytes, max_pixels) for x in items], params or {}, batched


def read_body(body, content_type: str | None, max_bytes: int = MAX_UPLOAD_BYTES,
              max_pixels: int = MAX_IMAGE_PIXELS):
    """(images, parameters, batched) from a request body: an image, or JSON as read_payload reads it."""
    kind = (content_type or "").split(";")[0].strip().lower()
    body = body.encode() if isinstance(body, str) else body
    if not body:
        raise BadRequest('the request body is empty: send an image, or JSON {"inputs": "<base64 image>"}')
    if len(body) > max_bytes:
        raise BadRequest(f"the request body is {len(body)} bytes, over the limit of {max_bytes}", 413)
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError) as e:
            raise BadRequest(f"the body is not valid JSON ({e})") from None
        return read_payload(payload, max_bytes, max_pixels)
    if kind in IMAGE_TYPES or kind.startswith("image/"):
        return [decode_image(body, max_bytes, max_pixels)], {}, False
    raise BadRequest(f"unsupported Content-Type {content_type!r}: send image/jpeg, image/png, application/x-image "
                     "or application/json", 415)


def answer(captions: list[str], batched: bool) -> list:
    """The Inference Endpoints answer: [{"generated_text": ...}] per image (a list of those for a list input)."""
    out = [[{"generated_text": c}] for c in captions]
    return out if batched else out[0]


class EndpointHandler:
    """Hugging Face Inference Endpoints: EndpointHandler(path)({"inputs": image, "parameters": {...}})."""

    def __init__(self, path: str = ""):
        self.captioner = Captioner(path or ".")

    def __call__(self, data: dict) -> list:
        images, params, batched = read_payload(data)
        decoding = request_decoding(self.captioner.decoding, params)
        return answer(self.captioner.caption(images, [decoding] * len(images)), batched)


def model_fn(model_dir):
    return Captioner(model_dir)


def input_fn(input_data, content_type):
    images, params, batched = read_body(input_data, content_type)
    return {"images": images, "parameters": params, "batched": batched}


def predict_fn(data, model):
    decoding = request_decoding(model.decoding, data["parameters"])
    return {"captions": model.caption(data["images"], [decoding] * len(data["images"])), "batched": data["batched"]}


def output_fn(prediction, accept):
    kind = (accept or "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", "*/*"):
        raise BadRequest(f"can only answer application/json, not {accept!r}", 406)
    return json.dumps(answer(prediction["captions"], prediction["batched"]))
