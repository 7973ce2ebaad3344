"""Training and captioning under DDP: `torchrun --standalone --nproc_per_node 2` on CPU (gloo), tiny configs.

The workers run a small script written into tmp_path: it calls blipnb's own train_run and captioning and records,
per rank, which training items it was given (a spy on the dataset), what it wrote into the run directory (a
Python audit hook) and what it captioned. Nothing here is a hook in blipnb itself.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import TINY, tiny_config, without_dropout

from blipnb.runtime.family_names import NAMES as FAMILY_NAMES

WORKER = textwrap.dedent('''
    """One torchrun worker: train_run with spies, then (optionally) caption the validation split and a folder."""
    import json, os, sys
    from pathlib import Path

    rank = int(os.environ["RANK"])
    out, params, folder = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), sys.argv[3]
    run_dir = Path(params["run_dir"]).resolve()
    writes = []

    def audit(event, args):
        """Record every change this process makes under the run directory."""
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
            paths = [path] if writing else []
        elif event == "os.mkdir":
            paths = [] if os.path.exists(args[0]) else [args[0]]
        elif event in ("os.rename", "os.replace"):
            paths = [args[0], args[1]]
        elif event in ("os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
            paths = [args[0]]
        else:
            return
        for p in paths:
            try:
                p = Path(os.fsdecode(p)).resolve()
            except (TypeError, ValueError):
                continue
            if p == run_dir or run_dir in p.parents:
                writes.append(str(p.relative_to(run_dir)))

    sys.addaudithook(audit)

    import safetensors.torch, torch  # their files are written in C: record the Python call instead

    def recorded(save):
        def wrapper(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)):
                audit("open", (f, "wb", 0))
            return save(obj, f, *args, **kwargs)
        return wrapper

    torch.save, safetensors.torch.save_file = recorded(torch.save), recorded(safetensors.torch.save_file)

    from blipnb.config import build_config
    from blipnb.model import tiny
    from blipnb.model.collate import CaptionPairs
    from blipnb.training import cache
    from blipnb.training.run import train_run

    seen, built = [], []  # training items given to this rank; what this rank built
    get_item, make_datasets = CaptionPairs.__getitem__, cache.training_datasets
    build_tiny, build_pixels, embed = tiny.build_tiny, cache.build_pixel_cache, cache.compute_embeddings

    def spy_item(self, k):
        if getattr(self, "_spied", False):
            seen.append(k)
        return get_item(self, k)

    def spy_datasets(*args, **kwargs):
        train, val = make_datasets(*args, **kwargs)
        train._spied = True
        if getattr(train, "embeddings", None) is not None:
            built.append("embeddings in memory" if train.embeddings.data is not None else "embeddings mapped")
        return train, val

    def spy_tiny(*args, **kwargs):
        built.append("base model")
        if os.environ.get("NO_DROPOUT"):  # see helpers.without_dropout
            from helpers import without_dropout

            return without_dropout(build_tiny(*args, **kwargs))
        return build_tiny(*args, **kwargs)

    def spy_pixels(*args, **kwargs):
        pixels = build_pixels(*args, **kwargs)
        if pixels.built:
            built.append("pixels " + args[2]["split"])
        return pixels

    def spy_embed(*args, **kwargs):
        built.append("embeddings")
        return embed(*args, **kwargs)

    CaptionPairs.__getitem__, cache.training_datasets = spy_item, spy_datasets
    tiny.build_tiny, cache.build_pixel_cache, cache.compute_embeddings = spy_tiny, spy_pixels, spy_embed
    cfg = build_config(params)
    results = train_run(cfg)
    record = {"rank": rank, "seen": seen, "built": built, "results": results}
    if folder != "-":
        import torch.distributed as dist
        from blipnb.data import load_captions
        from blipnb.model.generation import caption_folder, caption_split
        from blipnb.model.modeling import load_model

        dist.barrier()  # rank 0 has written the export
        model, processor = load_model(run_dir / "model", attn_implementation=cfg.model.attn_implementation)
        ds = load_captions(cfg.data)
        record["captions"] = list(caption_split(model, processor, ds["validation"], cfg.generation).items())
        record["folder"] = caption_folder(folder, model, processor, cfg.generation, out / "captions.csv")
    record["writes"] = writes
    (out / f"rank{rank}.json").write_text(json.dumps(record, default=str))
    from blipnb.training.distributed import finish

    finish()  # leave the process group as blipnb train does: gloo's threads must not outlive the interpreter
''')


def _torchrun(tmp_path, name, params, nproc=2, folder="-", timeout=240, no_dropout=False):
    """Run WORKER under torchrun with `params` (the tiny model without dropout if asked); returns each rank's
    record."""
    out = tmp_path / name
    out.mkdir()
    script, param_file = tmp_path / "worker.py", out / "params.json"
    script.write_text(WORKER)
    param_file.write_text(json.dumps(params))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           **({"NO_DROPOUT": "1"} if no_dropout else {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(script), str(out), str(param_file), str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]


def _params(run_dir, **overrides):
    return {**TINY, "run_dir": str(run_dir), **overrides}


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One epoch on 2 processes, per (image, caption) pair, validating by captioning, with TensorBoard; then both
    ranks caption the validation split and a folder (with one unreadable file) from the export."""
    tmp = tmp_path_factory.mktemp("ddp")
    folder = tmp / "images"
    folder.mkdir()
    cfg = tiny_config(tmp / "run")
    from blipnb.data import load_captions

    for i, row in enumerate(load_captions(cfg.data)["test"].select(range(7))):
        row["image"].save(folder / f"img_{i}.png")
    (folder / "img_3b.png").write_bytes(b"not a png")  # sorts between img_3 and img_4
    # 48 images x 5 captions = 240 pairs = 15 steps of 2 x 8: the epoch splits evenly, no rank repeats a pair.
    params = _params(tmp / "run", batch_size=8, report_to="tensorboard", eval_max_images=None)
    records = _torchrun(tmp, "pairs", params, folder=folder)
    return tmp / "run", params, records, folder


