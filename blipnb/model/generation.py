"""Caption images in batches from their pixels only (plus the family's fixed prompt), one caption per image.

Under torch.distributed (world size > 1) caption_split and caption_folder share the images out: rank r captions
images r, r + world, ..., and every rank gets all captions back in the original order. Every rank must call them.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import datasets
import torch

from ..config import GenerationConfig
from ..progress import progress_bar
from ..runs import check_caption_output
from ..schema import undecoded
from ..runtime.captioner import autocast, caption_inputs, generate_captions
from ..runtime.images import to_rgb
from .modeling import eval_mode

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@torch.no_grad()
def caption_batch(model, processor, images: Sequence, gen: GenerationConfig, names: Sequence[str] | None = None,
                  num_return_sequences: int = 1) -> list[str]:
    """Caption one batch of images; never sees a reference caption."""
    pil = [to_rgb(im, names[i] if names else None) for i, im in enumerate(images)]
    inputs = caption_inputs(model, processor, pil, gen)
    with autocast(next(model.parameters()).device):  # the same generate call as a deployed model's
        return generate_captions(model, processor, inputs, gen, num_return_sequences)


def caption_images(model, processor, images: Iterable, gen: GenerationConfig, names: Sequence[str] | None = None,
                   progress: bool = True, desc: str = "captioning") -> list[str]:
    """Caption many images in batches of `gen.gen_batch_size`, with a progress bar."""
    images = list(images)
    out: list[str] = []
    bs = gen.gen_batch_size
    with eval_mode(model):
        for start in progress_bar(range(0, len(images), bs), desc=desc, disable=not progress, unit="batch"):
            chunk_names = names[start:start + bs] if names else None
            out += caption_batch(model, processor, images[start:start + bs], gen, chunk_names)
    return out


def caption_split(model, processor, split: datasets.Dataset, gen: GenerationConfig, max_images: int | None = None,
                  progress: bool = True) -> dict[str, str]:
    """Caption each image of a canonical split once; returns {image_id: caption}."""
    if max_images is not None:
        split = split.select(range(min(max_images, len(split))))
    raw = undecoded(split)
    ids = raw["image_id"]
    rank, world = _rank_and_world()
    if world > 1:
        raw = raw.select(range(rank, len(raw), world))
    captions = caption_images(model, processor, raw["image"], gen, names=raw["image_id"], progress=progress)
    return dict(zip(ids, _gathered_in_order(captions)))


def caption_image(image, model, processor, num_return_sequences: int = 1, **decoding) -> str | list[str]:
    """Caption one image (path, PIL image or bytes); decoding keywords override GenerationConfig's defaults."""
    gen = GenerationConfig().merged(**decoding)
    if num_return_sequences > 1 and not gen.samples:
        gen = gen.merged(num_beams=max(gen.num_beams, num_return_sequences))
    with eval_mode(model):
        caps = caption_batch(model, processor, [image], gen, num_return_sequences=num_return_sequences)
    return caps if num_return_sequences > 1 else caps[0]


def list_images(folder: str | Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def caption_folder(folder: str | Path, model, processor, gen: GenerationConfig, out_path: str | Path,
                   progress: bool = True, max_pixels: int | None = None) -> dict:
    """Caption every image under `folder` into CSV or JSONL (by `out_path`'s suffix); unreadable files and files
    over `max_pixels` (DataConfig.max_image_pixels, from the header) are listed."""
    from ..errors import BadImageError

    folder, out_path = Path(folder), check_caption_output(out_path, "out_path")
    files = list_images(folder)
    rank, world = _rank_and_world()
    mine = files[rank::world]
    results = []  # per file: ("caption" | "error", text)
    bs = gen.gen_batch_size
    for start in progress_bar(range(0, len(mine), bs), desc=f"captioning {folder.name}", disable=not progress):
        batch = mine[start:start + bs]
        good, done = [], {}
        for p in batch:
            try:
                good.append((p, to_rgb(p, str(p), max_pixels)))
            except BadImageError as e:
                done[p] = ("error", str(e))
        if good:
            caps = caption_batch(model, processor, [im for _, im in good], gen)
            done.update({p: ("caption", c) for (p, _), c in zip(good, caps)})
        results += [done[p] for p in batch]
    results = _gathered_in_order(results)
    rows = [{"file_name": str(p.relative_to(folder)), "caption": text}
            for p, (kind, text) in zip(files, results) if kind == "caption"]
    errors = [{"file_name": str(p.relative_to(folder)), "error": text}
              for p, (kind, text) in zip(files, results) if kind == "error"]
    if rank == 0:
        _write_rows(out_path, rows)
    if world > 1:
        torch.distributed.barrier()  # the file exists when any rank returns
    return {"out_path": str(out_path), "n_captioned": len(rows), "errors": errors}


def _rank_and_world() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gathered_in_order(mine: list) -> list:
    """Each rank's results for items rank, rank + world, ...: all of them, in item order (one process: `mine`)."""
    rank, world = _rank_and_world()
    if world == 1:
        return mine
    shares: list = [None] * world
    torch.distributed.all_gather_object(shares, mine)
    out: list = [None] * sum(len(s) for s in shares)
    for r, share in enumerate(shares):
        out[r::world] = share
    return out


def _write_rows(path: Path, rows: list[dict]) -> None:
    import io

    from ..runs import write_jsonl, write_text

    if path.suffix.lower() == ".jsonl":
        write_jsonl(path, rows)
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["file_name", "caption"])
        w.writeheader()
        w.writerows(rows)
        write_text(path, buf.getvalue())
