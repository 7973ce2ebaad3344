"""Input pipeline throughput: JPEG decode + BLIP preprocessing per core, against blipnb's uint8 pixel cache
(decoded and resized once, normalised on the device), and both through DataLoader workers.

    python benchmarks/data_throughput.py --out results.json              # 384 px, as BLIP base, on a GPU box
    python benchmarks/data_throughput.py --tiny --steps 1                # a few small images on CPU

The JPEGs are generated here at 500x375, Flickr8k's typical size.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import Results, add_repo_to_path, parser, pick_device, sync

add_repo_to_path()
from blipnb.training import cache  # noqa: E402  (after add_repo_to_path)
from blipnb.runtime.images import to_rgb  # noqa: E402

SOURCE_SIZE = (500, 375)  # width, height
BATCH = 64


def make_jpegs(folder: Path, n: int) -> list[Path]:
    """Photo-like JPEGs: smooth colour fields plus grain, so they compress and decode like real photos."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        grid = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(grid).resize(SOURCE_SIZE, Image.Resampling.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"img_{i:05d}.jpg")
        Image.fromarray(img).save(paths[-1], quality=90)
    return paths


class Decoded(torch.utils.data.Dataset):
    """What training does without the cache: decode and preprocess each image."""

    def __init__(self, paths, ip):
        self.paths, self.ip = paths, ip

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.ip(to_rgb(self.paths[i]), return_tensors="pt")["pixel_values"][0]


class Cached(torch.utils.data.Dataset):
    """What training does with the cache: copy a uint8 row out of the memmap."""

    def __init__(self, pixels: cache.PixelCache):
        self.pixels = pixels

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, i):
        return torch.from_numpy(self.pixels[i])


def rate(fn, n_images: int) -> tuple[float, float]:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return n_images / seconds, seconds


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=None, help="JPEGs to generate (default 512; 16 with --tiny)")
    p.add_argument("--size", type=int, default=None, help="model resolution (default 384; 32 with --tiny)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers for the multi-core rows (default min(8, cores); --tiny: 0, off)")
    args = p.parse_args()
    from transformers import BlipImageProcessorPil

    device = pick_device(args)
    n = args.images or (16 if args.tiny else 512)
    size = args.size or (32 if args.tiny else 384)
    workers = args.workers if args.workers is not None else (0 if args.tiny else min(8, os.cpu_count() or 1))
    passes = args.steps or 1
    ip = BlipImageProcessorPil(size={"height": size, "width": size})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-core numbers
    results = Results("data_throughput", args, device, images=n, source_size=list(SOURCE_SIZE),
                      target_size=size, batch=BATCH, processor=type(ip).__name__)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), n)
        batches = [list(range(s, min(s + BATCH, n))) for s in range(0, n, BATCH)]

        def decode_preprocess():
            for _ in range(passes):
                for b in batches:
                    ip([to_rgb(paths[i]) for i in b], return_tensors="pt")

        per_core, sec = rate(decode_preprocess, n * passes)
        results.add({"name": "decode_preprocess_per_core", "images_per_s": per_core, "seconds": sec,
                     "cores": 1})

        key = cache.pixel_key("bench", "train", "synthetic", ip)
        built = {}

        def build():
            built["cache"] = cache.build_pixel_cache(paths, [str(p) for p in paths], key, tmp, progress=False)

        r, sec = rate(build, n)
        results.add({"name": "cache_build_once_per_core", "images_per_s": r, "seconds": sec, "cores": 1,
                     "cache_mb": built["cache"].path.stat().st_size / 1e6})
        pixels = built["cache"]
        order = np.random.default_rng(0).permutation(n)

        def cached(where):
            """Batches as the collator stacks them; normalised on `where` (None: not at all)."""
            def run():
                for _ in range(passes):
                    for b in batches:
                        u8 = torch.stack([torch.from_numpy(pixels[int(order[i])]) for i in b])
                        if where is not None and where.type == "cuda":
                            u8 = u8.pin_memory().to(where, non_blocking=True)
                        if where is not None:
                            sync(cache.normalize_pixels(u8, ip).device)
            return run

        rows = [("cached_read_per_core", None), ("cached_read_normalise_cpu_per_core", torch.device("cpu"))]
        if device.type == "cuda":
            rows.append(("cached_read_to_gpu_normalise_per_core", device))
        for name, where in rows:
            r, sec = rate(cached(where), n * passes)
            results.add({"name": name, "images_per_s": r, "seconds": sec, "cores": 1,
                         "ratio_to_decode_preprocess": r / per_core})

        if workers > 0:
            pin = device.type == "cuda"
            for name, ds in (("decode_preprocess_workers", Decoded(paths, ip)),
                             ("cached_workers", Cached(pixels))):
                loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                                                     pin_memory=pin)

                def run(loader=loader):
                    for _ in range(passes):
                        for _batch in loader:
                            pass

                r, sec = rate(run, n * passes)
                results.add({"name": name, "images_per_s": r, "seconds": sec, "cores": workers})
    torch.set_num_threads(threads)
    results.save()


if __name__ == "__main__":
    main()
