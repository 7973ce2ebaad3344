"""Caption images with an exported captioner, standing alone. blipnb's export copies this file, byte for byte, as
`handler.py` (Hugging Face Inference Endpoints: EndpointHandler) and `code/inference.py` (SageMaker: model_fn,
input_fn, predict_fn, output_fn); `blipnb serve` imports it. It imports only the standard library, torch,
transformers, Pillow and numpy (which transformers needs), so it runs where blipnb is not installed.

Over 300 lines on purpose: a host loads one file, so everything a deployed captioner needs (image checks,
parameter checks, batching, both hosts' entry points) lives in it.

It never fetches a URL or opens a path a caller sends. Images arrive as bytes, base64 or PIL images; their pixel
count is read from the header and checked before decoding; decoding parameters are checked by name, type and range.
Bad input raises BadRequest, a ValueError whose `status` is the HTTP status a server answers with.

Because it must stand alone, three small things are copies of blipnb's; tests/test_endpoint.py holds each equal to
its original: `to_rgb` (blipnb.data.images.to_rgb, less the file handling), `generate_kwargs`
(config.GenerationConfig.generate_kwargs) and FALLBACK_DECODING (GenerationConfig's defaults, used where a model
folder has no DECODING_FILE). blipnb's own captioning (blipnb.model.generation) calls `generate_captions` here.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import difflib
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import BlipForConditionalGeneration, BlipProcessor, LogitsProcessor, LogitsProcessorList

DECODING_FILE = "decoding_defaults.json"  # the run's decoding settings, written next to the model by blipnb's export
MAX_UPLOAD_BYTES = 16 * 2**20  # the largest request body (an image, or JSON holding base64 images)
MAX_IMAGE_PIXELS = 50_000_000  # width x height, read from the header before decoding (as DataConfig's default)
MAX_IMAGES = 32  # images in one request
# What a request may set, as (type, lowest, highest); for prompt, its length. Bounds cap what one request costs.
PARAMETERS = {
    "max_new_tokens": (int, 1, 128), "min_new_tokens": (int, 0, 128), "length_counts_prompt": (bool, None, None),
    "num_beams": (int, 1, 16), "length_penalty": (float, -10.0, 10.0), "early_stopping": (bool, None, None),
    "do_sample": (bool, None, None), "top_p": (float, 0.01, 1.0), "temperature": (float, 0.01, 10.0),
    "prompt": (str, 0, 200), "consensus_samples": (int, 0, 64),
}
FALLBACK_DECODING = {"max_new_tokens": 30, "min_new_tokens": 0, "length_counts_prompt": False, "num_beams": 5,
                     "length_penalty": 1.0, "early_stopping": True, "do_sample": False, "top_p": 0.9,
                     "temperature": 1.0, "prompt": "", "consensus_samples": 0}
IMAGE_TYPES = ("image/jpeg", "image/png", "application/x-image", "application/octet-stream")  # and any image/*
CONSENSUS_SEED = 0  # consensus decoding's draws are a function of this, the image and the draw's index
# SplitMix64's constants as signed int64 (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
_GOLDEN, _MIX_A, _MIX_B = -7046029254386353131, -4658895280553007687, -7723592293110705685
_CONSENSUS_WORD = re.compile(r"\w+|[^\w\s]")
_URL = re.compile(r"^\s*([a-z][a-z0-9+.-]*://|www\.)", re.IGNORECASE)
_NO_URLS = "the server never fetches URLs; send the image bytes or base64"


class BadRequest(ValueError):
    """Input the endpoint refuses, with a one-sentence reason; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_image(data, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """An upright RGB image from bytes, a base64 string (or data: URL) or a PIL image; never from a URL or path."""
    if isinstance(data, Image.Image):
        check_pixels(data.size, max_pixels)
        image = data
    else:
        image = _open(image_bytes(data, max_bytes), max_pixels)
    try:
        return to_rgb(image)
    except Exception as e:  # a damaged EXIF block or palette
        raise BadRequest(f"the image cannot be converted to RGB ({type(e).__name__}: {e})") from None


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


def check_pixels(size: tuple[int, int], max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image whose width x height exceeds `max_pixels` (a decompression bomb, or just too large)."""
    width, height = size
    if width * height > max_pixels:
        raise BadRequest(f"the image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}; "
                         "it was refused from its header, before decoding", 413)


def _open(raw: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            check_pixels(image.size, max_pixels)  # the header only: nothing is decoded yet
            image.load()
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadRequest(f"the image was refused as a decompression bomb: {e}", 413) from None
    except UnidentifiedImageError:
        raise BadRequest("the body is not an image Pillow can read: send JPEG, PNG, WebP, GIF, BMP or TIFF") from None
    except Exception as e:  # PIL raises many types for truncated or damaged files
        raise BadRequest(f"the image is damaged or truncated ({type(e).__name__}: {e})") from None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB as blipnb trains on it: EXIF rotation applies, 16-bit and float images are stretched over their
    range, palette and alpha images go onto white."""
    image = _to_8bit(ImageOps.exif_transpose(image))
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def _to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit or float image as 8-bit grey, min..max over 0..255 (converting clips at 255: a 16-bit scan turns
    white); a constant image keeps its level on the mode's nominal scale."""
    if image.mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return image
    a = np.asarray(image).astype(np.float64)
    finite = np.isfinite(a)
    lo, hi = (float(a[finite].min()), float(a[finite].max())) if finite.any() else (0.0, 0.0)
    if hi > lo:
        out = (np.where(finite, a, lo) - lo) * (255.0 / (hi - lo))
    else:
        out = np.full(a.shape, np.clip(lo * 255.0 / (65535.0 if image.mode.startswith("I;16") else 255.0), 0, 255))
    return Image.fromarray(np.round(out).astype(np.uint8), "L")


def check_parameters(params) -> dict:
    """A request's decoding parameters (None: none), checked by name, type and range."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"'parameters' must be an object of decoding settings, not {type(params).__name__}", 422)
    out = {}
    for name, value in params.items():
        if name not in PARAMETERS:
            close = difflib.get_close_matches(str(name), PARAMETERS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(PARAMETERS)}"
            raise BadRequest(f"unknown parameter {name!r}{hint}", 422)
        kind, low, high = PARAMETERS[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise BadRequest(f"parameter {name!r} must be {kind.__name__}, got {value!r}", 422)
        if kind is str and len(value) > high:
            raise BadRequest(f"parameter {name!r} is {len(value)} characters, over the limit of {high}", 422)
        if kind in (int, float) and not low <= value <= high:  # NaN fails too
            raise BadRequest(f"parameter {name!r} must be between {low} and {high}, got {value!r}", 422)
        out[name] = value
    return out


def decoding(defaults: dict, params: dict) -> dict:
    """The settings a request decodes with: `defaults`, then its checked `params` on top (min_new_tokens shrinks to
    fit a shorter max_new_tokens unless the request set it, as GenerationConfig.with_overrides does)."""
    settings = {**defaults, **params}
    if "min_new_tokens" not in params:
        settings["min_new_tokens"] = min(settings["min_new_tokens"], settings["max_new_tokens"])
    if settings["min_new_tokens"] > settings["max_new_tokens"]:
        raise BadRequest(f"min_new_tokens={settings['min_new_tokens']} exceeds "
                         f"max_new_tokens={settings['max_new_tokens']}", 422)
    if settings["consensus_samples"] == 1:
        raise BadRequest("consensus_samples must be 0 (off) or at least 2 (captions to choose among)", 422)
    return settings


def generate_kwargs(settings: dict) -> dict:
    """Keyword arguments for `model.generate` from decoding settings (the prompt is passed as input_ids). With
    consensus_samples, generate draws that many captions per image (generate_captions then picks one)."""
    if settings["length_counts_prompt"]:  # generate's max_length/min_length count its input_ids: [DEC] + prompt
        kw = {"max_length": settings["max_new_tokens"], "min_length": settings["min_new_tokens"]}
    else:
        kw = {"max_new_tokens": settings["max_new_tokens"], "min_new_tokens": settings["min_new_tokens"]}
    consensus = settings["consensus_samples"]
    sampling = settings["do_sample"] or consensus > 0
    kw.update(num_beams=1 if consensus else settings["num_beams"], do_sample=sampling)
    if kw["num_beams"] > 1:
        kw.update(length_penalty=settings["length_penalty"], early_stopping=settings["early_stopping"])
    if sampling:
        kw.update(top_p=settings["top_p"], temperature=settings["temperature"])
    if consensus:
        kw.update(num_return_sequences=consensus)
    return kw


def generate_captions(model, processor, pixel_values: torch.Tensor, prompt: str, kwargs: dict,
                      num_return_sequences: int = 1) -> list[str]:
    """Captions from pixel_values only, plus an optional fixed prompt: BLIP's generate swaps the prompt's first
    token for [DEC] and drops its [SEP]; the prompt is stripped from the output. num_return_sequences captions per
    image, image by image.

    With consensus decoding (kwargs from generate_kwargs carry num_return_sequences: the draws per image), each
    image gets its num_return_sequences distinct draws (draw_captions) that agree most with the others
    (consensus_order)."""
    draws = kwargs.get("num_return_sequences")
    if draws is None:
        return _generate(model, processor, pixel_values, prompt,
                         {**kwargs, "num_return_sequences": num_return_sequences})
    captions = draw_captions(model, processor, pixel_values, prompt, kwargs)
    picked = []
    for start in range(0, len(captions), draws):  # each image's draws are together
        own = captions[start:start + draws]
        distinct = list(dict.fromkeys(own[i] for i in consensus_order(own)))
        picked += (distinct * num_return_sequences)[:num_return_sequences]  # too few distinct: repeat them
    return picked


def draw_captions(model, processor, pixel_values: torch.Tensor, prompt: str, kwargs: dict) -> list[str]:
    """Consensus decoding's draws: kwargs["num_return_sequences"] captions per image, image by image, sampled at
    kwargs' temperature and top_p. Each draw is a function of its image's pixels and its index alone (SeededDraws),
    so an image gets the same draws alone or in any batch, on every run; the caller's random state is untouched."""
    kwargs = dict(kwargs)
    temperature, top_p = kwargs.pop("temperature"), kwargs.pop("top_p")
    draws = kwargs["num_return_sequences"]
    index = torch.arange(draws, device=pixel_values.device).repeat(pixel_values.shape[0])
    rows = _mix(image_keys(pixel_values).repeat_interleave(draws) + index * _GOLDEN + CONSENSUS_SEED)
    # generate then samples from the one token SeededDraws leaves: the outcome is fixed, but it still draws from
    # the global generator, which fork_rng gives back unchanged.
    cuda = [pixel_values.device] if pixel_values.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        return _generate(model, processor, pixel_values, prompt,
                         {**kwargs, "logits_processor": LogitsProcessorList([SeededDraws(rows, temperature, top_p)])})


def _generate(model, processor, pixel_values: torch.Tensor, prompt: str, kwargs: dict) -> list[str]:
    input_ids = None
    if prompt:
        input_ids = processor.tokenizer(prompt, return_tensors="pt").input_ids
        input_ids = input_ids.repeat(pixel_values.shape[0], 1).to(pixel_values.device)
    out = model.generate(pixel_values=pixel_values, input_ids=input_ids, **kwargs)
    if input_ids is not None:
        out = out[:, input_ids.shape[1] - 1:]  # [DEC] + the prompt tokens are not part of the caption
    return [t.strip() for t in processor.tokenizer.batch_decode(out, skip_special_tokens=True)]


class SeededDraws(LogitsProcessor):
    """Sampling whose randomness belongs to each row: the next token is argmax(logits / temperature + Gumbel
    noise) over the top_p nucleus (the Gumbel-max trick: a draw from softmax(logits / temperature) there), with
    the noise a hash of (row key, step, token) instead of a shared random stream. It returns that one token as
    the only one left, so generate's own sampler can only take it."""

    def __init__(self, rows: torch.Tensor, temperature: float, top_p: float):
        self.rows, self.temperature, self.top_p = rows, temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:  # keep the likeliest tokens up to top_p of the mass (at least one)
            ordered, order = scores.sort(dim=-1, descending=True)
            probs = ordered.softmax(dim=-1)
            drop = probs.cumsum(dim=-1) - probs > self.top_p
            scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
        choice = (scores + gumbel_noise(self.rows, input_ids.shape[1], scores.shape[1])).argmax(dim=-1)
        return torch.full_like(scores, float("-inf")).scatter_(1, choice[:, None], 0.0)


def gumbel_noise(rows: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """Standard Gumbel noise, (len(rows), vocab), a fixed function of each row key, the step and the token."""
    at_step = _mix(rows ^ _mix(torch.tensor(step, dtype=torch.int64, device=rows.device) * _GOLDEN))
    h = _mix(at_step[:, None] + torch.arange(vocab, device=rows.device, dtype=torch.int64) * _MIX_A)
    u = (((h >> 20) & 0xFFFFFF).float() + 0.5) / 16777216.0  # 24 well-mixed bits -> (0, 1)
    return -torch.log(-torch.log(u))


def image_keys(pixel_values: torch.Tensor) -> torch.Tensor:
    """One int64 key per image from its pixels (as the processor gives them), independent of the batch."""
    q = torch.round(pixel_values.float().flatten(1) * 256).to(torch.int64)
    weights = _mix(torch.arange(q.shape[1], device=q.device, dtype=torch.int64)) | 1
    return _mix((q * weights).sum(dim=1))  # int64 arithmetic wraps: a hash, exact on any device


def _mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (two's-complement wraparound): nearby inputs, unrelated outputs."""
    x = x ^ (x >> 30)
    x = x * _MIX_A
    x = x ^ (x >> 27)
    x = x * _MIX_B
    return x ^ (x >> 31)


def consensus_order(captions: list[str], sigma: float = 6.0) -> list[int]:
    """Indices of `captions`, the one the others agree with most first (minimum Bayes risk decoding with a
    CIDEr-D-like utility). Each caption scores its mean similarity to every other draw, repeats included, so a
    wording drawn often counts often. The similarity is CIDEr-D's: the mean over n = 1..4 of the cosine between
    n-gram count vectors, with the candidate's counts clipped at the other's, times exp(-d^2 / (2 sigma^2)) for a
    length difference of d words. Unlike CIDEr-D every n-gram weighs the same: one image's draws give no corpus of
    references to weigh n-grams by. Ties keep the drawing order."""
    words = [_CONSENSUS_WORD.findall(c.lower()) for c in captions]
    grams = [[_ngram_counts(w, n) for w in words] for n in range(1, 5)]
    lengths = np.array([len(w) for w in words], dtype=float)
    similarity = np.zeros((len(captions), len(captions)))
    for per_caption in grams:
        vocab: dict = {}
        for counts in per_caption:
            for g in counts:
                vocab.setdefault(g, len(vocab))
        vectors = np.zeros((len(captions), max(len(vocab), 1)))
        for i, counts in enumerate(per_caption):
            for g, c in counts.items():
                vectors[i, vocab[g]] = c
        norms = np.linalg.norm(vectors, axis=1)
        clipped = np.minimum(vectors[:, None, :], vectors[None, :, :]) * vectors[None, :, :]
        denominator = norms[:, None] * norms[None, :]
        similarity += np.divide(clipped.sum(-1), denominator, out=np.zeros_like(denominator),
                                where=denominator > 0)
    similarity *= np.exp(-((lengths[:, None] - lengths[None, :]) ** 2) / (2 * sigma ** 2)) / 4
    np.fill_diagonal(similarity, 0.0)
    return [int(i) for i in np.argsort(-similarity.sum(axis=1), kind="stable")]


def _ngram_counts(words: list[str], n: int) -> dict:
    counts: dict = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
    return counts


def read_decoding_defaults(model_dir) -> dict:
    """The run's decoding settings saved with the model, else FALLBACK_DECODING."""
    path = Path(model_dir) / DECODING_FILE
    saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {**FALLBACK_DECODING, **{k: v for k, v in saved.items() if k in FALLBACK_DECODING}}


def group_by_settings(settings: list[dict]) -> list[list[int]]:
    """The indices of requests with identical decoding settings, one list per generate call."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(settings):
        groups.setdefault(json.dumps(s, sort_keys=True), []).append(i)
    return list(groups.values())


class Captioner:
    """A loaded model folder: the model, its processor and the run's decoding defaults."""

    def __init__(self, model_dir, device: str | None = None):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.processor = BlipProcessor.from_pretrained(str(model_dir))
        model = BlipForConditionalGeneration.from_pretrained(str(model_dir), use_safetensors=True)
        self.model = model.to(self.device).eval()
        self.defaults = read_decoding_defaults(model_dir)

    def settings(self, params) -> dict:
        """Checked decoding settings for a request's `parameters`."""
        return decoding(self.defaults, check_parameters(params))

    @torch.inference_mode()
    def caption(self, images: list, settings: list[dict]) -> list[str]:
        """One caption per RGB image; images with different settings never share a generate call."""
        captions: list = [None] * len(images)
        for idx in group_by_settings(settings):
            s = settings[idx[0]]
            pixels = self.processor.image_processor([images[i] for i in idx], return_tensors="pt")["pixel_values"]
            with self._autocast():
                out = generate_captions(self.model, self.processor, pixels.to(self.device), s["prompt"],
                                        generate_kwargs(s))
            for i, text in zip(idx, out):
                captions[i] = text
        return captions

    def _autocast(self):
        """bf16 (else fp16) autocast on a GPU, as blipnb's evaluation generates; fp32 on CPU."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)


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
    params = check_parameters(payload.get("parameters"))
    return [decode_image(x, max_bytes, max_pixels) for x in items], params, batched


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
        settings = self.captioner.settings(params)
        return answer(self.captioner.caption(images, [settings] * len(images)), batched)


# SageMaker (Hugging Face and PyTorch inference toolkits), with this file as code/inference.py.
def model_fn(model_dir):
    return Captioner(model_dir)


def input_fn(input_data, content_type):
    images, params, batched = read_body(input_data, content_type)
    return {"images": images, "parameters": params, "batched": batched}


def predict_fn(data, model):
    settings = model.settings(data["parameters"])
    return {"captions": model.caption(data["images"], [settings] * len(data["images"])), "batched": data["batched"]}


def output_fn(prediction, accept):
    kind = (accept or "application/json").split(";")[0].strip().lower()
    if kind not in ("application/json", "*/*"):
        raise BadRequest(f"can only answer application/json, not {accept!r}", 406)
    return json.dumps(answer(prediction["captions"], prediction["batched"]))
