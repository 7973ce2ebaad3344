#!/usr/bin/env bash
# All three benchmarks on one CUDA GPU, in under 5 minutes, from the repo root:
#   bash benchmarks/run_gpu.sh
# Writes benchmarks/results/{train,generate,data}_throughput_<device>_<UTC time>.json and run_gpu_<...>.log, and
# copies them into $OUT when $OUT is set (for a remote machine that returns only that folder).
# Wheels under .whl/ (git-ignored; benchmarks/fetch_wheels.sh fills it) are installed into /tmp/site first: the GPU
# image has torch but an older transformers. blipnb is imported from this checkout (it need not be installed).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRA=${BENCH_ARGS:-}  # e.g. BENCH_ARGS="--tiny --steps 1" for a dry run on CPU
RES=benchmarks/results
mkdir -p "$RES"

if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "installing .whl/*.whl failed" >&2; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

slug=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" \
  | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/-*$//')
stamp=$(date -u +%Y%m%dT%H%MZ)
log="$RES/run_gpu_${slug}_${stamp}.log"
exec > >(tee "$log") 2>&1

echo "== $(date -u) on $slug"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
"$PY" -c "import sys, torch, transformers, blipnb.model.sdpa as f; print('python', sys.version.split()[0], 'torch', \
torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'from', transformers.__file__)"

run() {  # name, wall-clock limit (s), arguments...
  local name=$1 limit=$2
  shift 2
  local out="$RES/${name}_${slug}_${stamp}.json"
  echo "== $name (limit ${limit}s) -> $out"
  local start=$SECONDS
  # shellcheck disable=SC2086
  timeout "$limit" "$PY" "benchmarks/$name.py" --out "$out" "$@" $EXTRA
  echo "== $name exit $? after $((SECONDS - start))s"
}

# Budgets: train skips configurations (compiled ones come last) once --budget-s is spent, and every script
# rewrites its JSON after each measurement, so a timeout still leaves what was measured.
run train_throughput 175 --budget-s 100
run generate_throughput 70 --budget-s 45
run data_throughput 40
echo "== total ${SECONDS}s"

if [ -n "${OUT:-}" ]; then
  cp "$RES"/*_"${slug}_${stamp}".* "$OUT"/ 2> /dev/null
  ls -l "$OUT"
fi
