"""The runtime and the deployable export: handler.py and code/inference.py load as the hosts load them (a fresh
process with only the model folder on sys.path, blipnb unimportable), caption like blipnb does, and refuse bad input
with BadRequest; one decoding, where an explicit value always wins."""
import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from blipnb import runs, runtime
from blipnb.config import GenerationConfig, ModelConfig, build_config
from blipnb.model.deploy import RUNTIME_PACKAGE, write_endpoint
from blipnb.runtime import hosts
from blipnb.runtime.captioner import Captioner
from blipnb.runtime.decoding import DECODING_FILE, NAMED, Decoding
from blipnb.runtime.hosts import BadRequest

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
    return Captioner(model_dir, device="cpu")


def test_export_holds_the_runtime_as_it_is_beside_each_entry_point_and_what_it_imports(model_dir):
    modules = sorted(p.name for p in Path(runtime.__file__).parent.glob("*.py"))
    for folder in (model_dir, model_dir / "code"):
        copied = folder / RUNTIME_PACKAGE
        assert sorted(p.name for p in copied.glob("*.py")) == modules
        for name in modules:
            assert (copied / name).read_bytes() == (Path(runtime.__file__).parent / name).read_bytes(), name
    entry = (model_dir / runs.HANDLER).read_text()
    assert entry == (model_dir / runs.SAGEMAKER_ENTRY).read_text() and len(entry.splitlines()) < 12  # thin
    for req in (model_dir / runs.REQUIREMENTS, model_dir / "code" / runs.REQUIREMENTS):
        lines = req.read_text().splitlines()
        assert [line.split("<")[0].split(">")[0] for line in lines] == ["torch", "transformers", "pillow", "numpy"]
        assert any(line.startswith("transformers") and "<6" in line for line in lines)  # the 5.x processor API
    saved = json.loads((model_dir / DECODING_FILE).read_text())
    assert saved == DECODING.settings()


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
    settings = DECODING.settings()
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
    return hosts.read_body(body, content_type, **limits)


