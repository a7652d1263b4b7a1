#!/usr/bin/env bash
# Configure, build and test libdnx_runtime: what `make test` runs for the C++ runtime.
#   runtime/cpp/build_and_test.sh          Release build, warnings as errors, all ctest tests
#   runtime/cpp/build_and_test.sh asan     the same tests under AddressSanitizer + UBSan
# Needs the project venv (cmake, ninja, openvino wheel) and the Debian packages named in docs/cpp.md (CPP_DEBS in the Makefile).
set -euo pipefail
preset="${1:-ci}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${VENV:-$root/.venv}"
export PATH="$venv/bin:$PATH"
OpenVINO_DIR="$("$venv/bin/python" -c 'import openvino.utils as u; print(u.get_cmake_path())')"
export OpenVINO_DIR
fixtures="$root/build/cpp-fixtures"
mkdir -p "$root/build"

# Python writes the parity fixtures while C++ compiles (make_fixtures.py skips work already done).
"$venv/bin/python" "$here/tests/make_fixtures.py" "$fixtures" > "$root/build/cpp-fixtures.log" 2>&1 &
fixtures_pid=$!
cd "$here"
cmake --preset "$preset" -DDNX_FIXTURES="$fixtures" > /dev/null
cmake --build --preset "$preset"
if ! wait "$fixtures_pid"; then
    cat "$root/build/cpp-fixtures.log" >&2
    echo "make_fixtures.py failed" >&2
    exit 1
fi
ctest --preset "$preset" -j 2
