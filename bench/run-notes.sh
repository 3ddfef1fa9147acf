#!/usr/bin/env bash
# The cost of squall.model on the notes API's list route (issue: models within 1.3x the CPU of
# hand-written SQL): bench/notes/app.lua serves both versions from one server; wrk runs them
# interleaved, REPEAT times each, and the table gives the medians of requests/s and of the
# server's CPU per request (utime+stime of the process from /proc, over the measured window).
#   DURATION=5 WARMUP=2 REPEAT=5 CONNS=32 NOTES=100 PER_PAGE=20 SKIP_BUILD=0 bash bench/run-notes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-5} WARMUP=${WARMUP:-2} REPEAT=${REPEAT:-5} CONNS=${CONNS:-32}
NOTES=${NOTES:-100} PER_PAGE=${PER_PAGE:-20} SKIP_BUILD=${SKIP_BUILD:-0}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
bash tools/setup.sh
bash tools/db.sh start >/dev/null
eval "$(bash tools/db.sh env)"
if [ "$SKIP_BUILD" != 1 ]; then
  cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DSQ_SANITIZE=OFF -DBUILD_TESTING=OFF >/dev/null
  cmake --build build-release -j2 --target squall >/dev/null
fi
# One user with NOTES notes, made for this run and removed after it.
uid=$(bash tools/db.sh client -N -e "INSERT INTO users (name, bio) VALUES ('bench-notes', 'x'); SELECT LAST_INSERT_ID();")
bash tools/db.sh client -e "INSERT INTO notes (user_id, title, body)
  SELECT $uid, CONCAT('note ', seq), REPEAT('body text ', 10) FROM seq_1_to_$NOTES;"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp /tmp/squall-notes.XXXXXX)
(cd bench/notes && SQUALL_BENCH_PORT=$port SQUALL_DB_SOCKET=$SQUALL_DB_SOCKET exec "$ROOT/build-release/squall" -c config.lua) >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  bash tools/db.sh client -e "DELETE FROM users WHERE id = $uid" || true
  rm -f "$log"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/hand/users/$uid/notes" >/dev/null && break; sleep 0.1; done
for v in hand model; do    # the same JSON from both, or the comparison means nothing
  curl -sf "http://127.0.0.1:$port/$v/users/$uid/notes?per_page=$PER_PAGE" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["notes"]), d["total"])' >"$log.$v"
done
cmp -s "$log.hand" "$log.model" || { echo "the two routes disagree: $(cat "$log.hand") / $(cat "$log.model")" >&2; exit 1; }
rm -f "$log.hand" "$log.model"
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
results=$(mktemp)
for rep in $(seq "$REPEAT"); do
  for v in hand model; do
    url="http://127.0.0.1:$port/$v/users/$uid/notes?per_page=$PER_PAGE"
    wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url" >/dev/null
    t0=$(ticks)
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url")
    t1=$(ticks)
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    [ -z "$non2xx" ] || { echo "$v: $non2xx non-2xx answers" >&2; exit 1; }
    cpu=$(python3 -c "print(($t1 - $t0) / $hz * 1e6 / $reqs)")
    echo "$v $rps $cpu" | tee -a "$results" >&2
  done
done
python3 - "$results" "$REPEAT" "$CONNS" "$PER_PAGE" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {v: (statistics.median(float(r[1]) for r in rows if r[0] == v),
           statistics.median(float(r[2]) for r in rows if r[0] == v)) for v in ("hand", "model")}
print("notes list route, %s notes per page, wrk -t1 -c%s, medians of %s interleaved runs" % (sys.argv[4], sys.argv[3], sys.argv[2]))
print("| version | req/s | server CPU us/req |")
print("|---|---:|---:|")
for v in ("hand", "model"):
    print("| %s | %.0f | %.1f |" % (v, med[v][0], med[v][1]))
print("model / hand: req/s %.3f, CPU per request %.3f (target <= 1.3)" % (med["model"][0] / med["hand"][0], med["model"][1] / med["hand"][1]))
PY
rm -f "$results"
