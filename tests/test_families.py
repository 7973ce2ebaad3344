"""Every captioner family on a tiny random model built offline from its config class (blipnb.model.tiny), saved
and reloaded with from_pretrained: the prompt carries no loss, the loss falls on a repeated batch, captions come
from pixels only, LoRA trains and merges, the Trainer trains, resumes and exports, and the export captions in a
bare process. `pytest -k family` selects them, one group per family."""
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import tiny_config
from PIL import Image

from blipnb import runs
from blipnb.config import ModelConfig, ParameterError, TrainConfig, build_config
from blipnb.model.collate import CaptionCollator
from blipnb.model.generation import caption_batch
from blipnb.model.modeling import check_family_settings, load_model
from blipnb.model.tiny import build_tiny
from blipnb.runtime.decoding import Decoding
from blipnb.runtime.families import FAMILIES, NAMES, family_of
from blipnb.runtime.families.base import IGNORE_INDEX
from blipnb.training.lora import apply_lora, merge_lora
from blipnb.training.trainer import forward_loss

CAPTIONS = ["a red circle at the top left", "two blue squares", "a green triangle in the middle",
            "one yellow star at the bottom right"]
COLOURS = [(220, 30, 30), (30, 30, 220), (30, 200, 30), (230, 220, 30)]
SIZES = ModelConfig(from_scratch=True, image_size=32, patch_size=16, hidden_size=64, num_layers=1, num_heads=2,
                    vocab_size=120)


def images():
    out = []
    for i, colour in enumerate(COLOURS):
        im = Image.new("RGB", (40, 36), (240, 240, 240))
        im.paste(colour, (4 + 6 * i, 4, 20 + 6 * i, 24))
        out.append(im)
    return out


def items():
    return [{"image": im, "image_id": f"im{i}", "captions": [c]} for i, (im, c) in enumerate(zip(images(), CAPTIONS))]


@pytest.fixture(scope="module", params=NAMES)
def tiny(request, tmp_path_factory):
    """(family name, folder) of a tiny untrained model of each family."""
    name = request.param
    folder = build_tiny(name, CAPTIONS * 5, tmp_path_factory.mktemp(f"tiny-{name}"), SIZES, seed=0)
    return name, folder


def loaded(tiny):
    model, processor = load_model(tiny[1], attn_implementation="eager")
    return model, processor


def test_family_is_read_from_the_saved_config(tiny):
    name, folder = tiny
    model, _ = loaded(tiny)
    assert family_of(model) is FAMILIES[name]
    assert json.loads((folder / "config.json").read_text())["model_type"] in FAMILIES[name].model_types


def test_family_prompt_and_image_tokens_carry_label_minus_100(tiny):
    """The labels keep one span per row: the caption and its start or end token; the image tokens, the family's
    task prompt, a caption prefix and the padding are all -100."""
    name, _ = tiny
    _, processor = loaded(tiny)
    family = FAMILIES[name]
    prompt = "a picture of " if family.takes_prompt else ""
    batch = CaptionCollator(processor, prompt=prompt, family=family)(items())
    tok = processor.tokenizer
    specials = set(tok.all_special_ids)
    for labels, caption in zip(batch["labels"], CAPTIONS):
        kept = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
        assert kept == list(range(kept[0], kept[-1] + 1))  # one contiguous span
        assert tok.decode(labels[kept], skip_special_tokens=True).strip() == caption  # no prompt word in it
        assert sum(int(i) in specials for i in labels[kept]) <= 2  # at most a start and an end token
    if batch["labels"].shape == batch["input_ids"].shape:  # decoder-only: image and prompt tokens lead each row
        assert (batch["labels"][:, 0] == IGNORE_INDEX).all() or name == "blip"  # BLIP's [DEC] is never predicted
    else:  # an encoder-decoder's prompt is the encoder's input alone
        assert batch["labels"].shape[1] < batch["input_ids"].shape[1]


