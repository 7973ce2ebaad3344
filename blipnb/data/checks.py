"""What the image check learnt about each file, kept by (path, size, mtime_ns), so a file is decoded once.

records.check_images decodes every image of a local source: is it there, within max_pixels, decodable? The same
decode gives the leak check's dHash (leaks.hash_split). Both answers go into the `ImageChecks` of that load, which
load_checked reads from the run directory (runs.IMAGE_CHECKS) and writes back, so notebooks 02-05 do not decode
again what 01 just checked: on the sample 5,400 images, on COCO 123,000. A file rewritten since has another size or
modification time, so another key: it is checked afresh, never answered from a stale record. A record made by
another Pillow version or record format is ignored whole.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import PIL

FORMAT = 1  # bump when what is recorded per file changes
Key = tuple[str, int, int]


def file_key(path) -> Key:
    """(path, size, mtime_ns) of a file; OSError if it cannot be stat'ed."""
    stat = os.stat(path)
    return str(path), stat.st_size, stat.st_mtime_ns


class ImageChecks:
    """Each file's check (under a max_pixels) and dHash, and which files this load used: what `save` keeps.

    Created per load (load_checked), handed to the image check and the leak check, then saved; one object handed to
    several loads makes them share what they learnt, without a run directory."""

    def __init__(self):
        self._verdicts: dict[tuple[Key, int | None], tuple[str, str] | None] = {}  # (file, max_pixels) -> problem
        self._hashes: dict[Key, int] = {}  # file -> dHash of its pixels
        self.used: set[Key] = set()  # files checked or answered from the record since this object was made

    def verdict(self, key: Key, max_pixels: int | None):
        """The recorded check of a file under max_pixels: (reason, detail), None (fine), or KeyError if never
        checked."""
        found = self._verdicts[(key, max_pixels)]
        self.used.add(key)
        return found

    def record(self, key: Key, max_pixels: int | None, problem: tuple[str, str] | None,
               dhash: int | None = None) -> None:
        """Keep a file's check under max_pixels, and its dHash when it decoded."""
        self._verdicts[(key, max_pixels)] = problem
        if dhash is not None:
            self._hashes[key] = dhash
        self.used.add(key)

    def known_hash(self, key: Key) -> int | None:
        """The dHash recorded for a file, or None."""
        return self._hashes.get(key)

    def load(self, path: str | os.PathLike) -> int:
        """Add the records saved at `path` (if any, and if made with this Pillow and format); returns how many."""
        try:
            saved = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return 0  # none yet, or unreadable: everything is checked afresh
        if not isinstance(saved, dict) or saved.get("format") != FORMAT or saved.get("pillow") != PIL.__version__:
            return 0
        files = saved.get("files", [])
        for name, size, mtime, max_pixels, problem, dhash in files:
            key = (name, size, mtime)
            self._verdicts[(key, max_pixels)] = tuple(problem) if problem else None
            if dhash is not None:
                self._hashes[key] = dhash
        return len(files)

    def save(self, path: str | os.PathLike) -> None:
        """Write the records of the files this load used to `path` (atomically: a reader sees the old or the new
        file)."""
        files = [[*key, max_pixels, list(problem) if problem else None, self._hashes.get(key)]
                 for (key, max_pixels), problem in self._verdicts.items() if key in self.used]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "pillow": PIL.__version__, "files": files}), encoding="utf-8")
        os.replace(tmp, path)
