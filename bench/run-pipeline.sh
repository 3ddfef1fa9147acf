#!/usr/bin/env bash
# What pipelining statements on a connection would save (bench/dbpipeline.c): the statements of
# /updates?queries=20 and /queries?queries=20 from one epoll loop over CONNS TCP connections to
# the private MariaDB, DEPTHS statements in flight per connection, interleaved REPEAT times; the
# table gives medians of requests/s, the client's and MariaDB's CPU per request.
#   DURATION=4 REPEAT=3 CONNS=16 CLIENTS=64 DEPTHS="1 2 4" ROUTES="updates queries" bash bench/run-pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-4} REPEAT=${REPEAT:-3} CONNS=${CONNS:-16} CLIENTS=${CLIENTS:-64}
DEPTHS=${DEPTHS:-"1 2 4"} ROUTES=${ROUTES:-"updates queries"}
BIN=bench/.cache/dbpipeline
if [ ! -x "$BIN" ] || [ bench/dbpipeline.c -nt "$BIN" ]; then
  mkdir -p bench/.cache
  # shellcheck disable=SC2046
  gcc -O2 -Wall -o "$BIN" bench/dbpipeline.c $(pkg-config --cflags --libs libmariadb)
fi
bash tools/db.sh start >&2
eval "$(bash tools/db.sh env)"
DB_PID=$(cat "${SQUALL_DB_DIR:-var/mariadb}/mysqld.pid")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for _ in $(seq "$REPEAT"); do
  for route in $ROUTES; do
    for d in $DEPTHS; do
      "$BIN" "$SQUALL_DB_HOST" "$SQUALL_DB_PORT" squall squall squall "$DB_PID" "$route" "$CONNS" "$CLIENTS" "$d" "$DURATION" | tee -a "$out" >&2
    done
  done
done
echo "| statements of | conns | requests | depth | req/s | client CPU us/req | MariaDB CPU us/req | client ctx sw/req |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) conns (\d+) clients (\d+) depth (\d+): (\d+) req/s, client ([\d.]+) us/req, MariaDB ([\d.]+) us/req, client ctx sw/req ([\d.]+)", line)
    if m:
        runs.setdefault(m.groups()[:4], []).append([float(x) for x in m.groups()[4:]])
for (route, conns, clients, depth), rs in runs.items():
    med = [statistics.median(col) for col in zip(*rs)]
    print(f"| /{route}?queries=20 | {conns} | {clients} | {depth} | {med[0]:,.0f} | {med[1]:.1f} | {med[2]:.1f} | {med[3]:.2f} |")
PY