@pytest.mark.slow
def test_ddp_ranks_train_disjoint_shards_that_cover_the_epoch(ddp_run):
    _, _, records, _ = ddp_run
    shards = [r["seen"] for r in records]
    assert all(len(s) == 120 for s in shards), [len(s) for s in shards]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(240))


@pytest.mark.slow
def test_ddp_only_rank_0_writes_the_run_directory(ddp_run):
    run_dir, _, records, _ = ddp_run
    rank0, rank1 = (set(r["writes"]) for r in records)
    # The observer sees rank 0's writes, so an empty rank-1 list means something.
    for name in ("config.json", "log_history.json", "train_results.json", "provenance.json",
                 "model/processor_config.json", "base_model/config.json"):
        assert name in rank0, name
    assert any(w.startswith("logs/") for w in rank0)
    # The one exception: the HF Trainer saves each rank's RNG state in a checkpoint (to resume exactly).
    allowed = {w for w in rank1 if w == "checkpoints" or w.startswith("checkpoints/") and
               (w.endswith("/rng_state_1.pth") or w.count("/") == 1)}
    assert rank1 - allowed == set(), sorted(rank1 - allowed)
    files = {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}
    assert not [f for f in files if ".tmp" in f or Path(f).name.startswith(".")]  # no partial files
    # Every file is one rank 0 was seen writing (tokenizers writes tokenizer.json in Rust, beside its config).
    unexplained = files - rank0 - allowed - {f for f in files if f.endswith("tokenizer.json")}
    assert unexplained == set(), sorted(unexplained)
    assert len(list((run_dir / "logs").glob("events.out.tfevents.*"))) == 1  # one TensorBoard writer
    assert (run_dir / "model" / "model.safetensors").exists()


@pytest.mark.slow
def test_ddp_rank_0_builds_the_base_model_and_the_caches_once(tmp_path):
    """The tiny base model, the uint8 pixel caches and the frozen-vision embeddings: built by rank 0, read from
    disk by rank 1 (the embeddings memory-mapped, not a private copy)."""
    params = _params(tmp_path / "run", pixel_cache=True, finetune_method="freeze_vision", cache_embeddings=True,
                     max_steps=2, eval_max_images=4)
    rank0, rank1 = _torchrun(tmp_path, "caches", params)
    assert rank0["built"] == ["base model", "pixels train", "pixels validation", "embeddings",
                              "embeddings mapped"]
    assert rank1["built"] == ["embeddings mapped"]
    assert (tmp_path / "run" / "cache" / "embeddings-train.npy").exists()
    assert rank0["results"]["best_metric"] == rank1["results"]["best_metric"] is not None


