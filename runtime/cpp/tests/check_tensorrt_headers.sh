#!/usr/bin/env bash
# Syntax-check the TensorRT backend (and the gpu-check probe) against real TensorRT headers, with the
# project's warnings, where TensorRT itself cannot be installed:
#   runtime/cpp/tests/check_tensorrt_headers.sh CUDA_INCLUDE TRT_INCLUDE...
# TRT_INCLUDE: an include/ folder of NVIDIA's public headers, e.g. from `git archive v11.0 include` of
# github.com/NVIDIA/TensorRT (kept outside the repository); CUDA_INCLUDE: CUDA runtime headers, e.g.
# those of the nvidia-cuda-runtime and nvidia-cuda-crt wheels.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,7p "$0" >&2; exit 1; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cuda="$1"; shift
for trt in "$@"; do
    for source in "$here/src/tensorrt_backend.cpp" "$here/tests/tensorrt_probe.cpp"; do
        "${CXX:-g++}" -std=c++17 -fsyntax-only -Werror -Wall -Wextra -Wpedantic -Wshadow -Wconversion \
            -Wno-sign-conversion -I"$here/include" -I"$here/src" -isystem "$trt" -isystem "$cuda" "$source"
    done
    echo "ok: $trt"
done
