"""blipnb.model.sdpa: the SDPA-patched BLIP matches HF's eager BLIP on the same weights."""
import copy
import pathlib
import re

import pytest
import torch
from transformers import BlipConfig, BlipForConditionalGeneration

from blipnb.model import sdpa as fast

BOS, SEP, PAD = 1, 2, 0


def tiny_config(dropout: float = 0.0) -> BlipConfig:
    h = 64
    return BlipConfig(
        text_config={"vocab_size": 100, "hidden_size": h, "intermediate_size": 4 * h, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "encoder_hidden_size": h, "max_position_embeddings": 32,
                     "bos_token_id": BOS, "sep_token_id": SEP, "eos_token_id": SEP, "pad_token_id": PAD,
                     "hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout,
                     # Wider than the 0.02 default so the captions depend on the image and run the full length.
                     "initializer_range": 0.1},
        # The vision initializer_range defaults to 1e-10, which would make every attention map uniform.
        vision_config={"hidden_size": h, "intermediate_size": 4 * h, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 16, "initializer_range": 0.02,
                       "attention_dropout": dropout},
        projection_dim=h)


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    eager = BlipForConditionalGeneration(tiny_config()).eval()
    sdpa = fast.enable_sdpa(copy.deepcopy(eager))
    return eager, sdpa


def batch(left_pad: bool = False):
    g = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(3, 3, 32, 32, generator=g)
    input_ids = torch.randint(5, 100, (3, 7), generator=g)
    input_ids[:, 0] = BOS
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = 0
    attention_mask[2, 5:] = 0
    if left_pad:
        attention_mask = attention_mask.flip(1)
    input_ids = input_ids.masked_fill(attention_mask == 0, PAD)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"pixel_values": pixel_values, "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def grads(model):
    return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_patch_swaps_instances_only(models):
    eager, sdpa = models
    kinds = [type(m) for m in sdpa.modules()]
    assert kinds.count(fast.SdpaBlipAttention) == 2 and kinds.count(fast.SdpaBlipTextSelfAttention) == 4
    assert not any(isinstance(m, (fast.SdpaBlipAttention, fast.SdpaBlipTextSelfAttention)) for m in eager.modules())
    assert fast.sdpa_enabled(sdpa) and not fast.sdpa_enabled(eager)
    assert sdpa.state_dict().keys() == eager.state_dict().keys()


def test_forward_logits_and_loss_match(models):
    eager, sdpa = models
    with torch.no_grad():
        a, b = eager(**batch()), sdpa(**batch())
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_match(checkpointing):
    torch.manual_seed(0)
    eager = BlipForConditionalGeneration(tiny_config(dropout=0.0))
    sdpa = fast.enable_sdpa(copy.deepcopy(eager))
    for model in (eager, sdpa):
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
    loss_a, loss_b = eager(**batch()).loss, sdpa(**batch()).loss
    loss_a.backward()
    loss_b.backward()
    torch.testing.assert_close(loss_b, loss_a, atol=1e-5, rtol=1e-5)
    ga, gb = grads(eager), grads(sdpa)
    assert ga.keys() == gb.keys() and len(ga) > 50
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("prompt", [False, True])
def test_generate_identical(models, num_beams, prompt):
    eager, sdpa = models
    kw = {"pixel_values": batch()["pixel_values"], "max_new_tokens": 10, "num_beams": num_beams, "do_sample": False}
    if prompt:  # [DEC] w1 w2 [SEP]: generate drops the trailing [SEP] and continues the prompt
        kw["input_ids"] = torch.tensor([[BOS, 7, 9, SEP]]).repeat(3, 1)
    a = eager.generate(**{k: v.clone() if torch.is_tensor(v) else v for k, v in kw.items()})
    b = sdpa.generate(**kw)
    assert a.shape[1] == (3 if prompt else 1) + 10  # it really decoded through the cache
    assert len({tuple(row) for row in a.tolist()}) == 3  # and the image (cross-attention) mattered
    assert torch.equal(a, b)


