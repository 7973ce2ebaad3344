"""Tiny on-disk fixtures with the real schemas of each data source, built in a tmp dir at test time."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

SPLIT_SIZES = {"train": 6, "validation": 2, "test": 2}


def folder_cfg(root, **kw):
    """A DataConfig for the folder source over `root`."""
    from blipnb.config import DataConfig

    return DataConfig(source="folder", data_dir=str(root), **kw)


def blob_image(seed: int, size: int = 48, mode: str = "RGB") -> Image.Image:
    """A smooth random image: unrelated seeds give far-apart perceptual hashes, resizing keeps them close."""
    grid = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(grid, "RGB").resize((size, size), Image.Resampling.BICUBIC).convert(mode)


def png_bytes(seed: int, size: int = 48) -> bytes:
    buf = io.BytesIO()
    blob_image(seed, size).save(buf, format="PNG")
    return buf.getvalue()


def write_image(path: Path, seed: int, size: int = 48, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = blob_image(seed, size, mode)
    image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def make_folder(root: Path, n: int = 10, fmt: str = "jsonl", per_row: bool = False, splits=None,
                seed: int = 0) -> Path:
    """images/img_<i>.png + metadata.<fmt>; captions as a list column, or (per_row) one `caption` row each.

    splits: None (no split column) or a list of split values, one per image.
    """
    rows = []
    for i in range(n):
        name = f"images/img_{i:03d}.png"
        write_image(root / name, seed * 1000 + i)
        captions = [f"picture number {i}", f"image {i} of blobs", f"blob pattern {i}"]
        split = {"split": splits[i]} if splits is not None else {}
        if per_row:
            rows += [{"file_name": name, "caption": c, **split} for c in captions]
        else:
            rows.append({"file_name": name, "captions": captions, **split, "note": f"n{i}"})
    write_metadata(root, rows, fmt)
    return root


def write_metadata(root: Path, rows: list[dict], fmt: str = "jsonl") -> Path:
    """Write rows as metadata.jsonl, or as metadata.csv (a `captions` list becomes a JSON string)."""
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path = root / "metadata.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    path = root / "metadata.csv"
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return path


def make_flickr8k_parquet(root: Path, sizes: dict = SPLIT_SIZES) -> Path:
    """The jxie/flickr8k layout: data/<split>-00000-of-00001.parquet with image, caption_0..caption_4."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), **{f"caption_{k}": Value("string") for k in range(5)}})
    seed = 0
    for split, n in sizes.items():
        data = {"image": [{"bytes": png_bytes(seed + i), "path": None} for i in range(n)]}
        data.update({f"caption_{k}": [f"{split} image {seed + i} caption {k}" for i in range(n)] for k in range(5)})
        seed += n
        (root / "data").mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(data, features=features).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def make_caption_rows_parquet(root: Path, n_images: int = 20, per_image: int = 5) -> Path:
    """The ariG23498/flickr8k layout: one (image, caption) row per caption, rows shuffled, a single train split."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    rows = [(i, k) for i in range(n_images) for k in range(per_image)]
    order = np.random.default_rng(0).permutation(len(rows))
    images = {i: png_bytes(100 + i) for i in range(n_images)}
    data = {"image": [{"bytes": images[rows[j][0]], "path": None} for j in order],
            "caption": [f"blob {rows[j][0]} said way {rows[j][1]}" for j in order]}
    features = Features({"image": ImageFeature(), "caption": Value("string")})
    (root / "data").mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(data, features=features).to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def make_coco_json(root: Path, n: int = 10, with_split: bool = True) -> Path:
    """A COCO captions file (images, annotations; optional per-image split) and its image dir."""
    names = ["train"] * (n - 4) + ["val", "val", "test", "test"]
    images, annotations = [], []
    for i in range(n):
        write_image(root / "imgs" / f"COCO_{i:06d}.jpg", 200 + i)
        images.append({"id": 1000 + i, "file_name": f"COCO_{i:06d}.jpg", **({"split": names[i]} if with_split else {})})
        annotations += [{"id": 10 * i + k, "image_id": 1000 + i, "caption": f" coco image {i} take {k} "}
                        for k in range(2)]
    path = root / "captions.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


KARPATHY_SPLITS = ["train", "train", "restval", "restval", "val", "val", "test", "test"]


def karpathy_entries() -> list[dict]:
    """Images of a Karpathy dataset_coco.json: filepath, filename, split, cocoid, sentences[{raw}]."""
    out = []
    for i, split in enumerate(KARPATHY_SPLITS):
        folder = "train2014" if split in ("train", "restval") else "val2014"
        out.append({"filepath": folder, "filename": f"COCO_{folder}_{i:012d}.jpg", "split": split, "cocoid": 500 + i,
                    "sentences": [{"raw": f"karpathy {i} sentence {k}.", "tokens": []} for k in range(5)]})
    return out


def make_karpathy(root: Path) -> tuple[Path, Path]:
    """(COCO root with train2014/ and val2014/, local dataset_coco.json)."""
    for i, e in enumerate(karpathy_entries()):
        write_image(root / "coco" / e["filepath"] / e["filename"], 300 + i)
    ann = root / "dataset_coco.json"
    ann.write_text(json.dumps({"images": karpathy_entries(), "dataset": "coco"}))
    return root / "coco", ann


def make_karpathy_hub(root: Path) -> Path:
    """The yerevann/coco-karpathy layout: captions and paths (sentences: list of str), no image bytes."""
    from datasets import Dataset

    entries = karpathy_entries()
    hub_split = {"train": "train", "restval": "train", "val": "validation", "test": "test"}
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation", "test"):
        rows = [e for e in entries if hub_split[e["split"]] == split]
        data = {"filepath": [e["filepath"] for e in rows], "filename": [e["filename"] for e in rows],
                "sentences": [[s["raw"] for s in e["sentences"]] for e in rows], "split": [e["split"] for e in rows],
                "cocoid": [e["cocoid"] for e in rows], "url": [f"http://x/{e['filename']}" for e in rows]}
        Dataset.from_dict(data).to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


# What people's own folders look like: the formats and modes the loaders accept, one caption per image or several,
# captions given per row or as a list, images in nested folders.
FORMATS = {"png": ("PNG", ("L", "P", "RGBA", "I;16", "LA", "1")), "jpg": ("JPEG", ("RGB", "L", "CMYK")),
           "webp": ("WEBP", ("RGB", "RGBA")), "gif": ("GIF", ("P", "L")), "bmp": ("BMP", ("RGB", "L")),
           "tif": ("TIFF", ("CMYK", "I;16", "RGB"))}


def write_mode_image(path: Path, seed: int, mode: str, fmt: str, size: int = 48) -> Path:
    """An image file in `mode` and `fmt`; I;16 spans the 16-bit range, as a scientific or medical scan does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = blob_image(seed, size)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    else:
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path


