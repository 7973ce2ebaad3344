"""The model card carries the numbers of the run that wrote it."""
import pytest
from helpers import tiny_config

from blipnb import runs
from blipnb.scoring.bootstrap import paired_comparison
from blipnb.evaluation.card import model_card, write_model_card
from blipnb.evaluation import BASELINE, FINETUNED, format_value, summarise
from blipnb.schema import CIDER
from blipnb.scoring import score_captions

REFS = {f"im{i}": [f"a red circle in the top left number {i}", f"one red circle at the top left {i}",
                   "a red circle"] for i in range(12)}


def fake_metrics(cfg, meteor=None):
    good = score_captions({k: v[0] for k, v in REFS.items()}, REFS, do_spice=False, meteor=meteor)
    bad = score_captions({k: "a blue square" for k in REFS}, REFS, do_spice=False, meteor=meteor)
    return {"blipnb_version": "test", "split": "test", "source": "sample", "n_images": len(REFS),
            "split_hash": "abc123", "models": {FINETUNED: "model", BASELINE: "base_model"},
            "decoding": {"num_beams": 3, "max_new_tokens": 20, "prompt": ""},
            "results": {FINETUNED: summarise(good, cfg, meteor=meteor), BASELINE: summarise(bad, cfg, meteor=meteor)},
            "comparison": paired_comparison(good, bad, n_boot=100, meteor=meteor)}


@pytest.fixture(scope="module")
def scored(tmp_path_factory, meteor):
    """Scored once, with the session's METEOR JVM."""
    cfg = tiny_config(tmp_path_factory.mktemp("run"), n_bootstrap=100)
    return cfg, fake_metrics(cfg, meteor)


def test_card_has_the_metrics_cis_baseline_and_limitations(scored):
    cfg, metrics = scored
    card = model_card(cfg, metrics)
    ours = metrics["results"][FINETUNED]
    shown = lambda value: format_value(CIDER, value)  # noqa: E731
    assert shown(ours["metrics"][CIDER]) in card
    assert shown(ours["ci"][CIDER]["low"]) in card and shown(ours["ci"][CIDER]["high"]) in card
    assert shown(metrics["results"][BASELINE]["metrics"][CIDER]) in card
    assert shown(metrics["comparison"][CIDER]["diff"]) in card
    assert "abc123" in card and "synthetic" in card and "SPICE unavailable" in card
    assert "learning_rate: 0.001" in card
    assert "Decoding differs" not in card


def test_card_says_when_decoding_differs_from_validation(scored):
    cfg, metrics = scored
    differs = {**metrics, "decoding_differs_from_validation": ["num_beams 3 -> 5", "consensus_samples 24 -> 0"]}
    card = model_card(cfg, differs)
    assert "**Decoding differs from validation:** num_beams 3 -> 5, consensus_samples 24 -> 0." in card


def test_write_model_card_lands_in_the_export(scored):
    cfg, metrics = scored
    path = write_model_card(cfg, metrics)
    assert path == runs.RunDir(cfg.run_dir) / runs.MODEL_DIR / runs.MODEL_CARD
    assert path.read_text().startswith("---\nlibrary_name: transformers")


def test_push_to_hub_offline_fails_with_one_clear_message(scored, monkeypatch):
    import dataclasses

    from blipnb.evaluation.publish import push_export
    cfg, _ = scored
    cfg = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, push_to_hub=True, hub_model_id="me/blip-test"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"push_to_hub to 'me/blip-test' failed.*The export stays in"):
        push_export(cfg)
