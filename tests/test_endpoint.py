"""The deployable export: handler.py and code/inference.py load as the hosts load them (a fresh process with only the
model folder on sys.path, blipnb unimportable), caption like blipnb does, and refuse bad input with BadRequest."""
import ast
import base64
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from blipnb import runs
from blipnb.config import DECODING_PRESETS, MAX_CONSENSUS_SAMPLES, GenerationConfig, ModelConfig
from blipnb.model import endpoint
from blipnb.model.deploy import write_endpoint
from blipnb.model.endpoint import BadRequest

CAPTIONS = ["a large red circle in the top left", "there is a small blue square at the bottom right",
            "two shapes: a green triangle and a purple circle"] * 20
DECODING = GenerationConfig(num_beams=1, max_new_tokens=8)  # the run's decoding the export carries


def jpeg(color=(200, 30, 30), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained tiny BLIP exported as training exports one: model, processor and the endpoint files."""
    from blipnb.model.tiny import build_tiny_blip

    path = build_tiny_blip(CAPTIONS, tmp_path_factory.mktemp("export") / "model",
                           ModelConfig(from_scratch=True, image_size=32, vocab_size=100, hidden_size=64, num_layers=1,
                                       num_heads=2))
    write_endpoint(path, DECODING)
    return path


@pytest.fixture(scope="module")
def captioner(model_dir):
    return endpoint.Captioner(model_dir, device="cpu")


def test_export_holds_two_byte_copies_of_the_endpoint_and_what_they_import(model_dir):
    source = Path(endpoint.__file__).read_bytes()
    assert (model_dir / runs.HANDLER).read_bytes() == source
    assert (model_dir / runs.SAGEMAKER_ENTRY).read_bytes() == source
    for req in (model_dir / runs.REQUIREMENTS, model_dir / "code" / runs.REQUIREMENTS):
        lines = req.read_text().splitlines()
        assert [line.split("<")[0].split(">")[0] for line in lines] == ["torch", "transformers", "pillow", "numpy"]
        assert any(line.startswith("transformers") and "<6" in line for line in lines)  # the 5.x processor API
    saved = json.loads((model_dir / endpoint.DECODING_FILE).read_text())
    assert saved == {k: getattr(DECODING, k) for k in endpoint.FALLBACK_DECODING}


def test_endpoint_imports_only_stdlib_torch_transformers_pillow_numpy():
    tree = ast.parse(Path(endpoint.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(tree)), "a relative import"
    assert names - set(sys.stdlib_module_names) == {"torch", "transformers", "PIL", "numpy"}


# What the hosts do: a fresh interpreter, the model folder (and code/) on sys.path, blipnb impossible to import.
HOST_SCRIPT = r"""
import base64, importlib.abc, io, json, sys
class NoBlipnb(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "blipnb" or name.startswith("blipnb."):
            raise ImportError("blipnb is not installed on the host")
sys.meta_path.insert(0, NoBlipnb())
model_dir, jpeg_path = sys.argv[1], sys.argv[2]
sys.path[:0] = [model_dir, model_dir + "/code"]
from PIL import Image
import handler, inference
raw = open(jpeg_path, "rb").read()
b64 = base64.b64encode(raw).decode()
h = handler.EndpointHandler(model_dir)
out = {"bytes": h({"inputs": raw}), "base64": h({"inputs": b64}), "pil": h({"inputs": Image.open(io.BytesIO(raw))}),
       "data_url": h({"inputs": "data:image/jpeg;base64," + b64}),
       "beam": h({"inputs": raw, "parameters": {"num_beams": 3, "max_new_tokens": 5}}),
       "list": h({"inputs": [b64, b64]})}
model = inference.model_fn(model_dir)
def chain(body, content_type):
    return json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, content_type), model),
                                          "application/json"))
png = io.BytesIO(); Image.open(io.BytesIO(raw)).save(png, "PNG")
out["sm_jpeg"] = chain(raw, "image/jpeg")
out["sm_x_image"] = chain(raw, "application/x-image")
out["sm_png"] = chain(png.getvalue(), "image/png")
out["sm_json"] = chain(json.dumps({"inputs": b64, "parameters": {"num_beams": 3, "max_new_tokens": 5}}),
                       "application/json")
