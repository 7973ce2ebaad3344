"""Take work out of the training loop: images decoded and resized once into a uint8 memmap (normalised later,
on the device), and frozen-vision image embeddings computed once per image.

Over 300 lines on purpose: both caches, and how DDP processes share them (built once by rank 0), are one concern.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..model.collate import CaptionPairs
from ..progress import progress_bar
from ..schema import undecoded
from ..runtime.images import to_rgb
from .distributed import is_main_process, launched, main_process_first

CACHE_DIR = "cache"  # inside the run dir, unless TrainConfig.cache_dir names a (shareable) folder
CACHE_VERSION = 1  # bump when the cached bytes would change for the same key
CHUNK = 256  # images per build task
EMBEDDINGS_IN_MEMORY_BYTES = 2 * 1024**3  # larger embedding caches go to a memmap under the run dir
# NumPy has no bfloat16: bf16 embeddings are stored as their raw 16 bits.
STORAGE = {torch.bfloat16: np.uint16, torch.float16: np.float16, torch.float32: np.float32}


def resize_settings(image_processor) -> dict:
    """The processor settings cached pixels depend on; fails for transforms a fixed-size cache can't hold."""
    ip, name = image_processor, type(image_processor).__name__
    size = dict(ip.size)
    if getattr(ip, "do_center_crop", False) or not getattr(ip, "do_resize", True):
        raise ValueError(f"{name}: the pixel cache needs a resize to a fixed size and no centre crop")
    if not size.get("height") or not size.get("width"):
        raise ValueError(f"{name}: the pixel cache needs size with height and width, got {size}")
    return {"height": int(size["height"]), "width": int(size["width"]), "resample": int(ip.resample)}


def pixel_key(source: str, split: str, split_hash: str, image_processor) -> dict:
    """What a pixel cache is valid for: data source, split, the split's image-id hash, resize settings."""
    return {"version": CACHE_VERSION, "source": source, "split": split, "split_hash": split_hash,
            **resize_settings(image_processor)}


class PixelCache:
    """uint8 images (n, height, width, 3) in a .npy file, memory-mapped on first use, so each DataLoader
    worker maps the file instead of receiving a copy."""

    def __init__(self, path: str | Path, built: bool = False):
        self.path = Path(path)
        self.built = built  # whether this call decoded the images (False: an existing cache was reused)
        self._array = None

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.array(self.array[i])  # a writable copy: torch.from_numpy warns on read-only memory

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}


