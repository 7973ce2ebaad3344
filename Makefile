# The two commands a new machine needs: `make demo` (the suite on the offline sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU := torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: demo lab compare test venv bench lint clean params

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Without a CUDA GPU take the CPU torch wheel first: a plain `torch` requirement pulls a multi-GB CUDA build.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q $(TORCH_CPU); fi
	$(PY) -m pip install -q -e '.[notebooks,dev,serve,sweep,mlflow]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	# Strip notebook outputs on commit, keeping cell tags (the parameters tag). The committed notebooks are exactly
	# what this filter writes (cell ids "0", "1", ...), so a fresh clone stays clean; a test holds that.
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install --attributes .gitattributes; fi
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/blipnb run-all -f notebooks/params/sample.yaml --out runs/sample

# JupyterLab on the five notebooks, prepared with the sample preset in runs/sample/notebooks (reused as they are
# when already there: a second `make lab` keeps your edits); prints the URL to open. PRESET=smoke for seconds-long.
PRESET ?= sample
lab: venv
	$(VENV)/bin/blipnb lab -f $(PRESET)

# Optional, offline: a tiny GIT trained on the demo's sample with the demo's recipe (GIT has no pixel cache), then
# both runs compared on the same test images. Runs the demo first when runs/sample has no scores yet.
compare: venv
	test -f runs/sample/metrics.json || $(MAKE) demo
	$(VENV)/bin/blipnb run-all -f notebooks/params/sample.yaml -p family git -p pixel_cache false --out runs/sample-git
	$(VENV)/bin/blipnb compare runs/sample runs/sample-git --out runs/compare

NBVAL_DIR := .nbval
# One pytest session: first nbval runs each notebook once, cell by cell, prepared with the smoke parameters into
# the run directory $(NBVAL_DIR); then the unit tests, whose notebook tests check the files that run wrote
# (BLIPNB_SMOKE_RUN). `pytest tests` alone runs the notebooks itself, once, with papermill.
# pytest exits 5 when it collected nothing: that must fail loudly, not pass.
# tests/browser (04 and 05 in JupyterLab in chromium) runs when node, chromium and its npm packages are present;
# otherwise -rs prints the one line saying what is missing (.ci/run installs them and makes that skip a failure).
test: venv
	rm -rf $(NBVAL_DIR)
	if command -v npm >/dev/null 2>&1 && [ ! -d tests/browser/node_modules ]; then \
	  npm ci --prefix tests/browser --no-audit --no-fund || echo "make test: npm ci failed; the browser suite will say so"; fi
	$(VENV)/bin/blipnb run-all --prepare-only -f notebooks/params/smoke.yaml --out $(NBVAL_DIR)
	BLIPNB_SMOKE_RUN=$(CURDIR)/$(NBVAL_DIR) $(VENV)/bin/pytest -q -rs -p no:cacheprovider --nbval-lax --nbval-current-env \
	  $(NBVAL_DIR)/notebooks tests; rc=$$?; [ $$rc -eq 5 ] && echo "make test: no tests were collected" >&2; \
	  [ $$rc -eq 0 ] || exit 1

# After changing a default or a help text in blipnb/config/ or blipnb/runtime/decoding.py, or a notebook's CELLS
# in blipnb/notebook/params.py: rewrite the notebooks' parameters cells.
params: venv
	$(PY) -m blipnb.notebook.params notebooks

bench: venv
	$(PY) benchmarks/train_throughput.py --tiny
	$(PY) benchmarks/generate_throughput.py --tiny
	$(PY) benchmarks/data_throughput.py --tiny

lint: venv
	$(VENV)/bin/ruff check blipnb tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf runs .pytest_cache $(NBVAL_DIR)