def words_for(i: int) -> list[str]:
    """A few captions that differ by image, so that a tokenizer and a model have something to learn."""
    colour, thing = ("red", "green", "blue", "grey")[i % 4], ("dog", "boat", "tree", "house", "car")[i % 5]
    return [f"a {colour} {thing} in the picture", f"the {thing} is {colour}", f"one {colour} {thing}",
            f"a photo of a {thing} that is {colour}"]


def make_one_caption_folder(root: Path, n: int = 30) -> Path:
    """images/photos/IMG_<i>.jpg + metadata.csv of file_name,caption: one caption per image, no split column."""
    lines = ["file_name,caption"]
    for i in range(n):
        name = f"images/photos/IMG_{i:04d}.jpg"
        write_image(root / name, 5000 + i)
        lines.append(f'{name},"{words_for(i)[0]}, seen from afar"')  # a comma: the quoting a spreadsheet writes
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def make_mixed_folder(root: Path) -> Path:
    """metadata.jsonl mixing `caption` rows (one image over several rows) and `captions` lists (1 to 4 per image),
    a split column leaving validation 2 and test 3 images, every format and mode of FORMATS, nested folders."""
    kinds = [(ext, fmt, mode) for ext, (fmt, modes) in FORMATS.items() for mode in modes]
    splits = ["validation"] * 2 + ["test"] * 3 + ["train"] * (len(kinds) + 3)
    rows = []
    for i, split in enumerate(splits):
        ext, fmt, mode = kinds[i % len(kinds)]
        name = f"images/{split}/{'day' if i % 2 else 'night'}/{i:03d}_{mode.replace(';', '')}.{ext}"
        write_mode_image(root / name, 7000 + i, mode, fmt)
        captions = words_for(i)[:1 + i % 4]
        if i % 3 == 0:  # one row per caption, as exported from a labelling tool
            rows += [{"file_name": name, "caption": c, "split": split} for c in captions]
        else:
            rows.append({"file_name": name, "captions": captions, "split": split})
    write_metadata(root, rows, "jsonl")
    return root
