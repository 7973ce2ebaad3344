"""`blipnb lab` (and `make lab`): the five notebooks prepared with a preset's parameters in the run directory's
notebooks/ folder, as `blipnb run-all --prepare-only` prepares them, then JupyterLab started there on 127.0.0.1
with a token; the URL to open is printed. Notebooks already there are reused, never overwritten: they may hold a
user's edits."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

from . import runs
from .notebook.params import NOTEBOOKS
from .presets import preset_path, read_params
from .suite import run_all

DEFAULT_PRESET = "sample"
DEFAULT_PORT = 8888


def prepare(preset_file: Path, run_dir: Path, notebook_dir: Path) -> list[Path]:
    """The five notebooks in run_dir/notebooks, with the preset's parameters injected; those already there are kept
    as they are (a user may have edited them). Returns their paths, in order."""
    folder = run_dir.resolve() / runs.NOTEBOOKS_DIR
    paths = [folder / f"{name}.ipynb" for name in NOTEBOOKS]
    missing = [name for name, path in zip(NOTEBOOKS, paths) if not path.exists()]
    kept = len(NOTEBOOKS) - len(missing)
    if kept:
        print(f"blipnb lab: reusing {kept} notebook(s) in {folder} as they are (delete one to prepare it again "
              "from the preset)", flush=True)
    if missing and run_all(read_params([str(preset_file)]), run_dir, notebook_dir, only=missing, prepare_only=True):
        raise SystemExit("blipnb lab: preparing the notebooks failed (see above)")
    return paths


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def jupyter_command(root: Path, port: int, open_browser: bool) -> list[str]:
    """JupyterLab on 127.0.0.1:`port` rooted at `root`; the token is passed in the environment (JUPYTER_TOKEN), not
    on the command line, where other users of the machine could read it."""
    lab = Path(sys.executable).parent / "jupyter-lab"
    command = [str(lab) if lab.exists() else "jupyter-lab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # a container's root: JupyterLab refuses it otherwise
        command.append("--ServerApp.allow_root=True")
    return command + ([] if open_browser else ["--no-browser"])


def main(args) -> int:
    """Prepare the notebooks, start JupyterLab there, print its URL, and wait until it stops (Ctrl+C)."""
    from .suite import default_notebook_dir

    preset = preset_path(args.preset)
    run_dir = Path(args.out or read_params([str(preset)]).get("run_dir") or "runs/default")
    paths = prepare(preset, run_dir, args.notebooks or default_notebook_dir())
    port, token = free_port(args.port), secrets.token_urlsafe(24)
    url = f"http://127.0.0.1:{port}/lab/tree/{paths[0].name}?token={token}"
    print(f"blipnb lab: the notebooks of {run_dir} with {preset.name}'s parameters, in {paths[0].parent}\n"
          f"blipnb lab: open {url}\n"
          "blipnb lab: run each notebook in order (Run > Run All Cells); change a parameter in its parameters cell "
          "and run again. Outputs go to the run directory. Ctrl+C stops JupyterLab.", flush=True)
    env = {**os.environ, "JUPYTER_TOKEN": token}
    env.pop("BLIPNB_HEADLESS", None)  # a person watches: progress bars as widgets
    try:
        return subprocess.call(jupyter_command(paths[0].parent, port, not args.no_browser), env=env)
    except KeyboardInterrupt:
        return 0