BAD = {
    "http URL": (lambda: read({"inputs": "http://169.254.169.254/latest/meta-data"}), 400, "never fetches URLs"),
    "https URL": (lambda: read({"inputs": " https://example.com/cat.jpg"}), 400, "never fetches URLs"),
    "s3 URL": (lambda: read({"inputs": "s3://bucket/cat.jpg"}), 400, "never fetches URLs"),
    "file URL": (lambda: read({"inputs": "file:///etc/passwd"}), 400, "never fetches URLs"),
    "URL as the body": (lambda: read(b"https://example.com/cat.jpg", "image/jpeg"), 400, "never fetches URLs"),
    "a path is not base64": (lambda: read({"inputs": "/etc/passwd"}), 400, "valid base64"),
    "non-image bytes": (lambda: read(b"GIF89a but not really", "image/jpeg"), 400, "not an image Pillow can identify"),
    "truncated JPEG": (lambda: read(jpeg(size=(64, 64))[:300], "image/jpeg"), 400, "Truncated"),
    "empty body": (lambda: read(b"", "image/jpeg"), 400, "body is empty"),
    "empty base64": (lambda: read({"inputs": ""}), 400, "empty"),
    "no inputs": (lambda: read({"image": B64}), 400, '{"inputs"'),
    "invalid JSON": (lambda: read(b'{"inputs": ', "application/json"), 400, "not valid JSON"),
    "extra field": (lambda: read({"inputs": B64, "parameter": {}}), 422, "unknown field"),
    "bomb over the limit": (lambda: read(bomb_png((8000, 8000)), "image/png"), 413, "before decoding"),
    "bomb over Pillow's limit": (lambda: read(bomb_png((20000, 20000)), "image/png"), 413, "decompression bomb"),
    "PIL image over the limit": (lambda: hosts.decode_image(Image.new("1", (300, 300)), max_pixels=50_000), 413,
                                 "300x300 = 0.1 megapixels, over max_image_pixels=50_000"),
    "oversized upload": (lambda: read(BIG, "image/jpeg", max_bytes=len(BIG) - 1), 413, "over the limit"),
    "oversized base64": (lambda: hosts.decode_image(B64, max_bytes=len(BIG) - 1), 413, "over the limit"),
    "too many images": (lambda: read({"inputs": [B64] * (hosts.MAX_IMAGES + 1)}), 413, "images in one request"),
    "num_beams 0": (lambda: read({"inputs": B64, "parameters": {"num_beams": 0}}), 422, "between 1 and 16"),
    "num_beams 1000": (lambda: read({"inputs": B64, "parameters": {"num_beams": 1000}}), 422, "between 1 and 16"),
    "unknown parameter": (lambda: read({"inputs": B64, "parameters": {"beams": 3}}), 422, "did you mean 'num_beams'"),
    "string for an int": (lambda: read({"inputs": B64, "parameters": {"max_new_tokens": "5"}}), 422, "must be int"),
    "bool for an int": (lambda: read({"inputs": B64, "parameters": {"num_beams": True}}), 422, "must be int"),
    "NaN temperature": (lambda: read(b'{"inputs": "%s", "parameters": {"temperature": NaN}}' % B64.encode()), 422,
                        "temperature"),
    "long prompt": (lambda: read({"inputs": B64, "parameters": {"prompt": "a" * 201}}), 422, "over the limit"),
    "parameters not an object": (lambda: read({"inputs": B64, "parameters": [3]}), 422, "must be an object"),
    "min over max": (lambda: hosts.request_decoding(Decoding(), {"min_new_tokens": 9, "max_new_tokens": 4}),
                     422, "exceeds"),
    "content type": (lambda: read(BIG, "text/plain"), 415, "unsupported Content-Type"),
    "accept": (lambda: hosts.output_fn({"captions": ["x"], "batched": False}, "text/csv"), 406, "application/json"),
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
        hosts.decode_image(data)
    assert decoded == []


def test_good_input_forms_decode_alike():
    rgba = Image.new("RGBA", (12, 10), (10, 200, 30, 128))
    a = hosts.decode_image(png(rgba))
    b = hosts.decode_image(base64.b64encode(png(rgba)).decode())
    c = hosts.decode_image("data:image/png;base64,\n" + base64.encodebytes(png(rgba)).decode())  # wrapped lines
    d = hosts.decode_image(rgba)
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
def test_every_mode_converts_to_upright_8bit_rgb(name):
    """The one conversion training, evaluation and the hosts share: modes, transparency, 16-bit, EXIF."""
    image = hosts.decode_image(_images()[name])
    assert image.mode == "RGB" and image.size == (_images()[name].size if "EXIF" not in name else (10, 20))
    if name == "16-bit gradient":  # stretched over its range, not clipped to white
        values = [p[0] for p in image.getdata()]
        assert min(values) == 0 and max(values) == 255


def test_a_folder_without_a_stored_decoding_uses_the_defaults(tmp_path):
    assert Decoding.load(tmp_path) == Decoding()
    (tmp_path / DECODING_FILE).write_text(json.dumps({"num_beams": 2, "unrelated": 1}))
    assert Decoding.load(tmp_path) == Decoding(num_beams=2)


def test_an_explicit_value_wins_over_a_named_decoding_a_preset_and_the_stored_one():
    paper = Decoding.named("blip_paper", num_beams=5)
    assert paper.num_beams == 5 and paper.max_new_tokens == 20 and paper.length_counts_prompt
    preset = build_config({**NAMED["blip_paper"], "num_beams": 5}).generation  # -f blip_paper.yaml -p num_beams 5
    assert preset.num_beams == 5 and preset.min_new_tokens == 5
    assert Decoding.named("blip_paper").merged(max_new_tokens=3).min_new_tokens == 3  # shrinks to fit, unless given
    assert GenerationConfig(num_beams=3).merged(num_beams=None).num_beams == 3  # None: not given
    stored = hosts.request_decoding(Decoding.named("blip_paper"), {"num_beams": 5})
    assert stored.num_beams == 5 and stored.max_new_tokens == 20


def test_decoding_kinds_turn_any_decoding_into_each_other():
    base = Decoding.named("blip_paper")
    kinds = ("greedy", "beam", "sampling", "consensus")
    assert [base.as_kind(k).kind for k in kinds] == list(kinds)
    assert base.as_kind("beam").num_beams == 3 and Decoding(num_beams=1).as_kind("beam").num_beams == 2
    assert Decoding(consensus_samples=5).as_kind("consensus").consensus_samples == 5  # the run's own draws
    assert base.as_kind("consensus", consensus_samples=4).consensus_samples == 4
    assert base.as_kind("consensus").as_kind("beam").consensus_samples == 0


def test_generate_kwargs_of_each_kind():
    assert Decoding(num_beams=1).generate_kwargs() == {"max_new_tokens": 30, "min_new_tokens": 0, "num_beams": 1,
                                                       "do_sample": False}
    paper = Decoding.named("blip_paper").generate_kwargs()
    assert paper["max_length"] == 20 and paper["min_length"] == 5 and paper["num_beams"] == 3
    consensus = Decoding(consensus_samples=8, temperature=0.7).generate_kwargs()
    assert consensus["num_return_sequences"] == 8 and consensus["num_beams"] == 1 and consensus["do_sample"]


def test_different_decodings_never_share_a_generate_call(captioner, monkeypatch):
    images = [hosts.decode_image(jpeg(color=c)) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0))]
    greedy, beam, short = (hosts.request_decoding(captioner.decoding, p)
                           for p in ({}, {"num_beams": 2}, {"max_new_tokens": 3}))
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
    assert (folder / runs.HANDLER).read_bytes() == (folder / runs.SAGEMAKER_ENTRY).read_bytes()
    assert (folder / RUNTIME_PACKAGE / "hosts.py").is_file() and (folder / "code" / RUNTIME_PACKAGE).is_dir()
    assert not (folder / "training_args.bin").exists()  # no pickle with local paths in what gets deployed
    assert Decoding.load(folder).settings() == cfg.generation.settings()