out["sm_json_list"] = chain(json.dumps({"inputs": [b64, b64]}).encode(), "application/json; charset=utf-8")
out["blipnb_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "blipnb")
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def host_run(model_dir, tmp_path_factory):
    """Both host entry points, run once in a fresh process from an empty working directory."""
    cwd = tmp_path_factory.mktemp("host")
    (cwd / "image.jpg").write_bytes(jpeg())
    proc = subprocess.run([sys.executable, "-I", "-c", HOST_SCRIPT, str(model_dir), str(cwd / "image.jpg")],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_handler_captions_bytes_base64_and_pil_in_a_fresh_process(host_run, model_dir):
    from blipnb.model.generation import caption_image
    from blipnb.model.modeling import load_model

    assert host_run["blipnb_modules"] == []
    greedy = host_run["bytes"]
    assert isinstance(greedy, list) and len(greedy) == 1 and greedy[0]["generated_text"].strip()
    assert host_run["base64"] == host_run["pil"] == host_run["data_url"] == greedy
    assert host_run["list"] == [greedy, greedy]
    # The same caption blipnb's own path gives with the run's decoding (read from decoding_defaults.json).
    model, processor = load_model(model_dir, attn_implementation="eager")
    settings = {k: getattr(DECODING, k) for k in endpoint.FALLBACK_DECODING}
    assert greedy[0]["generated_text"] == caption_image(jpeg(), model, processor, **settings)
    beam = caption_image(jpeg(), model, processor, **{**settings, "num_beams": 3, "max_new_tokens": 5})
    assert host_run["beam"] == [{"generated_text": beam}]


def test_sagemaker_chain_with_jpeg_png_and_json_in_a_fresh_process(host_run):
    greedy = host_run["bytes"]
    assert host_run["sm_jpeg"] == host_run["sm_x_image"] == host_run["sm_png"] == greedy  # PNG: lossless copy
    assert host_run["sm_json"] == host_run["beam"]
    assert host_run["sm_json_list"] == [greedy, greedy]


def bomb_png(size) -> bytes:
    """A small file that decodes to a huge image (one bit per pixel, all zero: PNG compresses it to a few KB)."""
    return png(Image.new("1", size))


BIG = jpeg(size=(10, 10))
B64 = base64.b64encode(BIG).decode()


def read(body, content_type="application/json", **limits):
    if isinstance(body, dict):
        body = json.dumps(body)
    return endpoint.read_body(body, content_type, **limits)


BAD = {
    "http URL": (lambda: read({"inputs": "http://169.254.169.254/latest/meta-data"}), 400, "never fetches URLs"),
    "https URL": (lambda: read({"inputs": " https://example.com/cat.jpg"}), 400, "never fetches URLs"),
    "s3 URL": (lambda: read({"inputs": "s3://bucket/cat.jpg"}), 400, "never fetches URLs"),
    "file URL": (lambda: read({"inputs": "file:///etc/passwd"}), 400, "never fetches URLs"),
    "URL as the body": (lambda: read(b"https://example.com/cat.jpg", "image/jpeg"), 400, "never fetches URLs"),
    "a path is not base64": (lambda: read({"inputs": "/etc/passwd"}), 400, "valid base64"),
    "non-image bytes": (lambda: read(b"GIF89a but not really", "image/jpeg"), 400, "not an image Pillow can read"),
    "truncated JPEG": (lambda: read(jpeg(size=(64, 64))[:300], "image/jpeg"), 400, "damaged or truncated"),
    "empty body": (lambda: read(b"", "image/jpeg"), 400, "body is empty"),
    "empty base64": (lambda: read({"inputs": ""}), 400, "empty"),
    "no inputs": (lambda: read({"image": B64}), 400, '{"inputs"'),
    "invalid JSON": (lambda: read(b'{"inputs": ', "application/json"), 400, "not valid JSON"),
    "extra field": (lambda: read({"inputs": B64, "parameter": {}}), 422, "unknown field"),
    "bomb over the limit": (lambda: read(bomb_png((8000, 8000)), "image/png"), 413, "before decoding"),
    "bomb over Pillow's limit": (lambda: read(bomb_png((20000, 20000)), "image/png"), 413, "decompression bomb"),
    "PIL image over the limit": (lambda: endpoint.decode_image(Image.new("1", (300, 300)), max_pixels=50_000), 413,
                                 "90000 pixels"),
    "oversized upload": (lambda: read(BIG, "image/jpeg", max_bytes=len(BIG) - 1), 413, "over the limit"),
    "oversized base64": (lambda: endpoint.decode_image(B64, max_bytes=len(BIG) - 1), 413, "over the limit"),
    "too many images": (lambda: read({"inputs": [B64] * (endpoint.MAX_IMAGES + 1)}), 413, "images in one request"),
    "num_beams 0": (lambda: read({"inputs": B64, "parameters": {"num_beams": 0}}), 422, "between 1 and 16"),
    "num_beams 1000": (lambda: read({"inputs": B64, "parameters": {"num_beams": 1000}}), 422, "between 1 and 16"),
    "unknown parameter": (lambda: read({"inputs": B64, "parameters": {"beams": 3}}), 422, "did you mean 'num_beams'"),
    "string for an int": (lambda: read({"inputs": B64, "parameters": {"max_new_tokens": "5"}}), 422, "must be int"),
    "bool for an int": (lambda: read({"inputs": B64, "parameters": {"num_beams": True}}), 422, "must be int"),
    "NaN temperature": (lambda: read(b'{"inputs": "%s", "parameters": {"temperature": NaN}}' % B64.encode()), 422,
                        "temperature"),
    "long prompt": (lambda: read({"inputs": B64, "parameters": {"prompt": "a" * 201}}), 422, "over the limit"),
    "parameters not an object": (lambda: read({"inputs": B64, "parameters": [3]}), 422, "must be an object"),
    "min over max": (lambda: endpoint.decoding(endpoint.FALLBACK_DECODING, {"min_new_tokens": 9, "max_new_tokens": 4}),
                     422, "exceeds"),
    "content type": (lambda: read(BIG, "text/plain"), 415, "unsupported Content-Type"),
    "accept": (lambda: endpoint.output_fn({"captions": ["x"], "batched": False}, "text/csv"), 406, "application/json"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_raises_bad_request_with_its_status_and_reason(case):
    call, status, words = BAD[case]
    with pytest.raises(BadRequest) as err:
        call()
    assert err.value.status == status and words in str(err.value), str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


def test_a_bomb_is_refused_from_its_header_without_decoding(monkeypatch):
    from PIL import ImageFile

    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size))
    data = bomb_png((8000, 8000))
    assert len(data) < 100_000  # tiny on the wire, 64 megapixels decoded
    with pytest.raises(BadRequest, match="before decoding"):
        endpoint.decode_image(data)
    assert decoded == []


def test_good_input_forms_decode_alike():
    rgba = Image.new("RGBA", (12, 10), (10, 200, 30, 128))
    a = endpoint.decode_image(png(rgba))
    b = endpoint.decode_image(base64.b64encode(png(rgba)).decode())
    c = endpoint.decode_image("data:image/png;base64,\n" + base64.encodebytes(png(rgba)).decode())  # wrapped lines
    d = endpoint.decode_image(rgba)
    assert a.mode == "RGB" and list(a.getdata()) == list(b.getdata()) == list(c.getdata()) == list(d.getdata())


def _exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 5, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def _images():
    gradient16 = Image.frombytes("I;16", (4, 3), bytes(range(24)))
    palette = Image.new("P", (6, 6), 3)
    palette.info["transparency"] = 3
    floats = Image.frombytes("F", (2, 2), b"".join(struct_pack(v) for v in (0.0, float("nan"), 2.5, 7.0)))
    return {"rgb": Image.new("RGB", (5, 4), (1, 2, 3)), "rgba": Image.new("RGBA", (5, 4), (9, 80, 200, 100)),
            "la": Image.new("LA", (3, 3), (90, 40)), "palette with transparency": palette,
            "grey": Image.new("L", (3, 2), 77), "cmyk": Image.new("CMYK", (3, 2), (10, 20, 30, 40)),
            "16-bit gradient": gradient16, "16-bit constant": Image.new("I;16", (3, 3), 30000), "float with NaN": floats,
            "EXIF-rotated JPEG": Image.open(io.BytesIO(_exif_rotated_jpeg()))}


def struct_pack(value: float) -> bytes:
    import struct

    return struct.pack("<f", value)


@pytest.mark.parametrize("name", list(_images()))
def test_to_rgb_is_a_copy_of_blipnbs(name):
    """The endpoint converts images exactly as training saw them (blipnb.data.images.to_rgb)."""
    from blipnb.data.images import to_rgb

    ours, theirs = endpoint.to_rgb(_images()[name]), to_rgb(_images()[name])
    assert ours.mode == theirs.mode == "RGB" and ours.size == theirs.size
    assert list(ours.getdata()) == list(theirs.getdata())


def test_decoding_defaults_and_kwargs_are_copies_of_generation_config():
    gen = GenerationConfig()
    fields = {f.name for f in dataclasses.fields(GenerationConfig)} - {"gen_batch_size", "decoding_preset"}
    assert set(endpoint.FALLBACK_DECODING) == set(endpoint.PARAMETERS) == fields
    assert endpoint.PARAMETERS["consensus_samples"][2] == MAX_CONSENSUS_SAMPLES
    assert endpoint.FALLBACK_DECODING == {k: getattr(gen, k) for k in fields}
    variants = [gen, GenerationConfig(num_beams=1), GenerationConfig(do_sample=True, top_p=0.5, temperature=0.7),
                GenerationConfig(num_beams=3, do_sample=True), GenerationConfig(length_counts_prompt=True),
                GenerationConfig(consensus_samples=8, temperature=0.7), GenerationConfig(num_beams=3, consensus_samples=2),
                *(GenerationConfig(decoding_preset=p) for p in DECODING_PRESETS)]
    for g in variants:
        assert endpoint.generate_kwargs(dataclasses.asdict(g)) == g.generate_kwargs()
    for params in ({}, {"max_new_tokens": 3}, {"max_new_tokens": 3, "min_new_tokens": 2}, {"num_beams": 2}):
        base = GenerationConfig(decoding_preset="blip_paper")  # min 5: shrinks under a shorter max
        defaults = {k: getattr(base, k) for k in fields}
        expected = base.with_overrides(**params)
        assert endpoint.decoding(defaults, params) == {k: getattr(expected, k) for k in fields}


def test_a_folder_without_decoding_defaults_uses_generation_configs(tmp_path):
    assert endpoint.read_decoding_defaults(tmp_path) == endpoint.FALLBACK_DECODING
    (tmp_path / endpoint.DECODING_FILE).write_text(json.dumps({"num_beams": 2, "unrelated": 1}))
    assert endpoint.read_decoding_defaults(tmp_path) == {**endpoint.FALLBACK_DECODING, "num_beams": 2}


def test_different_decodings_never_share_a_generate_call(captioner, monkeypatch):
    images = [endpoint.decode_image(jpeg(color=c)) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0))]
    greedy, beam, short = (captioner.settings(p) for p in ({}, {"num_beams": 2}, {"max_new_tokens": 3}))
    settings = [greedy, beam, greedy, short, beam, greedy]
    batch = [images[i % 4] for i in range(6)]
    singles = [captioner.caption([im], [s])[0] for im, s in zip(batch, settings)]
    calls = []
    generate = captioner.model.generate

    def spy(**kwargs):
        calls.append((kwargs["pixel_values"].shape[0], kwargs["num_beams"], kwargs["max_new_tokens"]))
        return generate(**kwargs)

    monkeypatch.setattr(captioner.model, "generate", spy)
    assert captioner.caption(batch, settings) == singles
    assert sorted(calls) == sorted([(3, 1, 8), (2, 2, 8), (1, 1, 3)])


def test_training_exports_a_deployable_folder(trained):
    cfg = trained[0]
    folder = Path(cfg.run_dir) / runs.MODEL_DIR
    source = Path(endpoint.__file__).read_bytes()
    assert (folder / runs.HANDLER).read_bytes() == (folder / runs.SAGEMAKER_ENTRY).read_bytes() == source
    assert not (folder / "training_args.bin").exists()  # no pickle with local paths in what gets deployed
    assert endpoint.read_decoding_defaults(folder) == {k: getattr(cfg.generation, k) for k in endpoint.PARAMETERS}


def test_model_card_says_how_to_deploy_to_each_host():
    from blipnb.evaluation.card import deploy_lines

    text = "\n".join(deploy_lines())
    assert text.startswith("## Deploy")
    for words in (runs.HANDLER, runs.SAGEMAKER_ENTRY, "Inference Endpoints", "model.tar.gz", "blipnb serve",
                  "never fetches", endpoint.DECODING_FILE):
        assert words in text, words
