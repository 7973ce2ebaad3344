"""finetune_method="lora": which BLIP layers get adapters, that training moves only them, and that the export is a
plain merged model with the same outputs as the adapted one (every test name holds "lora": `pytest -k lora`)."""
import dataclasses

import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file

from blipnb import runs
from blipnb.config import ParameterError
from blipnb.data import load_captions
from blipnb.evaluation.card import recipe_lines
from blipnb.model.collate import CaptionCollator, CaptionPairs
from blipnb.model.modeling import count_parameters, eval_mode, load_model, start_model
from blipnb.schema import BLEU, CIDER
from blipnb.training import build_trainer, forward_loss, train_model
from blipnb.training import trainer as trainer_module
from blipnb.training.cache import CachedCaptionPairs
from blipnb.training.lora import apply_lora, is_lora, lora_layers, merge_lora

HIDDEN, LAYERS, R = 64, 2, 4  # tiny_config's width; two layers so "every layer" means something


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny BLIP built once; (its folder, the data, the config fields that start from it)."""
    cfg = tiny_config(tmp_path_factory.mktemp("base"), num_layers=LAYERS)
    ds = load_captions(cfg.data)
    start_model(cfg, ds)
    base_dir = runs.RunDir(cfg.run_dir) / runs.BASE_MODEL_DIR
    return base_dir, ds, dict(from_scratch=False, model_id=str(base_dir))  # the folder brings its own sizes


def lora_cfg(tmp_path, base, **overrides):
    return tiny_config(tmp_path, **{**base[2], "finetune_method": "lora", "lora_r": R, **overrides})


def fresh(cfg, base):
    """A freshly loaded copy of the base model, prepared as 02 prepares it."""
    return start_model(cfg, base[1])


def base_weights(model) -> dict:
    """The non-adapter weights under their plain names (peft's `.base_layer` dropped)."""
    inner = model.get_base_model() if is_lora(model) else model
    return {k.replace(".base_layer", ""): v.detach().clone() for k, v in inner.state_dict().items()
            if "lora_" not in k}


def adapter_weights(model) -> dict:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def test_lora_default_targets_text_self_and_cross_attention_only(tmp_path, base):
    cfg = lora_cfg(tmp_path, base)
    model, _ = fresh(cfg, base)
    pm = apply_lora(model, cfg.train)
    expected = [f"text_decoder.bert.encoder.layer.{i}.{block}.self.{proj}"
                for i in range(LAYERS) for block in ("attention", "crossattention") for proj in ("query", "value")]
    assert sorted(lora_layers(pm)) == sorted(expected)
    assert lora_layers(model) == lora_layers(pm)  # in place: the caller's object runs the adapters
    assert cfg.train.vision_frozen
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not any(p.requires_grad for p in model.vision_model.parameters())


def test_lora_qkv_adapts_the_vision_tower_and_gets_its_gradient(tmp_path, base):
    cfg = lora_cfg(tmp_path, base, lora_targets="query, value, qkv")
    assert not cfg.train.vision_frozen
    model, processor = fresh(cfg, base)
    pm = apply_lora(model, cfg.train)
    vision = [n for n in lora_layers(pm) if n.startswith("vision_model")]
    assert sorted(vision) == [f"vision_model.encoder.layers.{i}.self_attn.qkv" for i in range(LAYERS)]
    # lora_B starts at zero, so its gradient is the one that flows first; the shared-vision path reaches it too
    grouped = CaptionPairs(base[1]["train"], grouped=True)
    batch = CaptionCollator(processor)([grouped[i] for i in range(4)])
    forward_loss(pm, batch).backward()
    grads = {n: p.grad for n, p in pm.named_parameters() if "vision_model" in n and "lora_B" in n}
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_lora_bad_target_fails_naming_the_parameter_and_the_real_names(tmp_path, base):
    cfg = lora_cfg(tmp_path, base, lora_targets="query,valu")
    model, processor = fresh(cfg, base)
    with pytest.raises(ParameterError, match="lora_targets") as err:
        build_trainer(cfg, model, processor, base[1])
    message = str(err.value)
    assert "'valu'" in message and "did you mean 'value'" in message
    for name in ("qkv", "query", "value", "fc1", "dense"):
        assert name in message
    assert "'query'" not in message  # only the missing name is blamed
    assert not lora_layers(model)  # checked before anything was injected
    # the LM head shares the word embeddings' weight: merging into it would change them too, so it is refused
    with pytest.raises(ParameterError, match="'decoder'"):
        apply_lora(model, dataclasses.replace(cfg.train, lora_targets="decoder"))


def test_lora_trainable_share_is_the_adapters_and_small(tmp_path, base):
    cfg = lora_cfg(tmp_path, base)
    model, _ = fresh(cfg, base)
    before = count_parameters(model)["total"]
    counts = count_parameters(apply_lora(model, cfg.train))
    # per adapted (hidden x hidden) Linear: A is r x hidden, B is hidden x r
    adapters = LAYERS * 4 * R * 2 * HIDDEN
    assert counts["trainable"] == adapters and counts["total"] == before + adapters
    assert counts["trainable_share"] < 0.05


@pytest.mark.parametrize("path", ["pairs_checkpointed", "shared_vision", "cache_embeddings"])
def test_lora_training_changes_only_the_adapters(tmp_path, base, path):
    options = {"pairs_checkpointed": dict(gradient_checkpointing=True), "shared_vision": dict(shared_vision=True),
               "cache_embeddings": dict(cache_embeddings=True)}[path]
    cfg = lora_cfg(tmp_path, base, eval_strategy="no", max_steps=3, learning_rate=1e-2, **options)
    model, processor = fresh(cfg, base)
    before = base_weights(model)
    trainer = build_trainer(cfg, model, processor, base[1])
    assert is_lora(trainer.model) and trainer.model.get_base_model() is model
    assert isinstance(trainer.train_dataset, CachedCaptionPairs) == (path == "cache_embeddings")
    vision_calls = []
    model.vision_model.register_forward_hook(lambda *_: vision_calls.append(1))
    trainer.train()
    # cached embeddings: the (frozen) vision tower never runs in the loop; the other paths run it
    assert bool(vision_calls) == (path != "cache_embeddings")
    after = base_weights(trainer.model)
    assert after.keys() == before.keys()
    for name in before:
        assert torch.equal(after[name], before[name]), name
    lora_b = {n: p for n, p in adapter_weights(trainer.model).items() if "lora_B" in n}
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values())  # initialised at zero, now trained


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, base):
    """One train_model run with LoRA (two epochs, validation each epoch, SDPA attention). Validation CIDEr is faked
    to peak at the first epoch, so the best checkpoint is not the last one; the adapted model's logits and captions
    are recorded just before train_model merges it."""
    cfg = lora_cfg(tmp_path_factory.mktemp("lora_run"), base, epochs=2, learning_rate=1e-2,
                   attn_implementation="sdpa")
    model, processor = fresh(cfg, base)
    batch = CaptionCollator(processor)([CaptionPairs(base[1]["validation"])[i] for i in range(8)])
    seen = {}

    def fake_caption_and_score(*args, **kwargs):
        seen["evals"] = seen.get("evals", 0) + 1
        return {}, {CIDER: 1.0 / seen["evals"], BLEU[3]: 0.0}

    def spy_merge(pm):
        seen["adapters"] = lora_layers(pm)
        seen["logits"], seen["tokens"] = outputs(pm, batch)
        return merge_lora(pm)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "caption_and_score", fake_caption_and_score)
        mp.setattr(trainer_module, "merge_lora", spy_merge)
        results = train_model(cfg, model, processor, base[1])
    return cfg, model, batch, seen, results


