#!/usr/bin/env bash
# Builds Squall (plain and ASan/UBSan) and runs every test under ctest: C unit tests, busted
# specs of lua/, and end-to-end tests against the real binary over loopback sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug -DSQ_SANITIZE=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure -j2 "$@"
