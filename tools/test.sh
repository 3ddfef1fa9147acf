#!/usr/bin/env bash
# Builds Squall (plain and ASan/UBSan) and runs every test under ctest: C unit tests, busted
# specs of lua/, and end-to-end tests against the real binary over loopback sockets.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# The tests start the private MariaDB (tools/db.sh) when it is not running; stop it again
# afterwards in that case, so that a CI run on a fresh clone leaves no server behind.
db_sh=$PWD/tools/db.sh
db_was_up=0
if bash "$db_sh" status >/dev/null 2>&1; then db_was_up=1; fi
trap '[ "$db_was_up" = 1 ] || bash "$db_sh" stop >/dev/null 2>&1 || true' EXIT
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug -DSQ_SANITIZE=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build
# The end-to-end tests measure time on a shared 2-core machine (timeouts, shutdown, reloads); a
# test that fails is run once more, so a scheduling blip does not fail the run while a real bug,
# which fails both times, still does.
ctest --output-on-failure -j2 --repeat until-pass:2 "$@"
