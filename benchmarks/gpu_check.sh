#!/usr/bin/env bash
# One short check of every CUDA and TensorRT path dnx has (benchmarks/gpu_check.py): densenet121 at
# batch 1/8/64 with parity; writes benchmarks/results/gpu_check[_cpu].{json,md}. The script keeps to
# a 420 s budget itself; the timeout is the hard 8-minute stop. Arguments go to the script.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
exec timeout --kill-after=10 480 "$python" -m dnx.benchmarks.gpu_check "$@"