def test_model_card_says_how_to_deploy_to_each_host():
    from blipnb.evaluation.card import deploy_lines

    text = "\n".join(deploy_lines())
    assert text.startswith("## Deploy")
    for words in (runs.HANDLER, runs.SAGEMAKER_ENTRY, "Inference Endpoints", "model.tar.gz", "blipnb serve",
                  "never fetches", DECODING_FILE, RUNTIME_PACKAGE):
        assert words in text, words


def test_a_blip_paper_export_asked_for_five_beams_decodes_with_five(tmp_path, monkeypatch):
    """The run decoded as the BLIP paper (beam 3, max 20); a request's num_beams 5 reaches generate, the rest of
    the stored decoding stays."""
    from blipnb.model.deploy import load_handler
    from blipnb.model.tiny import build_tiny_blip

    path = build_tiny_blip(CAPTIONS, tmp_path / "model", ModelConfig(from_scratch=True, image_size=32, vocab_size=100,
                                                                      hidden_size=64, num_layers=1, num_heads=2))
    write_endpoint(path, Decoding.named("blip_paper"))
    handler = load_handler(path)
    calls = []
    generate = handler.captioner.model.generate
    monkeypatch.setattr(handler.captioner.model, "generate", lambda **kw: calls.append(kw) or generate(**kw))
    handler({"inputs": jpeg(), "parameters": {"num_beams": 5}})
    handler({"inputs": jpeg()})
    assert [(c["num_beams"], c["max_length"], c["min_length"]) for c in calls] == [(5, 20, 5), (3, 20, 5)]
