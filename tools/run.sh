#!/usr/bin/env bash
# Sets up a fresh machine, builds a release binary and serves the example app on
# http://127.0.0.1:8080 (config.lua). Ctrl-C stops it gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/db.sh start
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DSQ_SANITIZE=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build build-release -j"$(nproc)"
exec ./build-release/squall -c config.lua
