"""Near-duplicate images across splits: 64-bit difference hashes compared in vectorised chunks."""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from datasets import Dataset, DatasetDict
from PIL import Image

from ..progress import progress_bar
from ..schema import IMAGE, IMAGE_ID, SPLITS, undecoded
from .checks import ImageChecks, file_key
from ..runtime.images import open_image, to_8bit  # to_8bit: 16-bit images would hash as white

PROGRESS_FROM = 2000  # show a progress bar when hashing at least this many images


class NearDuplicateWarning(UserWarning):
    """Near-duplicate images were found across splits (and kept, or dropped)."""


def dhash(image: Image.Image) -> int:
    """The 64-bit difference hash of an image: grayscale, 9x8, one bit per horizontally adjacent pixel pair."""
    image.draft("L", (64, 64))  # JPEG decodes at 1/2..1/8 scale: most of the cost of hashing a large photo
    small = np.asarray(to_8bit(image).convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def hash_split(split: Dataset, desc: str = "hashing", chunk: int = 512,
               image_checks: ImageChecks | None = None) -> tuple[list[str], np.ndarray]:
    """(image ids, uint64 dHashes) of a split, decoded from the stored bytes or paths a chunk at a time; a file
    whose hash `image_checks` recorded (unchanged since) is not decoded again."""
    ids = [str(i) for i in split[IMAGE_ID]]
    raw = undecoded(split.select_columns([IMAGE]))
    results: list = []
    # Chunks bound memory (hub images are embedded bytes); threads overlap decoding, which PIL does without the GIL.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool, \
            progress_bar(total=len(ids), desc=desc, disable=len(ids) < PROGRESS_FROM) as bar:
        for start in range(0, len(ids), chunk):
            batch = raw[start:start + chunk][IMAGE]
            results.extend(pool.map(lambda source: _hash_source(source, image_checks), batch))
            bar.update(len(batch))
    bad = [(i, r) for i, r in zip(ids, results) if isinstance(r, str)]
    if bad:
        listed = "; ".join(f"{i}: {err}" for i, err in bad[:10])
        raise ValueError(f"{len(bad)} image(s) could not be decoded for hashing ({desc}): {listed}")
    return ids, np.array(results, dtype=np.uint64)


def near_duplicates(ds: DatasetDict, max_distance: int = 4, image_checks: ImageChecks | None = None) -> list[dict]:
    """Cross-split image pairs whose dHashes differ in at most max_distance bits, earlier split first.

    Each split is hashed once per call, except files whose hash the load's `image_checks` recorded (keyed by size
    and modification time, so a file changed since is hashed anew).
    """
    if not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be in 0..64 bits, got {max_distance}")
    names = [s for s in SPLITS if s in ds]
    hashed = {s: hash_split(ds[s], desc=f"hashing {s}", image_checks=image_checks) for s in names}
    pairs = []
    for a_i, a in enumerate(names):
        for b in names[a_i + 1:]:
            (ids_a, h_a), (ids_b, h_b) = hashed[a], hashed[b]
            for i, j, d in _close_pairs(h_a, h_b, max_distance):
                pairs.append({"split_a": a, "id_a": ids_a[i], "split_b": b, "id_b": ids_b[j], "distance": d})
    return pairs


def apply_near_duplicate_policy(ds: DatasetDict, pairs: list[dict], action: str) -> DatasetDict:
    """warn: keep and warn; drop: remove each pair's later-split copy (validation/test) and say how many; fail: raise."""
    if action not in ("warn", "drop", "fail"):
        raise ValueError(f"near_duplicates must be 'warn', 'drop' or 'fail', got {action!r}")
    if not pairs:
        return ds
    listed = ", ".join(f"{p['split_a']}:{p['id_a']} ~ {p['split_b']}:{p['id_b']} (d={p['distance']})"
                       for p in pairs[:10])
    more = f" and {len(pairs) - 10} more" if len(pairs) > 10 else ""
    if action == "fail":
        raise ValueError(f"{len(pairs)} near-duplicate image pair(s) across splits: {listed}{more}. "
                         "Set near_duplicates='drop' to drop the validation/test copies.")
    if action == "warn":
        warnings.warn(f"{len(pairs)} near-duplicate image pair(s) across splits (kept): {listed}{more}. "
                      "Set near_duplicates='drop' to drop them or 'fail' to stop.", NearDuplicateWarning,
                      stacklevel=2)
        return ds
    drop: dict[str, set] = {}
    for p in pairs:  # train is never dropped from: the held-out copy goes, so evaluation stays clean
        drop.setdefault(p["split_b"], set()).add(p["id_b"])
    out = DatasetDict(ds)
    for split, ids in drop.items():
        keep = [i for i, image_id in enumerate(ds[split][IMAGE_ID]) if image_id not in ids]
        out[split] = ds[split].select(keep)
    counts = ", ".join(f"{len(ids)} from {split}" for split, ids in drop.items())
    warnings.warn(f"dropped {counts}: near-duplicates of images in an earlier split ({listed}{more})",
                  NearDuplicateWarning, stacklevel=2)
    return out


def remaining_pairs(pairs: list[dict], ds: DatasetDict) -> list[dict]:
    """The pairs whose both images are still in `ds` (after a drop policy, none are)."""
    ids = {split: set(ds[split][IMAGE_ID]) for split in ds}
    return [p for p in pairs if p["id_a"] in ids.get(p["split_a"], ()) and p["id_b"] in ids.get(p["split_b"], ())]


def _hash_source(source: dict, image_checks: ImageChecks | None = None) -> int | str:
    """dHash of a stored image ({bytes, path}); an error message instead of raising, so all failures are listed.
    A file the image check has decoded (unchanged since) is not decoded again (blipnb.data.checks)."""
    if image_checks is not None and source.get("path") and not source.get("bytes"):
        try:
            known = image_checks.known_hash(file_key(source["path"]))
        except OSError:
            known = None  # opening it below says what is wrong
        if known is not None:
            return known
    try:
        with open_image(source) as im:
            return dhash(im)
    except Exception as e:  # noqa: BLE001 - collected and reported with the image id
        return f"{source.get('path') or '<bytes>'}: {type(e).__name__}: {e}"


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1, dtype=np.uint8)


_BYTE_BITS = np.array([i.bit_count() for i in range(256)], dtype=np.uint8)


def _close_pairs(a: np.ndarray, b: np.ndarray, max_distance: int, block: int = 1 << 22):
    """(i, j, distance) for all a[i], b[j] within max_distance, in chunks of at most `block` comparisons."""
    if len(a) == 0 or len(b) == 0:
        return
    rows = max(1, block // len(b))
    for start in range(0, len(a), rows):
        dist = _popcount(a[start:start + rows, None] ^ b[None, :])
        for i, j in zip(*np.nonzero(dist <= max_distance)):
            yield start + int(i), int(j), int(dist[i, j])