@pytest.mark.slow
def test_ddp_ranks_choose_the_same_best_checkpoint(ddp_run):
    run_dir, _, records, _ = ddp_run
    r0, r1 = (r["results"] for r in records)
    assert r0["best_checkpoint"] and r0["best_checkpoint"] == r1["best_checkpoint"]
    assert r0["best_metric"] == r1["best_metric"]
    assert r0["global_step"] == r1["global_step"] == 15
    assert [r["built"] for r in records] == [["base model"], []]
    history = json.loads((run_dir / "log_history.json").read_text())
    assert [h["eval_cider"] for h in history if "eval_cider" in h] == [r0["best_metric"]]
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["num_processes"] == 2


@pytest.mark.slow
def test_ddp_sharded_captioning_matches_one_process(ddp_run, tmp_path):
    """caption_split and caption_folder on 2 ranks: the same captions, in the same order, as in one process."""
    from blipnb.config import build_config
    from blipnb.data import load_captions
    from blipnb.model.generation import caption_folder, caption_split
    from blipnb.model.modeling import load_model

    run_dir, params, records, folder = ddp_run
    cfg = build_config(params)
    model, processor = load_model(run_dir / "model", attn_implementation=cfg.model.attn_implementation)
    val = load_captions(cfg.data)["validation"]
    single = list(caption_split(model, processor, val, cfg.generation).items())
    assert len(single) == 12
    for r in records:
        assert [tuple(pair) for pair in r["captions"]] == single
    report = caption_folder(folder, model, processor, cfg.generation, tmp_path / "one.csv")
    assert report["n_captioned"] == 7 and [e["file_name"] for e in report["errors"]] == ["img_3b.png"]
    for r in records:
        assert r["folder"]["n_captioned"] == report["n_captioned"]
        assert r["folder"]["errors"] == report["errors"]
    assert Path(records[0]["folder"]["out_path"]).read_text() == (tmp_path / "one.csv").read_text()


# Max abs difference of any weight, 2 x b against 1 x 2b (fp32, AdamW, lr 1e-3, weights move by ~2e-3). Measured
# on CPU (gloo, torch 2.13): 1.5e-6 per pair after 3 steps, 6.1e-7 with shared_vision after 6. Without weighting
# each rank's loss by its tokens (training.distributed.token_share) it was 3.3e-3.
EQUIVALENCE_ATOL = 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("shared_vision, family", [(False, "blip"), (True, "blip")] + [
    (False, name) for name in FAMILY_NAMES if name != "blip"],
    ids=["pairs", "shared_vision"] + [f"family-{name}" for name in FAMILY_NAMES if name != "blip"])
