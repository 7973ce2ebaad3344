"""The ipywidgets browsers, built and driven headless: callbacks are called directly, no browser or kernel."""
from __future__ import annotations

import datetime
import io

import datasets
import pytest
import torch
from PIL import Image

from blipnb.notebook import widgets
from blipnb.config import GenerationConfig, ModelConfig
from blipnb.model.modeling import load_model
from blipnb.model.tiny import build_tiny_blip

CAPTIONS = ["a red circle at the top left", "a small blue square at the bottom right",
            "there is a big green triangle", "two shapes: a yellow circle and a red square",
            "a little purple triangle in the upper left corner"]
PROMPT = "there is a"
PNG_MAGIC = b"\x89PNG"


def _png(colour: str, size: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def _upload(name: str, content: bytes) -> tuple[dict]:
    """A FileUpload value in ipywidgets 8's format."""
    return ({"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.datetime.now(datetime.timezone.utc)},)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two untrained tiny BLIPs (different seeds): their captions are gibberish, their structure is real."""
    cfg = ModelConfig(image_size=32, patch_size=16, hidden_size=32, num_layers=1, num_heads=2, vocab_size=80)
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for seed, name in enumerate(("fine-tuned", "base")):
        path = build_tiny_blip(CAPTIONS, root / name, cfg, seed=seed)
        out[name] = load_model(path, attn_implementation="eager")
    return out


@pytest.fixture
def gen():
    return GenerationConfig(num_beams=2, max_new_tokens=6)


def test_each_decoding_kind_keeps_the_runs_other_settings():
    from blipnb.runtime.decoding import CONSENSUS_DRAWS

    base = GenerationConfig(num_beams=3, max_new_tokens=20, min_new_tokens=5, gen_batch_size=7)
    sampling = base.as_kind("sampling", top_p=0.5, temperature=0.7, max_new_tokens=4, prompt="p")
    assert (sampling.do_sample, sampling.num_beams, sampling.top_p, sampling.temperature) == (True, 1, 0.5, 0.7)
    assert sampling.max_new_tokens == 4 and sampling.min_new_tokens == 4 and sampling.prompt == "p"
    assert isinstance(sampling, GenerationConfig) and sampling.gen_batch_size == 7
    beam = base.as_kind("beam", num_beams=4)
    assert (beam.do_sample, beam.num_beams) == (False, 4)
    greedy = base.as_kind("greedy")
    assert (greedy.do_sample, greedy.num_beams) == (False, 1)
    consensus = base.as_kind("consensus", consensus_samples=5, temperature=0.6)
    assert (consensus.consensus_samples, consensus.do_sample, consensus.temperature) == (5, False, 0.6)
    assert base.as_kind("consensus").consensus_samples == CONSENSUS_DRAWS
    assert [g.kind for g in (greedy, beam, sampling, consensus)] == list(widgets.DECODINGS)
    with pytest.raises(ValueError, match="decoding kind"):
        base.as_kind("topk")


def test_caption_all_gives_one_caption_per_model_or_n_samples(models, gen):
    image = Image.new("RGB", (40, 40), "red")
    for mode, n, expected in (("greedy", 3, 1), ("beam", 3, 1), ("sampling", 3, 3), ("consensus", 3, 1)):
        out = widgets.caption_all(models, image, gen.as_kind(mode), n=n)
        assert list(out) == list(models)
        for captions in out.values():
            assert len(captions) == expected and all(isinstance(c, str) for c in captions), (mode, captions)


def test_prompt_is_stripped_from_captions_and_shown_once(models, gen):
    demo = widgets.caption_demo(models, {"red": _png("red")}, gen)
    demo.prompt.value = PROMPT
    demo.decoding.value = "greedy"
    results = demo.run()
    for name, captions in results.items():
        assert len(captions) == 1 and not captions[0].startswith(PROMPT)
        assert demo.panels[name].value.count(PROMPT) == 1


def test_caption_demo_captions_an_uploaded_png(models, gen):
    demo = widgets.caption_demo(models, {"red": _png("red"), "blue": _png("blue")}, gen)
    assert demo.selected[0] == "red" and bytes(demo.image.value).startswith(PNG_MAGIC)
    first_image = bytes(demo.image.value)
    demo.upload.value = _upload("mine.png", _png("green", size=50))
    assert demo.selected[0] == "mine.png" and bytes(demo.image.value) != first_image
    demo.decoding.value = "sampling"
    demo.samples.value = 3
    assert not demo.samples.disabled and demo.num_beams.disabled
    demo.button.click()
    assert set(demo.results) == set(models)
    for name, captions in demo.results.items():
        assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
        assert demo.panels[name].value.count("<li>") == 3
    demo.decoding.value = "consensus"
    demo.draws.value = 4
    assert demo.samples.disabled and not demo.draws.disabled and not demo.temperature.disabled
    assert demo.generation_config().consensus_samples == 4
    demo.button.click()
    assert all(len(captions) == 1 for captions in demo.results.values())
    assert "mine.png" in demo.status.value


def test_caption_demo_reports_an_unreadable_upload(models, gen):
    demo = widgets.caption_demo(models, {}, gen)
    assert demo.run() == {} and demo.selected is None
    demo.upload.value = _upload("broken.png", b"not an image")
    assert demo.selected is None and "broken.png is not an image the demo can open" in demo.status.value
    shown = demo.status.value.split(">", 1)[1]  # the sentence, after the span's hover title with the details
    assert "BytesIO" not in shown and "Pillow" not in shown
    assert demo.run() == {} and demo.picker.options == ()  # an unreadable file does not join the picker


def test_upload_joins_the_picker_and_a_new_image_clears_the_captions(models, gen):
    demo = widgets.caption_demo(models, {"red": _png("red"), "blue": _png("blue")}, gen)
    assert all("no captions yet" in p.value for p in demo.panels.values())
    demo.run()
    assert all("<li>" in p.value for p in demo.panels.values())
    demo.picker.value = "blue"  # another image: the red image's captions must not stay beside it
    assert demo.selected[0] == "blue" and demo.results == {}
    assert all("<li>" not in p.value for p in demo.panels.values())
    demo.run()
    demo.upload.value = _upload("mine.png", _png("green", size=50))
    assert demo.picker.options == ("red", "blue", "mine.png") and demo.picker.value == "mine.png"
    assert demo.selected[0] == "mine.png" and all("<li>" not in p.value for p in demo.panels.values())
    demo.picker.value = "red"
    assert demo.selected[0] == "red" and bytes(demo.image.value) == bytes(widgets.png_bytes(_png("red")))
    demo.run()
    shown, captions = bytes(demo.image.value), [p.value for p in demo.panels.values()]
    demo.upload.value = _upload("notes.txt", b"not a picture")  # a failed upload leaves the red image as it was
    assert demo.selected[0] == "red" and demo.picker.value == "red" and "notes.txt" in demo.status.value
    assert bytes(demo.image.value) == shown and [p.value for p in demo.panels.values()] == captions


def test_images_are_fitted_into_a_fixed_box_keeping_their_aspect_ratio(models, gen):
    assert widgets.fitted_size((64, 64)) == (256, 256)
    assert widgets.fitted_size((640, 480)) == (256, 192) and widgets.fitted_size((30, 120)) == (64, 256)
    demo = widgets.caption_demo(models, {"wide": _png_sized((120, 60))}, gen)
    layout = demo.image.layout
    assert (layout.width, layout.height) == ("256px", "128px") and layout.flex == "0 0 auto"
    assert (demo.panel.layout.width, demo.panel.layout.height) == ("256px", "256px")
    row = demo.children[1]
    assert row.layout.align_items == "flex-start"  # a stretching row drew 64 px images at 236x504


def test_control_labels_are_not_cut(models, gen):
    demo = widgets.caption_demo(models, {}, gen)
    for control in (demo.temperature, demo.max_new_tokens, demo.top_p, demo.num_beams, demo.samples, demo.picker):
        assert control.style.description_width == "initial", control.description


def _png_sized(size) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "orange").save(buf, format="PNG")
    return buf.getvalue()


def test_caption_table_has_a_caption_per_model_and_decoding(models, gen):
    rows = widgets.caption_table(models, _png("red"), gen)
    assert [r["decoding"].split()[0] for r in rows] == ["greedy", "beam", "sampling", "consensus"]
    for row in rows:
        assert all(isinstance(row[name], str) for name in models), row
    torch.manual_seed(123)  # another global RNG state: the table's own seed must decide the sample
    state = torch.get_rng_state()
    assert widgets.caption_table(models, _png("red"), gen) == rows
    assert torch.equal(torch.get_rng_state(), state)  # and the caller's RNG is left alone


def _prediction_rows() -> list[dict]:
    # CIDEr and Bleu_4 rank the images differently, so a sort by the wrong key shows the wrong first row.
    cider = [0.5, 0.1, 0.9, 0.3]
    bleu4 = [0.2, 0.8, 0.4, 0.05]
    preds = ["a dog on grass", "a red circle", "two dogs running", "a blue square"]
    return [{"image_id": f"img{i}", "prediction": preds[i], "references": [f"reference {i}", "a cat"],
             "scores": {"Bleu_4": bleu4[i], "CIDEr": cider[i]}} for i in range(4)]


@pytest.fixture
def split():
    images = [Image.new("RGB", (24, 24), c) for c in ("red", "green", "blue", "white")]
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string")})
    return datasets.Dataset.from_dict({"image": images, "image_id": [f"img{i}" for i in range(4)]}, features=features)


def test_browser_sort_reorders_rows(split):
    browser = widgets.browse_predictions(_prediction_rows(), split)
    assert browser.sort_by.value == "CIDEr" and browser.sort_by.options == ("Bleu_4", "CIDEr")
    assert browser.current["image_id"] == "img1"  # lowest CIDEr first
    assert bytes(browser.image.value).startswith(PNG_MAGIC) and "img1" in browser.details.value
    browser.rank.value = 3
    assert browser.current["image_id"] == "img2"  # the slider walks the ranking
    browser.order.value = "highest first"
    assert browser.rank.value == 0 and browser.current["image_id"] == "img2"
    browser.sort_by.value = "Bleu_4"
    assert [r["image_id"] for r in browser.shown] == ["img1", "img2", "img0", "img3"]
    browser.order.value = "lowest first"
    assert browser.current["image_id"] == "img3"


def test_browser_filter_narrows_rows(split):
    browser = widgets.browse_predictions(_prediction_rows(), split)
    browser.filter.value = "DOG"
    assert sorted(r["image_id"] for r in browser.shown) == ["img0", "img2"] and browser.rank.max == 1
    browser.filter.value = "reference 3"  # matches a reference, not the prediction
    assert [r["image_id"] for r in browser.shown] == ["img3"]
    browser.filter.value = "zebra"
    assert browser.shown == [] and browser.current is None and bytes(browser.image.value) == b""
    assert "zebra" in browser.details.value
    assert browser.image.layout.display == "none"  # a message in its place, not a broken-image icon
    assert browser.panel.message.layout.display is None and browser.panel.message.value
    browser.filter.value = ""
    assert len(browser.shown) == 4


def test_rank_rows_puts_missing_scores_last():
    rows = _prediction_rows()
    rows[1]["scores"]["CIDEr"] = None
    rows[3]["scores"].pop("CIDEr")
    ranked = widgets.rank_rows(rows, "CIDEr", descending=True)
    assert [r["image_id"] for r in ranked] == ["img2", "img0", "img1", "img3"]


def test_images_folder_is_the_common_parent_or_none(tmp_path, split):
    for i, sub in enumerate(("a", "b")):
        (tmp_path / "images" / sub).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / sub / f"{i}.png")
    paths = datasets.Dataset.from_dict(
        {"image": [str(tmp_path / "images" / s / f"{i}.png") for i, s in enumerate("ab")], "image_id": ["0", "1"]},
        features=datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("string")}))
    assert widgets.images_folder(paths) == tmp_path / "images"
    assert widgets.images_folder(split) is None  # in-memory images: nothing to caption from disk


def test_pick_image_defaults_to_the_first_and_checks_the_path(tmp_path):
    images = {"x": b"1", "y": b"2"}
    assert widgets.pick_image(images, None) == ("x", b"1")
    with pytest.raises(FileNotFoundError, match="image_path"):
        widgets.pick_image(images, str(tmp_path / "missing.png"))
