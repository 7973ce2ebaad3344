"""SDPA attention for BLIP: swap a loaded model's attention modules onto torch's scaled_dot_product_attention.

HF's BLIP has no SDPA path (`_supports_sdpa` is False through 5.x), so `attn_implementation="sdpa"` is ours. Each
BlipAttention (vision) and BlipTextSelfAttention (text self- and cross-attention) instance gets its class swapped to a
subclass whose forward calls SDPA; the HF classes are untouched, so eager models in the same process stay eager, and
no parameter or buffer changes, so state_dict keys and save_pretrained/from_pretrained round-trip as before.
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
import transformers
from packaging.version import Version
from transformers.models.blip.modeling_blip import BlipAttention
from transformers.models.blip.modeling_blip_text import BlipTextSelfAttention

# Keep in step with pyproject's "transformers>=5.0,<6": the forwards below copy 5.x internals (cache objects,
# output capturing), which a major release is free to change.
TRANSFORMERS_MIN, TRANSFORMERS_BELOW = "5.0", "6"
MARKER = "_blipnb_attn"  # model attribute: "sdpa" once patched (an attribute, not config, so it is never saved)

VISION_ATTRS = ("qkv", "projection", "num_heads", "head_dim", "embed_dim", "scale", "dropout")
TEXT_ATTRS = ("query", "key", "value", "num_attention_heads", "attention_head_size", "all_head_size", "layer_idx",
              "dropout")
TEXT_FORWARD_ARGS = ("hidden_states", "attention_mask", "encoder_hidden_states", "encoder_attention_mask", "cache")


def _recording_attentions(kwargs: dict) -> bool:
    # HF 5.x returns attention weights by hooking module outputs while a collector is active; SDPA has no weights to give.
    if kwargs.get("output_attentions"):
        return True
    from transformers.utils.output_capturing import _active_collector

    collected = _active_collector.get()
    return bool(collected) and ("attentions" in collected or "cross_attentions" in collected)


def _sdpa_mask(mask: torch.Tensor | None, query: torch.Tensor) -> torch.Tensor | None:
    if mask is None or mask.dtype == torch.bool:
        return mask
    mask = mask.to(query.device)
    if mask.dtype != query.dtype:
        # SDPA wants the additive mask in the query's dtype (bf16/fp16 under autocast), and finfo(float32).min
        # overflows to -inf there: a fully masked (left-padded) row would then turn into NaN and spread.
        mask = mask.clamp(min=torch.finfo(query.dtype).min).to(query.dtype)
    return mask


class SdpaBlipAttention(BlipAttention):
    """BLIP vision attention computed with SDPA (no mask: every patch sees every patch)."""

    def forward(self, hidden_states: torch.Tensor, **kwargs):
        if _recording_attentions(kwargs):
            return super().forward(hidden_states, **kwargs)
        bsz, tgt_len, _ = hidden_states.shape
        q, k, v = (self.qkv(hidden_states).reshape(bsz, tgt_len, 3, self.num_heads, self.head_dim)
                   .permute(2, 0, 3, 1, 4).unbind(0))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout.p if self.training else 0.0,
                                             scale=self.scale)
        return self.projection(out.transpose(1, 2).reshape(bsz, tgt_len, self.embed_dim)), None


class SdpaBlipTextSelfAttention(BlipTextSelfAttention):
    """BLIP text self-/cross-attention computed with SDPA; the KV cache is handled exactly as HF's eager forward."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, cache=None, **kwargs):
        if cache is None:  # the parent's deprecate_kwarg decorator maps this name; ours is not decorated
            cache = kwargs.pop("past_key_values", None)
        if _recording_attentions(kwargs):
            return super().forward(hidden_states, attention_mask=attention_mask,
                                   encoder_hidden_states=encoder_hidden_states,
                                   encoder_attention_mask=encoder_attention_mask, cache=cache, **kwargs)
        from transformers.cache_utils import EncoderDecoderCache

        is_cross = encoder_hidden_states is not None
        # Same choice as eager: the decoder's mask is already the explicit causal+padding additive mask built by
        # BlipTextModel, so it goes in as attn_mask and is_causal stays False.
        mask = encoder_attention_mask if is_cross else attention_mask
        q = self.query(hidden_states).view(*hidden_states.shape[:-1], -1, self.attention_head_size).transpose(1, 2)

        is_updated, layer_cache = False, cache
        if isinstance(cache, EncoderDecoderCache):
            is_updated = cache.is_updated.get(self.layer_idx)
            layer_cache = cache.cross_attention_cache if is_cross else cache.self_attention_cache
        if is_cross and cache is not None and is_updated:
            # The image keys/values never change during decoding; beam reorders act on the cache object itself.
            k, v = layer_cache.layers[self.layer_idx].keys, layer_cache.layers[self.layer_idx].values
        else:
            states = encoder_hidden_states if is_cross else hidden_states
            kv_shape = (*states.shape[:-1], -1, self.attention_head_size)
            k = self.key(states).view(kv_shape).transpose(1, 2)
            v = self.value(states).view(kv_shape).transpose(1, 2)
            if cache is not None:
                k, v = layer_cache.update(k, v, self.layer_idx, kwargs=kwargs)
                if is_cross and isinstance(cache, EncoderDecoderCache):
                    cache.is_updated[self.layer_idx] = True

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=_sdpa_mask(mask, q),
                                             dropout_p=self.dropout.p if self.training else 0.0,
                                             scale=1.0 / math.sqrt(self.attention_head_size))
        return out.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size), None