def build_pixel_cache(images: Sequence, names: Sequence[str], key: dict, cache_dir: str | Path,
                      workers: int = 0, progress: bool = True) -> PixelCache:
    """Decode, RGB-convert and resize every image once into a uint8 memmap; reuse it while `key` is unchanged.

    `images` are anything `to_rgb` opens (paths, bytes, datasets {path, bytes} dicts); `names` label errors.
    The file name holds a hash of `key`: caches for other keys stay (runs may share a folder).
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"pixels-{key['source']}-{key['split']}-{digest}.npy"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("key") == key:
        return PixelCache(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    shape = (len(images), key["height"], key["width"], 3)
    np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape).flush()
    chunks = [(s, min(s + CHUNK, len(images))) for s in range(0, len(images), CHUNK)]
    bar = progress_bar(total=len(images), desc=f"pixel cache {key['split']}", disable=not progress, unit="img")
    if workers > 0 and len(chunks) > 1:
        args = (images, names, key, tmp)
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=args) as pool:
            for n in pool.map(_fill_chunk, chunks):
                bar.update(n)
    else:
        _init_worker(images, names, key, tmp)
        for chunk in chunks:
            bar.update(_fill_chunk(chunk))
    bar.close()
    _WORKER.clear()
    tmp.replace(path)
    # Written last: its presence marks the cache complete.
    meta.write_text(json.dumps({"key": key, "shape": list(shape)}, indent=1))
    return PixelCache(path, built=True)


_WORKER: dict = {}


def _init_worker(images, names, key, tmp) -> None:
    _WORKER.update(images=images, names=names, key=key, tmp=tmp)


def _fill_chunk(chunk: tuple[int, int]) -> int:
    w = _WORKER
    out = np.load(w["tmp"], mmap_mode="r+")
    size, resample = (w["key"]["width"], w["key"]["height"]), w["key"]["resample"]
    for i in range(*chunk):
        out[i] = decode_resized(w["images"][i], w["names"][i], size, resample)
    out.flush()
    return chunk[1] - chunk[0]


def decode_resized(image, name: str, size: tuple[int, int], resample: int) -> np.ndarray:
    """One image as uint8 (height, width, 3), resized to `size` (width, height) as the processor resizes."""
    img = to_rgb(image, name)  # BadImageError names the file
    if img.size != size:
        img = img.resize(size, resample=resample)
    return np.asarray(img, dtype=np.uint8)


def normalize_pixels(pixels: torch.Tensor, image_processor) -> torch.Tensor:
    """uint8 (b, h, w, 3) -> float32 (b, 3, h, w), rescaled and normalised as the processor does, on the
    pixels' device."""
    x = pixels.permute(0, 3, 1, 2).float()
    if getattr(image_processor, "do_rescale", True):
        x = x * image_processor.rescale_factor
    if getattr(image_processor, "do_normalize", True):
        mean = torch.tensor(image_processor.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(image_processor.image_std, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous()


class EmbeddingCache:
    """Vision-tower outputs, one (tokens, width) tensor per image: in memory, or a memory-mapped .npy."""

    def __init__(self, data: torch.Tensor | None = None, path: str | Path | None = None,
                 dtype: torch.dtype = torch.float32):
        self.data, self.path, self.dtype = data, Path(path) if path else None, dtype
        self._array = None

    def __len__(self) -> int:
        return len(self.data) if self.data is not None else len(self._mapped())

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.data is not None:
            return self.data[i]
        return torch.from_numpy(np.array(self._mapped()[i])).view(self.dtype)

    def _mapped(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}


@torch.no_grad()
def compute_embeddings(model, image_processor, images: Sequence, names: Sequence[str],
                       precision: str = "auto", batch_size: int = 64, pixels: PixelCache | None = None,
                       path: str | Path | None = None, max_memory_bytes: int = EMBEDDINGS_IN_MEMORY_BYTES,
                       progress: bool = True) -> EmbeddingCache:
    """Run the (frozen) vision tower once per image; keep its last hidden states in the training precision."""
    from ..model.modeling import eval_mode
    from ..model.precision import autocast, compute_dtype

    device = next(model.vision_model.parameters()).device
    dtype = compute_dtype(precision, device)
    vision = model.vision_model
    store = None
    with eval_mode(vision):
        for start in progress_bar(range(0, len(images), batch_size), desc="image embeddings", disable=not progress):
            end = min(start + batch_size, len(images))
            if pixels is not None:
                u8 = torch.from_numpy(np.array(pixels.array[start:end])).to(device)
                pv = normalize_pixels(u8, image_processor)
            else:
                pil = [to_rgb(images[i], names[i]) for i in range(start, end)]
                pv = image_processor(pil, return_tensors="pt")["pixel_values"].to(device)
            with autocast(device, precision):
                out = vision(pixel_values=pv).last_hidden_state.to(dtype).cpu()
            if store is None:
                store = _embedding_store(len(images), out.shape[1:], dtype, path, max_memory_bytes)
            if isinstance(store, torch.Tensor):
                store[start:end] = out
            else:
                store[start:end] = _as_storage(out)
    if store is None or isinstance(store, torch.Tensor):
        return EmbeddingCache(data=store if store is not None else torch.empty(0), dtype=dtype)
    store.flush()
    return EmbeddingCache(path=path, dtype=dtype)


def _as_storage(t: torch.Tensor) -> np.ndarray:
    return t.view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.numpy()


def _embedding_store(n: int, row_shape, dtype: torch.dtype, path, max_memory_bytes: int):
    nbytes = n * int(np.prod(row_shape)) * torch.tensor([], dtype=dtype).element_size()
    if path is None or nbytes <= max_memory_bytes:
        return torch.empty((n, *row_shape), dtype=dtype)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(path, mode="w+", dtype=STORAGE[dtype], shape=(n, *row_shape))


class CachedCaptionPairs(CaptionPairs):
    """CaptionPairs whose items carry cached uint8 `pixels` or `image_embeds` instead of the encoded image."""

    def __init__(self, split, grouped: bool = False, pixels: PixelCache | None = None,
                 embeddings: EmbeddingCache | None = None):
        super().__init__(split, grouped=grouped)
        if (pixels is None) == (embeddings is None):
            raise ValueError("CachedCaptionPairs needs exactly one of pixels= or embeddings=")
        if len(pixels if pixels is not None else embeddings) != len(split):
            raise ValueError(f"the cache holds {len(pixels if pixels is not None else embeddings)} images, "
                             f"the split {len(split)}")
        self.pixels, self.embeddings = pixels, embeddings
        self.ids, self.captions = list(split["image_id"]), list(split["captions"])

    def __getitem__(self, k: int) -> dict:
        i, j = self.index[k]
        item = {"image_id": self.ids[i], "captions": self.captions[i] if j is None else [self.captions[i][j]]}
        if self.embeddings is not None:
            item["image_embeds"] = self.embeddings[i]
        else:
            item["pixels"] = self.pixels[i]
        return item


def image_sources(split) -> tuple[list, list[str]]:
    """A canonical split's undecoded images ({path, bytes}, read lazily) and error labels (id and file)."""
    import pyarrow.compute as pc

    raw = undecoded(split)
    column = raw.select_columns(["image"]).with_format("arrow")[:]["image"]
    paths = pc.struct_field(column, "path").to_pylist() if len(raw) else []  # bytes stay memory-mapped
    names = [f"{i} ({p})" if p else str(i) for i, p in zip(raw["image_id"], paths, strict=True)]
    return _LazyColumn(raw), names


class _LazyColumn:
    """split["image"][i] on demand: a large split's image bytes are never all in memory."""

    def __init__(self, split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.split[int(i)]["image"]


def train_embeddings(cfg, model, image_processor, split, pixels: PixelCache | None) -> EmbeddingCache:
    """The frozen vision tower's output for each train image. Under DDP rank 0 computes them into a file in the
    run dir and the other ranks map that file (no rank holds a private copy)."""
    from ..model.modeling import default_device
    from ..model.precision import compute_dtype

    t = cfg.train
    path = Path(cfg.run_dir) / CACHE_DIR / "embeddings-train.npy"
    with main_process_first():
        if not is_main_process():
            return EmbeddingCache(path=path, dtype=compute_dtype(t.precision, torch.device(default_device())))
        model.to(default_device())
        images, names = image_sources(split)
        return compute_embeddings(model, image_processor, images, names, precision=t.precision,
                                  batch_size=t.eval_batch_size, pixels=pixels, path=path,
                                  **({"max_memory_bytes": 0} if launched() else {}))


def training_datasets(cfg, model, processor, ds, evaluating: bool) -> tuple:
    """build_trainer's train and validation datasets, through the caches `cfg.train` switches on."""
    from ..data import split_hashes

    t = cfg.train
    grouped = t.shared_vision
    if not (t.pixel_cache or t.cache_embeddings):
        val = CaptionPairs(ds["validation"]) if evaluating else None
        return CaptionPairs(ds["train"], grouped=grouped), val
    cache_dir = Path(t.cache_dir) if t.cache_dir else Path(cfg.run_dir) / CACHE_DIR
    hashes = split_hashes(ds)
    ip = processor.image_processor
    pixels = {}
    if t.pixel_cache:
        for s in ("train", "validation") if evaluating else ("train",):
            images, names = image_sources(ds[s])
            key = pixel_key(cfg.data.source, s, hashes[s], ip)
            with main_process_first():  # under DDP rank 0 builds it, the others reuse the finished file
                pixels[s] = build_pixel_cache(images, names, key, cache_dir, workers=t.dataloader_workers)
    if t.cache_embeddings:
        embeddings = train_embeddings(cfg, model, ip, ds["train"], pixels.get("train"))
        train = CachedCaptionPairs(ds["train"], grouped=grouped, embeddings=embeddings)
    else:
        train = CachedCaptionPairs(ds["train"], grouped=grouped, pixels=pixels["train"])
    if not evaluating:
        return train, None
    val = ds["validation"]
    return train, CachedCaptionPairs(val, pixels=pixels["validation"]) if t.pixel_cache else CaptionPairs(val)
