#!/usr/bin/env bash
# One short check of every CUDA and TensorRT path dnx has (benchmarks/gpu_check.py): densenet121 at
# batch 1/8/64 with parity; writes benchmarks/results/gpu_check[_cpu].{json,md}. The script keeps to
# a 420 s budget itself; the timeout is the hard 8-minute stop (the C++ probe's build before it has its
# own). Arguments go to the script.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
# The C++ checks run tests/dnx-tensorrt-probe, which CMake builds only where it finds TensorRT's header
# and libnvinfer (TensorRT_ROOT or the system paths): a bounded build first; without it they are skipped.
if [ -z "${DNX_TENSORRT_PROBE:-}" ] && [ -x "$(dirname "$python")/cmake" ] && \
   { [ -n "${TensorRT_ROOT:-}" ] || ls /usr/include/NvInfer.h /usr/include/*/NvInfer.h >/dev/null 2>&1; }; then
    mkdir -p build
    ( export PATH="$(dirname "$python"):$PATH"
      OpenVINO_DIR="$("$python" -c 'import openvino.utils as u; print(u.get_cmake_path())')" && export OpenVINO_DIR
      cd runtime/cpp && timeout 240 cmake --preset ci && timeout 240 cmake --build --preset ci --target dnx-tensorrt-probe
    ) > build/gpu-check-cpp.log 2>&1 || echo "gpu-check: no C++ probe (see build/gpu-check-cpp.log)" >&2
fi
exec timeout --kill-after=10 480 "$python" -m dnx.benchmarks.gpu_check "$@"
