"""Shared pytest setup: everything runs offline; the tiny model that really learns is trained once per session."""

import os

# Set before any test imports datasets/transformers/evaluate, which read these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


import pytest  # noqa: E402


@pytest.fixture
def isolated_caches(tmp_path, monkeypatch):
    """load_dataset prepares local parquet into the HF cache; keep that and the sample cache inside tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("BLIPNB_CACHE", str(tmp_path / "blipnb_cache"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One short training run on the sample, shared by every test that needs a trained model (about 15 s on 2
    cores): (cfg, ds, model, processor, train results). Tests must not train it further."""
    from helpers import LEARN, tiny_config

    from blipnb.data import load_captions
    from blipnb.model.modeling import start_model
    from blipnb.training import train_model

    cfg = tiny_config(tmp_path_factory.mktemp("trained"), **LEARN)
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    results = train_model(cfg, model, processor, ds)
    return cfg, ds, model, processor, results


@pytest.fixture(scope="session")
def meteor():
    """One METEOR JVM for the tests that score with Java several times (each start costs ~10 s of a core)."""
    from blipnb.scoring.meteor import MeteorScorer

    with MeteorScorer() as scorer:
        yield scorer


@pytest.fixture
def no_java(monkeypatch):
    """PATH without java: the PTB tokenizer's Python fallback, METEOR and SPICE unavailable with their reason. For
    tests whose point is not Java's own scores."""
    import os
    import shutil

    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                               if not shutil.which("java", path=p)))
