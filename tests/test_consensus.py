"""Consensus decoding (GenerationConfig.consensus_samples): draw N captions, keep the one the others agree with most.

The ranking is blipnb.runtime.consensus.consensus_order; the draws are seeded per call and leave the caller's random
state alone, so a run's captions repeat and training is not disturbed by its validation.
"""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from blipnb.config import GenerationConfig, ModelConfig
from blipnb.errors import ParameterError
from blipnb.runtime import consensus, hosts
from blipnb.runtime.captioner import Captioner, caption_inputs, draw_captions
from blipnb.runtime.decoding import MAX_CONSENSUS_SAMPLES, Decoding
from blipnb.model.generation import caption_batch
from blipnb.model.modeling import eval_mode, load_model
from blipnb.model.tiny import build_tiny_blip

CAPTIONS = ["a red circle at the top left", "a small blue square at the bottom right",
            "there is a big green triangle", "two shapes: a yellow circle and a red square"]


def test_the_wording_most_draws_share_comes_first():
    draws = ["a big red circle", "a red circle on the left", "a large red circle", "a red circle on the left",
             "a red square on the left", "a red circle on the left ."]
    order = consensus.consensus_order(draws)
    assert order[0] in (1, 3) and set(order) == set(range(len(draws)))
    assert consensus.consensus_order(["x y", "x y", "u v"])[:2] == [0, 1]  # ties keep the drawing order


def test_a_wording_drawn_more_often_counts_more():
    """Repeats are evidence: 'a blue square' drawn three times beats a wording closer to the rest on average."""
    draws = ["a blue square", "a blue square", "a blue square", "a small blue square", "a blue square left"]
    assert consensus.consensus_order(draws)[0] == 0
    assert consensus.consensus_order(["a cat", "a dog", "a dog"])[0] == 1


def test_length_difference_is_penalised_like_cider_d():
    """Same n-grams, different length: the Gaussian penalty (sigma 6 words) lowers the similarity."""
    short, long = "a red circle", "a red circle " + " ".join(["and more"] * 6)
    near = consensus.consensus_order([short, "a red circle", long])
    assert near[-1] == 2


def test_empty_and_single_draws_rank_without_error():
    assert consensus.consensus_order(["", ""]) == [0, 1]
    assert consensus.consensus_order(["a caption"]) == [0]


@pytest.mark.parametrize("bad", [1, -1, MAX_CONSENSUS_SAMPLES + 1])
def test_consensus_samples_out_of_range_is_refused_by_name(bad):
    with pytest.raises(ParameterError, match="consensus_samples"):
        GenerationConfig(consensus_samples=bad)
    with pytest.raises(hosts.BadRequest, match="consensus_samples"):
        hosts.request_decoding(Decoding(), {"consensus_samples": bad})


def test_consensus_differences_name_the_draws_and_their_temperature():
    run = GenerationConfig(consensus_samples=16, temperature=0.7)
    assert run.differences(GenerationConfig(consensus_samples=16, temperature=0.7, num_beams=2)) == []
    assert GenerationConfig(num_beams=3).differences(run) == [
        "num_beams 5 -> 3", "temperature 0.7 -> 1.0", "consensus_samples 16 -> 0"]
    assert GenerationConfig(consensus_samples=16).differences(run) == ["temperature 0.7 -> 1.0"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = ModelConfig(image_size=32, patch_size=16, hidden_size=32, num_layers=1, num_heads=2, vocab_size=80)
    return build_tiny_blip(CAPTIONS, tmp_path_factory.mktemp("tiny") / "m", cfg, seed=0)


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir, attn_implementation="eager")


def test_a_deployed_captioner_decodes_by_consensus_on_request(model_dir):
    """A request may ask for consensus decoding; it draws as blipnb does and repeats itself."""
    captioner = Captioner(model_dir, device="cpu")
    image = Image.new("RGB", (40, 40), "green")
    settings = hosts.request_decoding(captioner.decoding,
                                      {"consensus_samples": 5, "temperature": 1.5, "max_new_tokens": 6})
    once = captioner.caption([image, image], [settings, settings])
    assert once == captioner.caption([image, image], [settings, settings])
    gen = GenerationConfig(consensus_samples=5, temperature=1.5, max_new_tokens=6)
    net, processor = load_model(model_dir, attn_implementation="eager")
    with eval_mode(net):
        assert caption_batch(net, processor, [image, image], gen) == once


def test_consensus_captions_repeat_keep_the_callers_rng_and_are_the_top_draw(model):
    net, processor = model
    gen = GenerationConfig(consensus_samples=6, max_new_tokens=6, temperature=1.5)
    images = [Image.new("RGB", (40, 40), c) for c in ("red", "blue", "green")]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with eval_mode(net):
        first = caption_batch(net, processor, images, gen)
        assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is untouched
        assert caption_batch(net, processor, images, gen) == first  # the same captions again
        # An image's draws are its own: the same alone, first or last in a batch.
        assert [caption_batch(net, processor, [im], gen)[0] for im in images] == first
        assert caption_batch(net, processor, images[::-1], gen)[::-1] == first
        draws = draw_captions(net, processor, caption_inputs(net, processor, images, gen), gen)
        assert len(draws) == 18 and len(set(draws[:6])) > 1  # untrained at temperature 1.5: the draws differ
        for n, caption in enumerate(first):  # what is returned is the draw the others agree with most
            own = draws[6 * n:6 * n + 6]
            assert caption == own[consensus.consensus_order(own)[0]]
        several = caption_batch(net, processor, images, gen, num_return_sequences=3)
        assert len(several) == 9 and several[0::3] == first  # the best three per image, best first
        assert all(len(set(several[3 * n:3 * n + 3])) == min(3, len(set(draws[6 * n:6 * n + 6]))) for n in range(3))


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.8)])
def test_seeded_draws_sample_the_tempered_nucleus(temperature, top_p):
    """Gumbel-max with hashed noise: over many rows, each token is drawn as often as softmax(logits / T) within
    the top_p nucleus says, and the one token drawn is all generate's own sampler is left with."""
    rows = consensus._mix(torch.arange(40_000, dtype=torch.int64))
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    out = consensus.SeededDraws(rows, temperature, top_p)(torch.zeros(len(rows), 3, dtype=torch.long),
                                                           logits.repeat(len(rows), 1))
    assert (torch.isfinite(out).sum(dim=1) == 1).all()
    expected = torch.softmax(logits / temperature, dim=0)
    keep = (expected.cumsum(0) - expected) <= top_p
    expected = torch.where(keep, expected, 0.0) / expected[keep].sum()
    seen = torch.bincount(out.argmax(dim=1), minlength=4) / len(rows)
    assert torch.allclose(seen, expected, atol=0.01), (seen, expected)
