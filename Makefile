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
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/blipnb run-all -f notebooks/params/sample.yaml --out runs/sample

# pytest exits 5 when it collected nothing: that must fail, not pass quietly.
test: venv
	$(VENV)/bin/pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

bench: venv
	$(PY) benchmarks/train_throughput.py --tiny
	$(PY) benchmarks/generate_throughput.py --tiny
	$(PY) benchmarks/data_throughput.py --tiny

lint: venv
	$(VENV)/bin/ruff check blipnb tests benchmarks

clean:
	rm -rf runs .pytest_cache
