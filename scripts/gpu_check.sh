#!/usr/bin/env bash
# The CUDA checks, run when a GPU machine is lent (docs/performance.md "## GPU"):
#   1. the attention tests on CUDA: xformers vs SDPA, and the shipped checkpoint's chunked
#      generation on the GPU (SDPA and auto = xformers) against the CPU's motion;
#   2. `echo-cli bench generate` (CPU rows, then CUDA rows with SDPA and xformers), at the
#      default 1500 frames and (CUDA rows only) at 15000.
# The machine may lack packages this project needs there (xformers, pydantic): put their
# wheels in .whl/ (see the comment at the end) and they are installed to /tmp/site first.
# Logs and JSON go to $OUT (default /tmp/echo-gpu-check).
set -uo pipefail
OUT=${OUT:-/tmp/echo-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ECHO_CACHE_DIR=/tmp/echo-cache PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())"
    $PY -c "import xformers; print('xformers', xformers.__version__)" || echo "xformers: not importable"
} 2>&1 | tee "$OUT/gpu.txt"
$PY -m echo_cli doctor 2>&1 | grep -Ei "cuda|xformers" | tee -a "$OUT/gpu.txt"
$PY -m pytest -q -rs -s -p no:cacheprovider tests/test_attention.py 2>&1 | tee "$OUT/attention.log"
$PY -m echo_cli bench generate --no-doc --out "$OUT/generate.json" --history "$OUT/history.jsonl" 2>&1 | tee "$OUT/generate.log"
$PY -m echo_cli bench generate --no-doc --frames 15000 --set devices=cuda --out "$OUT/generate_15000.json" --history "$OUT/history.jsonl" \
    2>&1 | tee "$OUT/generate_15000.log"
# Wheels for an x86-64 CUDA machine with Python 3.12 and torch >= 2.10 (fetched where pip works):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     xformers==0.0.35 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
