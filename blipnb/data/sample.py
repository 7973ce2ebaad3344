"""The built-in synthetic captioned dataset: coloured shapes in image quadrants, five paraphrases per image."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from PIL import Image, ImageDraw

from ..runs import write_text
from ..schema import IMAGE_ID
from .local import load_folder

# Visually distinct RGB values, far apart in hue so a tiny model (and a human) can tell them apart.
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 180),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")  # one shape per quadrant
COUNTS = {1: "one", 2: "two", 3: "three", 4: "four"}
# One table for the generator's paraphrases and the parser: canonical word -> synonyms captions may use.
SYNONYMS = {"large": ("big",), "small": ("little",), "top": ("upper",), "bottom": ("lower",), "one": ("single",)}
MARKER = "sample.json"  # written last: its presence with the same params means the sample is complete
METADATA = "metadata.jsonl"
ATTRIBUTES = "attributes"  # the sample's extra column: a JSON string of the ground truth of each image

_SINGLE_TEMPLATES = (
    "a {np} in the {pos}",
    "there is a {np} at the {pos}",
    "{pos}: one {np}",
    "the {pos} has a {np}",
    "a single {np} in the {pos} corner",
    "one {np} at the {pos}",
)
# Multi-shape templates; {objs} joins "a {np} in/at the {pos}" phrases in a random order per caption.
_MULTI_TEMPLATES = (
    "{objs}",
    "{count} shapes: {objs}",
    "there are {count} shapes, {objs}",
    "{posobjs}",
    "an image with {objs}",
    "{count} shapes, {objs}",
)


def make_sample(out_dir, n_train: int, n_validation: int, n_test: int, image_size: int = 64, max_shapes: int = 2,
                hard_fraction: float = 0.1, seed: int = 0) -> Path:
    """Write the synthetic dataset in the folder format (images/<split>/*.png + metadata.jsonl); same args, same bytes."""
    params = sample_params(n_train, n_validation, n_test, image_size, max_shapes, hard_fraction, seed)
    if not 1 <= max_shapes <= len(POSITIONS):
        raise ValueError(f"max_shapes must be in 1..{len(POSITIONS)} (one shape per quadrant), got {max_shapes}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    out = Path(out_dir)
    (out / MARKER).unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    rows = []
    for split_index, (split, n) in enumerate((("train", n_train), ("validation", n_validation), ("test", n_test))):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            # One generator per image: changing n_train leaves the validation and test images unchanged.
            rng = np.random.default_rng([seed, split_index, i])
            objects, hard = _draw_scene(rng, max_shapes, hard_fraction)
            name = f"images/{split}/{split}_{i:05d}.png"
            _render(objects, hard, image_size, rng).save(out / name, format="PNG", compress_level=3)
            attributes = {"count": len(objects), "hard": hard,
                          "objects": [{k: o[k] for k in ("shape", "colour", "size", "position")} for o in objects]}
            rows.append({"file_name": name, "captions": _captions(objects, rng), "split": split,
                         ATTRIBUTES: json.dumps(attributes, sort_keys=True)})
    write_text(out / METADATA, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    write_text(out / MARKER, json.dumps(params, sort_keys=True) + "\n")
    return out


def sample_params(n_train, n_validation, n_test, image_size=64, max_shapes=2, hard_fraction=0.1, seed=0) -> dict:
    """The parameters that determine a sample's bytes (its cache key)."""
    return {"n_train": int(n_train), "n_validation": int(n_validation), "n_test": int(n_test),
            "image_size": int(image_size), "max_shapes": int(max_shapes), "hard_fraction": float(hard_fraction),
            "seed": int(seed), "version": 2}


def is_complete(out_dir, params: dict) -> bool:
    """Whether out_dir holds a finished sample made with these params."""
    marker = Path(out_dir) / MARKER
    try:
        return json.loads(marker.read_text()) == params and (Path(out_dir) / METADATA).exists()
    except (OSError, ValueError):
        return False


def sample_attributes(split) -> dict[str, dict] | None:
    """{image_id: the sample's ground truth} from the split's `attributes` column, or None when there is no such
    column or any value is not the sample's JSON (an object whose `objects` list each name a shape)."""
    if ATTRIBUTES not in split.column_names:
        return None
    table = split.select_columns([IMAGE_ID, ATTRIBUTES])
    truth = {}
    for image_id, value in zip(table[IMAGE_ID], table[ATTRIBUTES]):
        try:
            parsed = json.loads(value)
        except (TypeError, ValueError):
            return None
        objects = parsed.get("objects") if isinstance(parsed, dict) else None
        if not isinstance(objects, list) or not all(isinstance(o, dict) and "shape" in o for o in objects):
            return None
        truth[str(image_id)] = parsed
    return truth


def parse_attributes(caption: str) -> dict:
    """Extract count, colours, shapes, sizes and positions (and per-shape objects) from a caption."""
    text = _normalise(caption)
    flat = {"colours": [], "shapes": [], "sizes": [], "positions": []}
    objects, count = [], None
    for clause in re.split(r"[;,]| and ", text):
        words = clause.split()
        found = _attribute_words(words)
        for key, values in flat.items():
            values.extend(found[key])
        if found["count"] is not None and count is None:
            count = found["count"]
        if len(found["shapes"]) == 1:  # an object phrase: the attributes in its clause are its own
            objects.append({"shape": found["shapes"][0], "colour": _first(found["colours"]),
                            "size": _first(found["sizes"]), "position": _first(found["positions"])})
    return {"count": count if count is not None else len(flat["shapes"]), "objects": objects, **flat}


_CANONICAL = {syn: word for word, syns in SYNONYMS.items() for syn in syns}
_NUMBERS = {word: n for n, word in COUNTS.items()}


def _normalise(caption: str) -> str:
    words = re.sub(r"[^a-z0-9;,:\s]", " ", caption.lower()).replace(":", " ").split()
    words = [_CANONICAL.get(w, w) for w in words]
    words = [w[:-1] if w.endswith("s") and w[:-1] in SHAPES else w for w in words]
    return " ".join(words).replace(" ,", ",").replace(" ;", ";")


def _attribute_words(words: list[str]) -> dict:
    found = {"colours": [], "shapes": [], "sizes": [], "positions": [], "count": None}
    for i, w in enumerate(words):
        if w in COLOURS:
            found["colours"].append(w)
        elif w in SHAPES:
            found["shapes"].append(w)
        elif w in SIZES:
            found["sizes"].append(w)
        elif w in _NUMBERS and found["count"] is None:
            found["count"] = _NUMBERS[w]
        elif i + 1 < len(words) and f"{w} {words[i + 1]}" in POSITIONS:
            found["positions"].append(f"{w} {words[i + 1]}")
    return found


def _first(xs: list):
    return xs[0] if xs else None


def _draw_scene(rng: np.random.Generator, max_shapes: int, hard_fraction: float) -> tuple[list[dict], bool]:
    count = int(rng.integers(1, max_shapes + 1))
    quadrants = rng.permutation(len(POSITIONS))[:count]
    colours = list(COLOURS)
    objects = [{"shape": SHAPES[rng.integers(len(SHAPES))], "colour": colours[rng.integers(len(colours))],
                "size": SIZES[rng.integers(len(SIZES))], "position": POSITIONS[q],
                "jitter": (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)))} for q in quadrants]
    hard = bool(rng.random() < hard_fraction)
    return objects, hard


def _render(objects: list[dict], hard: bool, size: int, rng: np.random.Generator) -> Image.Image:
    # A smooth random background texture: without it every plain-background image would look like a
    # near-duplicate of hundreds of others to the leak guard's perceptual hash.
    grid = np.clip(232 + rng.normal(0, 12, (8, 8)), 0, 255).astype(np.uint8)
    bg = Image.fromarray(grid, "L").resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
    draw = ImageDraw.Draw(bg)
    if hard:  # clutter under the shapes: thin grey lines and specks
        for _ in range(int(rng.integers(4, 9))):
            xy = [float(v) for v in rng.uniform(0, size, 4)]
            draw.line(xy, fill=(int(rng.integers(90, 170)),) * 3, width=1)
        for x, y in rng.integers(0, size, (int(size * 0.6), 2)):
            draw.point((int(x), int(y)), fill=(int(rng.integers(60, 200)),) * 3)
    half = size / 2
    for o in objects:
        q = POSITIONS.index(o["position"])
        r = half * (0.36 if o["size"] == "large" else 0.18)
        slack = half / 2 - r - 1
        cx = (q % 2) * half + half / 2 + o["jitter"][0] * slack
        cy = (q // 2) * half + half / 2 + o["jitter"][1] * slack
        colour = COLOURS[o["colour"]]
        if hard:  # lower contrast: pull the colour towards the background
            colour = tuple(int(232 + 0.5 * (c - 232)) for c in colour)
        box = (cx - r, cy - r, cx + r, cy + r)
        if o["shape"] == "circle":
            draw.ellipse(box, fill=colour)
        elif o["shape"] == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    if hard:
        noisy = np.asarray(bg, dtype=np.int16) + rng.normal(0, 14, (size, size, 1)).astype(np.int16)
        bg = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    return bg


def _say(word: str, rng: np.random.Generator) -> str:
    options = (word, *SYNONYMS.get(word, ()))
    return options[rng.integers(len(options))]


def _phrase(o: dict, rng: np.random.Generator) -> tuple[str, str]:
    np_ = f"{_say(o['size'], rng)} {o['colour']} {o['shape']}"
    pos = " ".join(_say(w, rng) for w in o["position"].split())
    return np_, pos


def _captions(objects: list[dict], rng: np.random.Generator, n: int = 5) -> list[str]:
    if len(objects) == 1:
        templates = [_SINGLE_TEMPLATES[i] for i in rng.permutation(len(_SINGLE_TEMPLATES))[:n]]
        return [t.format(**dict(zip(("np", "pos"), _phrase(objects[0], rng)))) for t in templates]
    out = []
    for t in (_MULTI_TEMPLATES[i] for i in rng.permutation(len(_MULTI_TEMPLATES))[:n]):
        order = [objects[i] for i in rng.permutation(len(objects))]  # both orders occur across captions
        phrases = [_phrase(o, rng) for o in order]
        objs = [f"a {np_} {'in' if rng.random() < 0.5 else 'at'} the {pos}" for np_, pos in phrases]
        out.append(t.format(objs=_join(objs), count=COUNTS[len(objects)],
                            posobjs="; ".join(f"{pos}: a {np_}" for np_, pos in phrases)))
    return out


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def load_sample(cfg) -> DatasetDict:
    """The synthetic sample, generated into cfg.data_dir or a cache dir only when absent or incomplete."""
    args = {"n_train": cfg.sample_train, "n_validation": cfg.sample_validation, "n_test": cfg.sample_test,
            "image_size": cfg.sample_image_size, "max_shapes": cfg.sample_max_shapes,
            "hard_fraction": cfg.sample_hard_fraction, "seed": cfg.sample_seed}
    params = sample_params(**args)
    if cfg.data_dir:
        out = Path(cfg.data_dir)
        if not is_complete(out, params):
            make_sample(out, **args)
    else:
        out = sample_cache_dir(params)
        if not is_complete(out, params):
            _make_cached_sample(out, params, args)
    return load_folder(out, cfg.split_seed, cfg.val_fraction, cfg.test_fraction)


def sample_cache_dir(params: dict) -> Path:
    """<$BLIPNB_CACHE or ~/.cache/blipnb>/sample/<short hash of the sample params>."""
    root = Path(os.environ.get("BLIPNB_CACHE") or Path.home() / ".cache" / "blipnb")
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return root / "sample" / key


def _make_cached_sample(out: Path, params: dict, args: dict) -> None:
    # Generate beside the target and rename: a concurrent or interrupted run never sees half a 
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        make_sample(tmp, **args)
        if out.exists() and not is_complete(out, params):
            shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:
            if not is_complete(out, params):  # someone else finished first, or the target is stuck
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
