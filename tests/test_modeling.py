import pytest
import torch

from blipnb.config import ModelConfig
from blipnb.errors import ModelUnavailable
from blipnb.model.modeling import count_parameters, load_model, prepare_for_training
from blipnb.model.tiny import build_tiny_blip, train_tokenizer

CAPTIONS = ["a large red circle in the top left", "there is a small blue square at the bottom right",
            "two shapes: a green triangle and a purple circle"] * 20


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_blip(CAPTIONS, tmp_path_factory.mktemp("tiny"), ModelConfig(from_scratch=True, image_size=32,
                                                                                    vocab_size=100))


def test_tokenizer_is_trained_and_has_blip_specials():
    tok = train_tokenizer(CAPTIONS, 100)
    assert len(tok) > 20
    ids = tok("a red circle").input_ids
    assert tok.unk_token_id not in ids  # the vocabulary was really used (the vocab_file trap gives all [UNK])
    assert tok.bos_token == "[DEC]" and tok.eos_token == "[SEP]" and tok.pad_token == "[PAD]"


def test_tiny_blip_round_trips_through_from_pretrained(tiny_dir):
    model, processor = load_model(tiny_dir, attn_implementation="eager")
    tok, text = processor.tokenizer, model.config.text_config
    assert text.bos_token_id == tok.convert_tokens_to_ids("[DEC]") == tok.bos_token_id
    assert text.sep_token_id == tok.sep_token_id and text.pad_token_id == tok.pad_token_id
    assert model.config.vision_config.initializer_range == 0.02
    assert type(processor.image_processor).__name__ == "BlipImageProcessorPil"
    again, _ = load_model(tiny_dir, attn_implementation="eager")
    for (n, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def test_sdpa_is_applied_on_load(tiny_dir):
    from blipnb.model.sdpa import sdpa_enabled
    assert sdpa_enabled(load_model(tiny_dir, attn_implementation="sdpa")[0])
    assert not sdpa_enabled(load_model(tiny_dir, attn_implementation="eager")[0])


def test_freeze_vision_and_label_smoothing(tiny_dir):
    model, _ = load_model(tiny_dir, attn_implementation="eager")
    before = count_parameters(model)
    prepare_for_training(model, freeze_vision=True, label_smoothing=0.1)
    after = count_parameters(model)
    assert after["total"] == before["total"] and after["trainable"] < before["trainable"]
    assert not any(p.requires_grad for p in model.vision_model.parameters())
    assert model.text_decoder.label_smoothing == 0.1


def test_missing_model_fails_with_one_clear_message(tmp_path):
    with pytest.raises(ModelUnavailable, match="sample.yaml"):
        load_model("Salesforce/blip-no-such-model")
    with pytest.raises(ModelUnavailable, match="local directory"):
        load_model(tmp_path)