SDPA_CLASS = {BlipAttention: SdpaBlipAttention, BlipTextSelfAttention: SdpaBlipTextSelfAttention}
EAGER_CLASS = {v: k for k, v in SDPA_CLASS.items()}
REQUIRED_ATTRS = {BlipAttention: VISION_ATTRS, BlipTextSelfAttention: TEXT_ATTRS}


def check_assumptions(model: torch.nn.Module) -> int:
    """Raise RuntimeError naming what is missing if the installed transformers breaks the patch; return #modules."""
    version = Version(transformers.__version__)
    if not Version(TRANSFORMERS_MIN) <= version < Version(TRANSFORMERS_BELOW):
        raise RuntimeError(f"blipnb's SDPA patch supports transformers>={TRANSFORMERS_MIN},<{TRANSFORMERS_BELOW}; "
                           f"found {transformers.__version__}. Use attn_implementation='eager' or update "
                           "blipnb.model.sdpa.")
    params = inspect.signature(BlipTextSelfAttention.forward).parameters
    for name in TEXT_FORWARD_ARGS:
        if name not in params:
            raise RuntimeError(f"BlipTextSelfAttention.forward has no {name!r} argument in transformers "
                               f"{transformers.__version__}; blipnb's SDPA patch needs updating")
    _check_runtime_api()
    n = 0
    for name, module in model.named_modules():
        base = EAGER_CLASS.get(type(module), type(module))
        for attr in REQUIRED_ATTRS.get(base, ()):
            if not hasattr(module, attr):
                raise RuntimeError(f"{base.__name__} at {name!r} has no attribute {attr!r} in transformers "
                                   f"{transformers.__version__}; blipnb's SDPA patch needs updating")
        n += base in REQUIRED_ATTRS
    if n == 0:
        raise RuntimeError(f"no BLIP attention modules found in {type(model).__name__}; nothing to patch")
    return n


def _check_runtime_api() -> None:
    # The text forward relies on these cache internals and on the output collector; probe them on tiny objects.
    try:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache
        from transformers.utils.output_capturing import _active_collector

        _active_collector.get()
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        x = torch.zeros(1, 1, 1, 1)
        for part in (cache.self_attention_cache, cache.cross_attention_cache):
            part.update(x, x, 0)
            _ = part.layers[0].keys, part.layers[0].values
        cache.is_updated[0] = bool(cache.is_updated.get(0))
    except (ImportError, AttributeError, TypeError, IndexError) as e:
        raise RuntimeError(f"transformers {transformers.__version__} changed an API blipnb's SDPA patch relies on "
                           f"(cache objects or output capturing): {e}") from e


def enable_sdpa(model: torch.nn.Module) -> torch.nn.Module:
    """Make every BLIP attention module in `model` compute with SDPA, in place; idempotent; returns `model`."""
    check_assumptions(model)  # before touching anything, so a failure leaves the model as it was
    for module in model.modules():
        if type(module) in SDPA_CLASS:
            module.__class__ = SDPA_CLASS[type(module)]
    setattr(model, MARKER, "sdpa")
    return model


def disable_sdpa(model: torch.nn.Module) -> torch.nn.Module:
    """Undo `enable_sdpa`: restore HF's eager attention classes, in place; returns `model`."""
    for module in model.modules():
        if type(module) in EAGER_CLASS:
            module.__class__ = EAGER_CLASS[type(module)]
    if hasattr(model, MARKER):
        delattr(model, MARKER)
    return model


def sdpa_enabled(model: torch.nn.Module) -> bool:
    """Whether `enable_sdpa` patched `model`."""
    return getattr(model, MARKER, None) == "sdpa"