def test_family_loss_falls_on_a_repeated_batch(tiny):
    name, _ = tiny
    model, processor = loaded(tiny)
    batch = CaptionCollator(processor, family=FAMILIES[name])(items())
    torch.manual_seed(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(25):
        loss = forward_loss(model, batch)
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.6 * losses[0], losses


def test_family_captions_come_from_pixels_only(tiny):
    name, _ = tiny
    model, processor = loaded(tiny)
    seen = []
    generate = model.generate

    def spy(**kwargs):
        seen.append(kwargs)
        return generate(**kwargs)

    model.generate = spy
    for decoding in (Decoding(num_beams=1, max_new_tokens=6), Decoding(num_beams=2, max_new_tokens=6)):
        out = caption_batch(model, processor, images(), decoding)
        assert len(out) == 4 and all(isinstance(c, str) for c in out)
    words = {"red", "circle", "blue", "squares", "green", "triangle", "yellow", "star"}  # the captions' own words
    for kwargs in seen:
        assert "labels" not in kwargs and "decoder_input_ids" not in kwargs
        if "input_ids" in kwargs:  # the same prompt for four images with four different captions
            assert (kwargs["input_ids"] == kwargs["input_ids"][:1]).all()
            text = processor.tokenizer.batch_decode(kwargs["input_ids"], skip_special_tokens=True)
            assert not any(w in t.split() for t in text for w in words), text


def test_family_consensus_decoding_samples_or_fails_in_one_line(tiny):
    name, _ = tiny
    model, processor = loaded(tiny)
    decoding = Decoding(consensus_samples=4, max_new_tokens=5)
    if FAMILIES[name].can_sample:
        assert len(caption_batch(model, processor, images()[:2], decoding)) == 2
    else:
        with pytest.raises(ValueError, match="cannot sample"):
            caption_batch(model, processor, images()[:2], decoding)


def test_family_lora_trains_and_merges_into_a_plain_model(tiny):
    name, _ = tiny
    model, processor = loaded(tiny)
    wrapped = apply_lora(model, TrainConfig(finetune_method="lora", lora_r=4))
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    loss = forward_loss(wrapped, CaptionCollator(processor, family=FAMILIES[name])(items()))
    loss.backward()
    assert torch.isfinite(loss)
    plain = merge_lora(wrapped)
    assert not any("lora_" in k for k in plain.state_dict())
    assert len(caption_batch(plain, processor, images()[:2], Decoding(num_beams=1, max_new_tokens=4))) == 2


def test_family_blip_only_settings_fail_in_one_line_naming_blip(tiny):
    name, _ = tiny
    cfg = build_config({"shared_vision": True, "pixel_cache": True})
    if name == "blip":
        check_family_settings(cfg, FAMILIES[name])
        return
    with pytest.raises(ParameterError, match="applies to BLIP only") as err:
        check_family_settings(cfg, FAMILIES[name])
    assert "\n" not in str(err.value)


FAMILY_RUN = dict(sample_train=16, sample_validation=4, sample_test=4, batch_size=8, max_steps=2,
                  eval_strategy="steps", eval_steps=1, eval_max_images=4, save_total_limit=5, max_new_tokens=6)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """{family: run directory} after 02's training (two steps, each validated and checkpointed), for every
    family; then each run resumed from its first checkpoint with the run's own config."""
    from blipnb.training.run import train_run

    out = {}
    for name in NAMES:
        run_dir = tmp_path_factory.mktemp(f"run-{name}")
        cfg = tiny_config(run_dir, family=name, **FAMILY_RUN)
        results = train_run(cfg)
        assert results["global_step"] == 2
        resumed = train_run(tiny_config(run_dir, family=name, resume_from_checkpoint=str(
            run_dir / runs.CHECKPOINTS_DIR / "checkpoint-1"), **FAMILY_RUN))
        out[name] = (run_dir, results, resumed)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_family_trains_resumes_and_exports_with_the_trainer(trained_runs, name):
    run_dir, results, resumed = trained_runs[name]
    assert resumed["resumed_step"] == 1 and resumed["global_step"] == 2
    history = runs.read_json(run_dir / runs.LOG_HISTORY)
    assert any("eval_cider" in h for h in history)  # validation captioned from pixels
    model, _ = load_model(run_dir / runs.MODEL_DIR, attn_implementation="eager")
    assert family_of(model).name == name
    assert (run_dir / runs.MODEL_DIR / runs.HANDLER).is_file()


BARE = textwrap.dedent('''
    """Each export's handler.py in a process where blipnb cannot be imported: its own runtime only."""
    import base64, importlib.util, io, json, sys
    sys.modules["blipnb"] = None  # an import of blipnb fails here
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (40, 36), (220, 30, 30)).save(buf, format="PNG")
    image = base64.b64encode(buf.getvalue()).decode()
    out = {}
    for name, folder in json.loads(sys.argv[1]).items():
        spec = importlib.util.spec_from_file_location(f"handler_{name}", f"{folder}/handler.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[name] = module.EndpointHandler(folder)({"inputs": image, "parameters": {"max_new_tokens": 5}})
        for key in [k for k in sys.modules if k.split(".")[0] == "blipnb_runtime"]:
            del sys.modules[key]  # the next export brings its own copy
        sys.path.remove(folder)
    print(json.dumps(out))
''')


def test_family_exports_caption_in_a_bare_process(trained_runs, tmp_path):
    folders = {name: str(run_dir / runs.MODEL_DIR) for name, (run_dir, _, _) in trained_runs.items()}
    script = tmp_path / "bare.py"
    script.write_text(BARE)
    done = subprocess.run([sys.executable, str(script), json.dumps(folders)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(answers) == set(NAMES)
    for name, answer in answers.items():
        assert isinstance(answer, list) and isinstance(answer[0]["generated_text"], str), (name, answer)


def test_family_lora_auto_leaves_the_vision_tower_frozen(tiny):
    name, _ = tiny
    model, _ = loaded(tiny)
    wrapped = apply_lora(model, TrainConfig(finetune_method="lora", lora_r=4))
    vision = FAMILIES[name].vision_tower(wrapped)
    assert not any(p.requires_grad for p in vision.parameters())
    assert any(p.requires_grad for p in wrapped.parameters())


PRESET_FAMILIES = {"git_base.yaml": "git", "blip2_opt.yaml": "blip2", "florence2_base.yaml": "florence2",
                   "paligemma_3b.yaml": "paligemma", "smolvlm_256m.yaml": "smolvlm", "gpu_large.yaml": "blip",
                   "blip_paper.yaml": "blip"}


@pytest.mark.parametrize("preset, name", sorted(PRESET_FAMILIES.items()))
def test_family_presets_take_only_settings_their_family_applies(preset, name):
    from blipnb.presets import read_params

    params = read_params([f"notebooks/params/{preset}"])
    check_family_settings(build_config(params), FAMILIES[name])


def test_family_blip2_with_an_encoder_decoder_language_model_is_refused_in_one_line():
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    from blipnb.runtime.families import UnsupportedFamily

    tiny = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Blip2Config(vision_config={**tiny, "image_size": 32, "patch_size": 16},
                         qformer_config={**tiny, "encoder_hidden_size": 32}, num_query_tokens=2,
                         text_config={"model_type": "t5", "d_model": 32, "d_ff": 64, "num_layers": 1,
                                      "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16, "vocab_size": 64})
    model = Blip2ForConditionalGeneration(config)
    with pytest.raises(UnsupportedFamily, match="use an OPT one") as err:
        family_of(model).check_model(model)
    assert "\n" not in str(err.value)


def test_family_florence2_runs_every_notebook_in_process(tmp_path, no_java):
    """01 -> 05 with a tiny Florence-2 (encoder-decoder, task token) built from scratch: 02 trains it, 03 scores
    it against its starting model, 04 and 05 read what 03 wrote."""
    from inprocess import run_suite

    namespaces = run_suite(tmp_path / "run", family="florence2", sample_train=32)
    run = runs.RunDir(tmp_path / "run")
    metrics = runs.read_json(run / runs.METRICS)
    assert family_of(namespaces["03_evaluate"]["models"]["fine-tuned"][0]).name == "florence2"
    assert len(runs.read_jsonl(run / runs.PREDICTIONS)) == metrics["results"]["fine-tuned"]["n_images"] == 16
    assert (run / runs.ERROR_ANALYSIS).is_file() and (run / "captions.csv").is_file()
