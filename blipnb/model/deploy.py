"""Make a model folder deployable as it is: blipnb's runtime copied in for Hugging Face Inference Endpoints
(handler.py) and SageMaker (code/inference.py), what it imports, and the run's decoding."""
from __future__ import annotations

import re
import shutil
from importlib import metadata
from pathlib import Path

from .. import runs, runtime
from ..runtime.decoding import DECODING_FILE, Decoding

# What the runtime imports; their version bounds are blipnb's own (pyproject.toml), read from the installed package.
ENDPOINT_PACKAGES = ("torch", "transformers", "pillow", "numpy")
RUNTIME_PACKAGE = "blipnb_runtime"  # the runtime's name inside an export
ENTRY = f'''"""A blipnb export's entry point: Hugging Face Inference Endpoints (EndpointHandler) and SageMaker (model_fn,
input_fn, predict_fn, output_fn). The captioner is {RUNTIME_PACKAGE}/ beside this file: it needs only torch,
transformers, Pillow and numpy (requirements.txt)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from {RUNTIME_PACKAGE}.hosts import EndpointHandler, input_fn, model_fn, output_fn, predict_fn  # noqa: E402,F401
'''


def write_endpoint(model_dir: str | Path, decoding: Decoding) -> list[Path]:
    """Write handler.py and code/inference.py (the same thin entry point), the runtime package beside each,
    requirements.txt beside each, and `decoding` as the folder's stored decoding; returns the files written."""
    model_dir = Path(model_dir)
    requirements = "".join(f"{r}\n" for r in endpoint_requirements())
    written = []
    for entry in (Path(runs.HANDLER), Path(runs.SAGEMAKER_ENTRY)):
        folder = model_dir / entry.parent
        written += [runs.write_text(model_dir / entry, ENTRY), runs.write_text(folder / runs.REQUIREMENTS,
                                                                               requirements)]
        written += copy_runtime(folder / RUNTIME_PACKAGE)
    written.append(runs.write_json(model_dir / DECODING_FILE, decoding.settings()))
    return written


def copy_runtime(target: Path) -> list[Path]:
    """The runtime package's modules (its families subpackage included), byte for byte, into `target` (replacing
    what was there)."""
    source = Path(runtime.__file__).parent
    shutil.rmtree(target, ignore_errors=True)
    out = []
    for module in sorted(source.rglob("*.py")):
        (target / module.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        out.append(Path(shutil.copyfile(module, target / module.relative_to(source))))
    return out


def endpoint_requirements() -> list[str]:
    """pip requirements for the runtime: ENDPOINT_PACKAGES with blipnb's bounds (bare names if blipnb's metadata
    is missing, as when it runs from a checkout that was never installed)."""
    try:
        declared = metadata.requires("blipnb") or []
    except metadata.PackageNotFoundError:
        declared = []
    bounds = {}
    for req in declared:
        if ";" in req:  # an extra's requirement
            continue
        bounds[re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower()] = req
    return [bounds.get(name, name) for name in ENDPOINT_PACKAGES]


def load_handler(model_dir: str | Path):
    """EndpointHandler from the folder's own handler.py, imported from its file as Inference Endpoints does, with
    the folder's own runtime (not one an earlier export left in sys.modules); sys.path is left as it was."""
    import importlib.util
    import sys

    path = Path(model_dir) / runs.HANDLER
    spec = importlib.util.spec_from_file_location("handler", path)  # not registered in sys.modules
    module = importlib.util.module_from_spec(spec)
    before_path, cached = list(sys.path), _pop_runtime_modules()
    try:
        spec.loader.exec_module(module)
        return module.EndpointHandler(str(model_dir))
    finally:
        sys.path[:] = before_path
        _pop_runtime_modules()
        sys.modules.update(cached)


def _pop_runtime_modules() -> dict:
    import sys

    return {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == RUNTIME_PACKAGE}


def serve_commands(model_dir: str | Path, port: int = 8000) -> str:
    """The shell and Python lines that serve `model_dir` with `blipnb serve` and caption one image through it."""
    url = f"http://127.0.0.1:{port}/predict"
    return "\n".join([
        f"blipnb serve {model_dir} --port {port}        # in a terminal: runs until Ctrl+C",
        f"curl -X POST {url} -H 'Content-Type: image/jpeg' --data-binary @photo.jpg",
        f"curl -X POST '{url}?num_beams=1&max_new_tokens=20' -H 'Content-Type: image/jpeg' --data-binary @photo.jpg",
        "",
        "import base64, requests",
        "image = base64.b64encode(open('photo.jpg', 'rb').read()).decode()",
        f"requests.post('{url}', json={{'inputs': image, 'parameters': {{'num_beams': 3}}}}).json()",
        "# -> [{'generated_text': '...'}]",
    ])
