"""What produced a result: package versions, the project's git commit, the data source and split hashes."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("blipnb", "torch", "transformers", "datasets", "tokenizers", "evaluate", "sacrebleu", "pycocoevalcap",
            "pillow", "numpy", "papermill")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None where absent)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the blipnb checkout (with '+dirty' if it has uncommitted changes), or None."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def provenance(cfg, ds=None) -> dict:
    """Everything needed to say where a number came from."""
    from ..data import split_hashes
    from ..data.corrections import describe

    info = {"config": cfg.to_dict(), "versions": package_versions(), "git_commit": git_commit(),
            "data_source": cfg.data.source, "corrections": describe(cfg.data.corrections), "device": _device()}
    if ds is not None:
        info["split_sizes"] = {s: len(ds[s]) for s in ds}
        info["split_hashes"] = split_hashes(ds)
    return info


def _device() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or 'unknown'})"