def outputs(model, batch):
    with torch.no_grad(), eval_mode(model):
        logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
        tokens = model.generate(pixel_values=batch["pixel_values"], max_new_tokens=10, num_beams=1)
    return logits, tokens


def test_lora_export_is_a_plain_model_with_the_adapted_models_outputs(lora_run):
    cfg, model, batch, seen, _ = lora_run
    assert seen["adapters"]  # the spy saw the adapted model
    export = runs.RunDir(cfg.run_dir) / runs.MODEL_DIR
    keys = load_file(str(export / "model.safetensors")).keys()
    assert not [k for k in keys if "lora_" in k or "base_layer" in k or "base_model." in k]
    loaded, _ = load_model(export, attn_implementation="sdpa")
    assert type(loaded).__name__ == "BlipForConditionalGeneration" and not lora_layers(loaded)
    logits, tokens = outputs(loaded, batch)
    # merged W + scale*B@A against x@W + scale*(x@A)@B: the same function up to fp32 rounding
    torch.testing.assert_close(logits, seen["logits"], rtol=1e-4, atol=1e-5)
    assert torch.equal(tokens, seen["tokens"])  # greedy captions identical
    # The object 02 keeps is that merged model: no adapters, the export's outputs.
    assert not lora_layers(model) and not hasattr(model, "peft_config")
    torch.testing.assert_close(outputs(model, batch)[0], logits, rtol=1e-5, atol=1e-6)
    # and the adapters did something, or the comparison above proves nothing
    start, _ = load_model(cfg.model.model_id, attn_implementation="sdpa")
    assert not torch.allclose(outputs(start, batch)[0], logits, atol=1e-3)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft probing transformers 5
