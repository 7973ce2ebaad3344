# The two commands a new machine needs: `make demo` (the suite on the offline sample) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU := torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: demo test venv bench lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Without a CUDA GPU take the CPU torch wheel first: a plain `torch` requirement pulls a multi-GB CUDA build.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q $(TORCH_CPU); fi
	$(PY) -m pip install -q -e '.[notebooks,dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	# Strip notebook outputs on commit, keeping cell tags (the parameters tag); see .gitattributes.
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install --attributes .gitattributes; fi
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/blipnb run-all -f notebooks/params/sample.yaml --out runs/sample

NBVAL_DIR := .nbval
# Unit and notebook tests, then nbval over the notebooks prepared with the smoke parameters (each cell a test).
# pytest exits 5 when it collected nothing: that must fail loudly, not pass.
test: venv
	$(VENV)/bin/pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && echo "make test: no tests were collected" >&2; \
	  [ $$rc -eq 0 ] || exit 1
	rm -rf $(NBVAL_DIR)
	$(VENV)/bin/blipnb run-all --prepare-only -f notebooks/params/smoke.yaml --out $(NBVAL_DIR)
	$(VENV)/bin/pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env $(NBVAL_DIR)/notebooks; rc=$$?; \
	  [ $$rc -eq 5 ] && echo "make test: nbval collected no notebooks" >&2; [ $$rc -eq 0 ] || exit 1

bench: venv
	$(PY) benchmarks/train_throughput.py --tiny
	$(PY) benchmarks/generate_throughput.py --tiny
	$(PY) benchmarks/data_throughput.py --tiny

lint: venv
	$(VENV)/bin/ruff check blipnb tests benchmarks

clean:
	rm -rf runs .pytest_cache $(NBVAL_DIR)