def test_output_attentions_falls_back_to_eager(models):
    eager, sdpa = models
    with torch.no_grad():
        out = sdpa(**batch(), output_attentions=True)
        ref = eager(**batch(), output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 4, 5, 5)
    for x, y in zip(out.attentions, ref.attentions):
        torch.testing.assert_close(x, y)
    text = sdpa.text_decoder(input_ids=batch()["input_ids"], encoder_hidden_states=out.image_embeds,
                             output_attentions=True)
    assert len(text.attentions) == 2 and len(text.cross_attentions) == 2


def test_autocast_left_padding_stays_finite(models):
    # A left-padded first row is fully masked; float32's min cast to bf16 would be -inf and SDPA would give NaN.
    eager, sdpa = models
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a, b = eager(**batch(left_pad=True)), sdpa(**batch(left_pad=True))
    assert torch.isfinite(b.logits).all() and torch.isfinite(b.loss)
    torch.testing.assert_close(b.loss.float(), a.loss.float(), atol=5e-2, rtol=5e-2)


def test_idempotent_reversible_and_round_trips(models, tmp_path):
    eager, sdpa = models
    model = copy.deepcopy(sdpa)
    fast.enable_sdpa(model)
    assert sum(isinstance(m, fast.SdpaBlipTextSelfAttention) for m in model.modules()) == 4
    model.save_pretrained(tmp_path)
    reloaded = BlipForConditionalGeneration.from_pretrained(tmp_path)
    assert not fast.sdpa_enabled(reloaded)
    for k, v in eager.state_dict().items():
        assert torch.equal(reloaded.state_dict()[k], v), k
    fast.disable_sdpa(model)
    assert not fast.sdpa_enabled(model)
    assert {type(m) for m in model.modules()} == {type(m) for m in eager.modules()}


def test_assumption_checks_pass_on_installed_transformers(models):
    assert fast.check_assumptions(models[0]) == 6


def test_guard_raises_on_missing_attribute_and_version(models, monkeypatch):
    model = copy.deepcopy(models[0])
    del model.vision_model.encoder.layers[1].self_attn.qkv
    with pytest.raises(RuntimeError, match="'qkv'"):
        fast.enable_sdpa(model)
    assert not any(isinstance(m, fast.SdpaBlipTextSelfAttention) for m in model.modules())  # untouched
    model = copy.deepcopy(models[0])
    del model.text_decoder.bert.encoder.layer[0].crossattention.self.attention_head_size
    with pytest.raises(RuntimeError, match="'attention_head_size'"):
        fast.enable_sdpa(model)
    monkeypatch.setattr(fast.transformers, "__version__", "6.0.0")
    with pytest.raises(RuntimeError, match="6.0.0"):
        fast.check_assumptions(models[0])


def test_version_range_matches_pyproject():
    # A regex, not tomllib: the project still supports Python 3.10.
    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    spec = re.search(r'"transformers([^"]*)"', text).group(1).replace(" ", "")
    assert spec == f">={fast.TRANSFORMERS_MIN},<{fast.TRANSFORMERS_BELOW}"


def test_sdpa_runs_only_in_patched_modules(models, monkeypatch):
    eager, sdpa = models
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(k.get("attn_mask")) or real(*a, **k))
    with torch.no_grad():
        eager(**batch())
        assert calls == []  # patching one model left HF's classes (and so the eager copy) alone
        sdpa(**batch())
    # 2 vision layers without a mask, then per text layer a causal+padding self-attention mask and a cross-attention
    assert len(calls) == 6 and calls[0] is None and calls[2].shape == (3, 1, 7, 7)


def test_fully_masked_row_keeps_eager_semantics_in_bf16():
    # finfo(float32).min is -inf in bf16; SDPA would then zero a fully masked (left-padded) row where eager
    # attends uniformly, so the cast must clamp to bf16's own min.
    q = torch.randn(1, 2, 3, 8, dtype=torch.bfloat16)
    mask = torch.zeros(1, 1, 3, 3)
    mask[..., 0, :] = torch.finfo(torch.float32).min
    m = fast._sdpa_mask(mask, q)
    assert m.dtype == torch.bfloat16 and torch.isfinite(m).all()
    out = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=m)
    torch.testing.assert_close(out[..., 0, :], q.mean(-2))
