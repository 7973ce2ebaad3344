#!/usr/bin/env bash
# On the development machine: download the wheels benchmarks/run_gpu.sh needs on the GPU machine into .whl/
# (git-ignored; copy it to the GPU machine beside the checkout). The GPU image (Python 3.12) has torch, numpy,
# pillow, tqdm, accelerate, tokenizers and huggingface-hub, but transformers 5.17: blipnb is developed and its
# SDPA patch tested on the version in .venv, so that one travels. `datasets` is not needed by the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "transformers==$version"
# benchmarks/serve_load.py there: `blipnb serve` needs LitServe and its stack (FastAPI, uvicorn, pyzmq, ...), which
# the image lacks. ~11 MB, kept in .whl/serve/ so that run_gpu.sh's install of .whl/*.whl leaves them out.
litserve=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('litserve'))")
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl/serve "litserve==$litserve"
ls -l .whl .whl/serve