def test_lora_adapter_folder_holds_the_best_checkpoints_adapter(lora_run):
    from peft import PeftModel

    cfg, model, _, seen, results = lora_run
    run = runs.RunDir(cfg.run_dir)
    config = runs.read_json(run / runs.ADAPTER_DIR / "adapter_config.json")
    assert set(config["target_modules"]) == {"query", "value"}
    assert (config["r"], config["lora_alpha"]) == (cfg.train.lora_r, cfg.train.lora_alpha)
    adapter = load_file(str(run / runs.ADAPTER_DIR / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    # load_best_model_at_end reloaded the first epoch's adapter (the faked validation CIDEr peaked there)
    checkpoints = sorted((run / runs.CHECKPOINTS_DIR).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert seen["evals"] == 2 and len(checkpoints) == 2 and results["best_checkpoint"] == str(checkpoints[0])
    best, last = (load_file(str(c / "adapter_model.safetensors")) for c in checkpoints)
    assert all(torch.equal(adapter[k], best[k]) for k in adapter)
    assert not all(torch.equal(adapter[k], last[k]) for k in adapter)
    # base model + saved adapter, merged by peft, is the export
    start, _ = load_model(cfg.model.model_id, attn_implementation="eager")
    rebuilt = PeftModel.from_pretrained(start, str(run / runs.ADAPTER_DIR)).merge_and_unload().state_dict()
    exported = model.state_dict()
    assert rebuilt.keys() == exported.keys()
    for k in exported:
        torch.testing.assert_close(rebuilt[k], exported[k], rtol=0, atol=1e-6, msg=k)


def test_lora_train_results_record_the_trainable_share(lora_run):
    cfg, _, _, _, results = lora_run
    adapters = LAYERS * 4 * R * 2 * HIDDEN
    stored = runs.read_json(runs.RunDir(cfg.run_dir) / runs.TRAIN_RESULTS)
    assert stored["trainable_parameters"] == results["trainable_parameters"] == adapters
    assert 0 < stored["trainable_share"] < 0.05


def test_lora_settings_are_in_the_model_card_recipe(tmp_path, base):
    lora = "\n".join(recipe_lines(lora_cfg(tmp_path, base, lora_targets="query,value,qkv")))
    assert f"- lora_r: {R}" in lora and "- lora_alpha: 32" in lora and "- lora_targets: query,value,qkv" in lora
    full = "\n".join(recipe_lines(tiny_config(tmp_path)))
    assert "- finetune_method: full" in full and "lora_" not in full


def test_lora_resume_from_an_adapter_checkpoint_equals_the_uninterrupted_run(tmp_path, base):
    """The Trainer's peft path: a LoRA checkpoint holds the adapter (not the model) plus optimizer, scheduler and
    RNG states, and resuming from it ends where an uninterrupted run ends."""
    from transformers import TrainerCallback

    class StopAfterStep4(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise KeyboardInterrupt  # stands in for a kill right after checkpoint-4 is written

    settings = dict(max_steps=6, eval_strategy="steps", eval_steps=2, eval_max_images=6, save_total_limit=10,
                    learning_rate=1e-2)

    def train(name, callbacks=(), **overrides):
        cfg = lora_cfg(tmp_path / name, base, **settings, **overrides)
        model, processor = fresh(cfg, base)
        return train_model(cfg, model, processor, base[1], callbacks=callbacks)

    train("a")
    with pytest.raises(KeyboardInterrupt):
        train("b", callbacks=[StopAfterStep4()])
    checkpoint = tmp_path / "b" / runs.CHECKPOINTS_DIR / "checkpoint-4"
    assert (checkpoint / "adapter_model.safetensors").exists() and not (checkpoint / "model.safetensors").exists()
    results = train("b", resume_from_checkpoint="auto")
    assert results["resumed_step"] == 4 and results["global_step"] == 6
    a, b = (load_file(str(tmp_path / n / runs.MODEL_DIR / "model.safetensors")) for n in ("a", "b"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    start = load_file(str(runs.RunDir(base[2]["model_id"]) / "model.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a if k in start)  # the runs did train


def test_lora_adapter_init_is_seeded_and_leaves_the_callers_rng_alone(tmp_path, base):
    cfg = lora_cfg(tmp_path, base)

    def init(train_cfg, draw_before: int):
        model, _ = fresh(cfg, base)
        torch.rand(draw_before)  # whatever ran before in the kernel
        torch.manual_seed(123)
        pm = apply_lora(model, train_cfg)
        return adapter_weights(pm), torch.rand(3)

    a, after_a = init(cfg.train, 1)
    b, after_b = init(cfg.train, 1000)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(123)
    assert torch.equal(after_a, torch.rand(3)) and torch.equal(after_b, after_a)  # the caller's stream goes on
    other, _ = init(dataclasses.replace(cfg.train, seed=cfg.train.seed + 1), 1)
    assert any(not torch.equal(a[k], other[k]) for k in a if "lora_A" in k)