def test_ddp_two_processes_match_one_process_with_the_double_batch(tmp_path, monkeypatch, shared_vision, family):
    """k optimiser steps of 2 processes x per-device batch b give the weights of 1 process x batch 2b: BLIP per
    pair and with the shared vision pass, and every other family (decoders and Florence-2's encoder-decoder), each
    without dropout (the tiny BLIP has none; two processes draw other masks than one)."""
    from blipnb.model import tiny

    build = tiny.build_tiny
    monkeypatch.setattr(tiny, "build_tiny", lambda *a, **k: without_dropout(build(*a, **k)))
    from safetensors.torch import load_file

    from blipnb.training.run import train_run

    # shared_vision: 4 images (20 captions) per device, the whole epoch of 48 images (6 steps of 2 x 4);
    # per pair: 8 pairs per device, 3 of the epoch's 15 steps.
    b, steps = (4, 6) if shared_vision else (8, 3)
    common = dict(eval_strategy="no", max_steps=steps, precision="fp32", seed=7, shared_vision=shared_vision,
                  logging_steps=1, family=family)
    records = _torchrun(tmp_path, "two", _params(tmp_path / "two", batch_size=b, **common), no_dropout=True)
    train_run(tiny_config(tmp_path / "one", batch_size=2 * b, **common))
    if shared_vision:  # the image-grouped dataset is sharded too: each rank half the images, once each
        seen = [r["seen"] for r in records]
        assert len(seen[0]) == len(seen[1]) == 24 and sorted(seen[0] + seen[1]) == list(range(48))
    two, one = (load_file(tmp_path / d / "model" / "model.safetensors") for d in ("two", "one"))
    base = load_file(tmp_path / "one" / "base_model" / "model.safetensors")
    assert two.keys() == one.keys()
    moved = max((one[k] - base[k]).abs().max().item() for k in one)
    diff = max((two[k] - one[k]).abs().max().item() for k in one)
    print(f"max abs weight difference 2x{b} vs 1x{2 * b}: {diff:.3g} (weights moved up to {moved:.3g})")
    assert moved > 100 * EQUIVALENCE_ATOL  # training really changed the weights
    assert diff <= EQUIVALENCE_ATOL, diff
    losses = [[h["loss"] for h in json.loads((tmp_path / d / "log_history.json").read_text()) if "loss" in h]
              for d in ("two", "one")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_ddp_token_share_weights_ranks_by_their_tokens():
    """Unit check of the weighting, in one process with a gloo group of one: the share is then exactly 1."""
    import torch.distributed as dist

    from blipnb.training.distributed import token_share

    if dist.is_initialized():
        pytest.skip("a process group is already set up")
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        labels = torch.tensor([[1, 5, 6, -100], [1, 7, -100, -100]])
        assert token_share(labels).item() == 1.0
    finally:
        dist.destroy_process_group()


def test_ddp_worker_error_is_found_in_a_torchrun_log():
    from blipnb.training.distributed import worker_error

    log = ["[rank1]: Traceback (most recent call last):",  # rank 1 waited for rank 0, which died first
           "[rank1]: RuntimeError: [../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1929",
           "[rank0]: Traceback (most recent call last):", '[rank0]:   File "x.py", line 1, in <module>',
           "[rank0]: FileNotFoundError: [Errno 2] No such file: 'imgs'",
           "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:"]
    assert worker_error(log) == "FileNotFoundError: [Errno 2] No such file: 'imgs'"
    assert worker_error(["noise", "blipnb train: parameter 'epochs' must be > 0, got 0", "ValueError: x"]) == \
        "blipnb train: parameter 'epochs' must be > 0, got 0"


@pytest.mark.slow
def test_ddp_launch_fails_with_the_workers_error(tmp_path, capsys):
    """num_processes > 1 outside a launcher starts torchrun, streams its log, and a failing worker fails the
    caller (notebook 02's cell) with the worker's own message."""
    from blipnb.training.distributed import WorkerFailed
    from blipnb.training.run import train_run

    cfg = tiny_config(tmp_path / "run", source="folder", data_dir=str(tmp_path / "no_such_folder"), num_processes=2)
    with pytest.raises(WorkerFailed, match="no_such_folder") as err:
        train_run(cfg)
    assert "\n" not in str(err.value)
    assert "--nproc_per_node 2 -m blipnb.train" in capsys.readouterr().out


ACCELERATE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "accelerate_multi_gpu.yaml"


def test_ddp_accelerate_config_parses_with_accelerates_loader():
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(ACCELERATE_CONFIG))  # rejects unknown keys
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == DistributedType.MULTI_GPU and config.mixed_precision == "bf16"
    assert config.num_machines == 1 and not config.use_cpu
    assert not (config.fsdp_config or config.deepspeed_config)  # plain DDP


@pytest.mark.slow
def test_ddp_accelerate_launch_with_the_shipped_config(tmp_path):
    """`accelerate launch --config_file configs/accelerate_multi_gpu.yaml -m blipnb.train`: on this CPU machine
    with --mixed_precision no (bf16 autocast is for the GPUs the config is for); 2 processes over gloo."""
    run_dir, param_file = tmp_path / "run", tmp_path / "params.yaml"
    param_file.write_text(json.dumps(_params(run_dir, max_steps=2, eval_strategy="no")))  # JSON is YAML
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--config_file",
           str(ACCELERATE_CONFIG), "--mixed_precision", "no", "-m", "blipnb.train", "-f", str(param_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert json.loads((run_dir / "provenance.json").read_text())["num_processes"] == 2
    assert json.loads((run_dir / "train_results.json").read_text())["global_step"] == 2
    assert (run_dir / "model" / "model.safetensors").exists()
