"""Make a model folder deployable as it is: the endpoint module copied in for Hugging Face Inference Endpoints
(handler.py) and SageMaker (code/inference.py), what they import, and the run's decoding defaults."""
from __future__ import annotations

import dataclasses
import re
from importlib import metadata
from pathlib import Path

from .. import runs
from ..config import GenerationConfig
from . import endpoint

# What the endpoint imports; their version bounds are blipnb's own (pyproject.toml), read from the installed package.
ENDPOINT_PACKAGES = ("torch", "transformers", "pillow", "numpy")


def write_endpoint(model_dir: str | Path, gen: GenerationConfig) -> list[Path]:
    """Write handler.py and code/inference.py (byte copies of blipnb/model/endpoint.py), requirements.txt beside
    each, and the decoding settings `gen` as the endpoint's defaults; returns the paths written."""
    model_dir = Path(model_dir)
    source = Path(endpoint.__file__).read_text(encoding="utf-8")
    requirements = "".join(f"{r}\n" for r in endpoint_requirements())
    settings = {k: v for k, v in dataclasses.asdict(gen).items() if k in endpoint.FALLBACK_DECODING}
    sagemaker_dir = Path(runs.SAGEMAKER_ENTRY).parent
    return [runs.write_text(model_dir / runs.HANDLER, source),
            runs.write_text(model_dir / runs.SAGEMAKER_ENTRY, source),
            runs.write_text(model_dir / runs.REQUIREMENTS, requirements),
            runs.write_text(model_dir / sagemaker_dir / runs.REQUIREMENTS, requirements),
            runs.write_json(model_dir / endpoint.DECODING_FILE, settings)]


def endpoint_requirements() -> list[str]:
    """pip requirements for the endpoint: ENDPOINT_PACKAGES with blipnb's bounds (bare names if blipnb's metadata
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
    """EndpointHandler from the folder's own handler.py, imported from its file as Inference Endpoints does."""
    import importlib.util

    path = Path(model_dir) / runs.HANDLER
    spec = importlib.util.spec_from_file_location("handler", path)  # not registered in sys.modules
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.EndpointHandler(str(model_dir))


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
