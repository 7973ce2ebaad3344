"""Every training path computes in the precision asked for (CPU bf16 autocast here; the same code runs CUDA's):
a hook on a linear layer of the vision tower and of the language side records the dtype of its output during the
first training step, and the bf16 loss of a batch stays close to its fp32 loss."""
from __future__ import annotations

import os
import socket

import pytest
import torch
from helpers import tiny_config

from blipnb.data import load_captions
from blipnb.model.modeling import start_model
from blipnb.model.precision import dtype_name, observed_dtypes
from blipnb.runtime.families import family_of
from blipnb.training import trainer as trainer_module
from blipnb.training.trainer import build_trainer, train_model

PATHS = {
    "pairs": {},
    "shared_vision": {"shared_vision": True},
    "cached_embeddings": {"finetune_method": "freeze_vision", "cache_embeddings": True},
    "lora": {"finetune_method": "lora"},
    "lora_shared_vision": {"finetune_method": "lora", "shared_vision": True},
}
# bf16 keeps 8 bits of mantissa: on one batch of the tiny model its loss stays within this share of fp32's.
LOSS_TOLERANCE = 0.02


def config(tmp_path, precision, **extra):
    return tiny_config(tmp_path / precision, precision=precision, max_steps=1, eval_strategy="no", **extra)


def trained_dtypes(cfg) -> dict:
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    return train_model(cfg, model, processor, ds)["compute_dtype"]


def expected(precision: str, path: str) -> dict:
    return {"vision": None if path == "cached_embeddings" else precision, "decoder": precision}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_of_each_training_path(tmp_path, path, precision):
    assert trained_dtypes(config(tmp_path, precision, **PATHS[path])) == expected(precision, path)


def first_batch_losses(tmp_path, path_settings: dict) -> dict:
    """The loss of the same first batch, from the same initial weights, under fp32 and under bf16."""
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = config(tmp_path, precision, **path_settings)
        ds = load_captions(cfg.data)
        model, processor = start_model(cfg, ds)  # seeded: the same weights for both
        trainer = build_trainer(cfg, model, processor, ds)
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        with torch.no_grad():
            losses[precision] = float(trainer.compute_loss(trainer.model, batch))
    return losses


@pytest.mark.parametrize("path", PATHS)
def test_precision_bf16_loss_tracks_fp32_on_the_same_batch(tmp_path, path):
    losses = first_batch_losses(tmp_path, PATHS[path])
    assert losses["bf16"] != losses["fp32"]  # it really computed in bf16
    assert abs(losses["bf16"] - losses["fp32"]) <= LOSS_TOLERANCE * losses["fp32"], losses


@pytest.fixture
def aot_eager(monkeypatch):
    """torch.compile's graph capture without C++ code generation (inductor takes minutes on 2 cores): the same
    tracing, under the same autocast, that the compiled paths go through."""
    original = trainer_module.training_arguments

    def arguments(cfg):
        args = original(cfg)
        if args.torch_compile:
            args.torch_compile_backend = "aot_eager"
        return args

    monkeypatch.setattr(trainer_module, "training_arguments", arguments)
    real_compile = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: real_compile(self, backend="aot_eager", **kw))
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("path", ["pairs", "shared_vision"])
def test_precision_with_compile(tmp_path, aot_eager, path):
    cfg = config(tmp_path, "bf16", compile=True, **PATHS[path])
    assert trained_dtypes(cfg) == expected("bf16", path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_under_ddp(tmp_path, monkeypatch, precision):
    """The DDP branch of compute_loss (forward_inside_ddp, which stands in for accelerate's autocast-wrapped
    forward) on a one-process gloo group, with the shared vision pass: it computes in the precision asked."""
    import torch.distributed as dist

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    cfg = config(tmp_path, precision, shared_vision=True)
    ds = load_captions(cfg.data)
    model, processor = start_model(cfg, ds)
    trainer = build_trainer(cfg, model, processor, ds)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        with observed_dtypes(model, family_of(model).vision_tower(model)) as seen:
            trainer.compute_loss(ddp, batch).backward()
        del ddp  # its reducer holds the process group: released before the group is destroyed, not after
    finally:
        dist.destroy_process_group()
    assert {k: dtype_name(v) for k, v in seen.items()} == expected(precision, "shared_vision")


def test_precision_mismatch_is_said_in_one_line(capsys):
    from blipnb.training.precision import PrecisionCheck

    check = PrecisionCheck("bf16")
    check.observed = {"vision": "fp32", "decoder": "bf16"}
    line = check.mismatch()
    assert line.count("\n") == 0 and "vision tower in fp32" in line and "bf16 asked" in line
    check.observed = {"vision": None, "decoder": "bf16"}  # the vision tower did not run (cached embeddings): fine
    assert check.mismatch() is None
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
