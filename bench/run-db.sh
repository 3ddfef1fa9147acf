#!/usr/bin/env bash
# Squall on the TechEmpower database routes (MariaDB), plus the database ceiling and a pool-size
# sweep. Run from anywhere:  MODE=db bash bench/run.sh   (or  bash bench/run-db.sh)
# See bench/README.md. It sources bench/run.sh for the helpers (packages, build, start/stop,
# CPU ticks, wrk parsing, idle-machine waiting) and shares its knobs (DURATION WARMUP REPEAT
# THREADS SKIP_BUILD MAX_OTHER RETRIES QUIET_WAIT KEEP_RUNDIR), plus:
#   ROWS="plaintext-64 plaintext-256 db-64 db-256 queries1-64 queries20-64 fortunes-64 updates20-64"
#                 rows measured at pool size POOL (route[N]-connections; N = ?queries=N)
#   POOL=4        Squall's db.pool_size for those rows (bench/config-db.lua reads SQUALL_BENCH_POOL)
#   POOLS="1 2 4 8"   pool sizes of the sweep;  SWEEP_ROWS="db-256"  rows measured at each of them
#   CEILING=1     measure the database ceiling Q (bench/dbceiling.c) with each pool size's threads
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROWS=${ROWS:-"plaintext-64 plaintext-256 db-64 db-256 queries1-64 queries20-64 fortunes-64 updates20-64"}
POOL=${POOL:-4}
POOLS=${POOLS:-"1 2 4 8"}
SWEEP_ROWS=${SWEEP_ROWS:-"db-256"}
CEILING=${CEILING:-1}
SQUALL_BENCH_CONFIG=$BENCH_DIR/config-db.lua
MODE=db
# shellcheck source=bench/run.sh
source "$BENCH_DIR/run.sh"          # cd's to the repo root; stops before its main

DB_DIR=${SQUALL_DB_DIR:-$ROOT/var/mariadb}   # where tools/db.sh keeps the private MariaDB
DB_SOCK=$DB_DIR/mysqld.sock
DBCEIL="$CACHE/dbceiling"

# ---------------------------------------------------------------------------------------------
# setup: packages, MariaDB, dbceiling
# ---------------------------------------------------------------------------------------------

DB_STARTED=0
ensure_db() {
  if ! bash "$ROOT/tools/db.sh" status; then DB_STARTED=1; log "starting MariaDB (tools/db.sh start)"; fi
  bash "$ROOT/tools/db.sh" start >&2 || die "tools/db.sh start failed"
  DB_PID=$(cat "$DB_DIR/mysqld.pid" 2>/dev/null) || die "no $DB_DIR/mysqld.pid"
  kill -0 "$DB_PID" 2>/dev/null || die "mariadbd pid $DB_PID from $DB_DIR/mysqld.pid is not running"
  local n
  n=$(mariadb --no-defaults -usquall -psquall --socket="$DB_SOCK" squall -N -B \
        -e "SELECT (SELECT COUNT(*) FROM World), (SELECT COUNT(*) FROM Fortune)") || die "cannot query MariaDB"
  [ "$n" = "$(printf '10000\t12')" ] || die "expected 10000 World and 12 Fortune rows, got: $n"
}

build_dbceiling() {
  if [ ! -x "$DBCEIL" ] || [ "$BENCH_DIR/dbceiling.c" -nt "$DBCEIL" ]; then
    mkdir -p "$CACHE"
    log "building $DBCEIL"
    # shellcheck disable=SC2046
    gcc -O2 -o "$DBCEIL" "$BENCH_DIR/dbceiling.c" $(pkg-config --cflags --libs libmariadb) -lpthread \
      || die "building dbceiling failed"
  fi
}

db_cleanup() {
  cleanup
  if [ "$DB_STARTED" = 1 ]; then log "stopping the MariaDB this run started"; bash "$ROOT/tools/db.sh" stop || true; fi
}

# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------
# row = route[N]-conns: plaintext, db, queriesN, fortunes, updatesN
row_path() {
  local test=${1%-*}
  case $test in
    plaintext) echo /plaintext ;;
    db)        echo /db ;;
    fortunes)  echo /fortunes ;;
    queries[0-9]*) echo "/queries?queries=${test#queries}" ;;
    updates[0-9]*) echo "/updates?queries=${test#updates}" ;;
    *) die "unknown row $1" ;;
  esac
}
# database statements per request
row_queries() {
  local test=${1%-*}
  case $test in
    plaintext) echo 0 ;;
    db|fortunes) echo 1 ;;
    queries*) echo "${test#queries}" ;;
    updates*) echo $((2 * ${test#updates})) ;;   # a SELECT and an UPDATE per row
  esac
}

# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------
CHECKED=" "
# Context switches (voluntary + involuntary) summed over the threads of a process.
ctx_switches() {
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}

# One measured wrk run on a fresh Squall with db.pool_size=$3; sets M_LINE, M_TOTAL, M_LOGERR, M_LOGFIRST.
measure_route_once() {  # out row pool
  local out=$1 row=$2 pool=$3 conns=${2##*-} url qpr
  url="http://127.0.0.1:$DB_PORT$(row_path "$row")"; qpr=$(row_queries "$row")
  export SQUALL_BENCH_POOL=$pool SQUALL_BENCH_DB_SOCKET=$DB_SOCK
  start_server squall "$DB_PORT"
  if [[ $CHECKED != *" $pool "* ]]; then
    if [ "$CHECKED" = " " ]; then sanity_check squall "$DB_PORT"; fi
    # the DB routes answer right (details for the first pool size, one line for the others)
    python3 "$BENCH_DIR/dbcheck.py" "$DB_PORT" "$DB_SOCK" "squall (pool $pool)" >"$RUNDIR/dbcheck.txt" 2>&1 \
      || echo "squall (pool $pool): dbcheck.py failed: $(tail -1 "$RUNDIR/dbcheck.txt")" >>"$RUNDIR/dbcheck.txt"
    if [ "$CHECKED" = " " ] || grep -qv ': OK (' "$RUNDIR/dbcheck.txt"; then
      cat "$RUNDIR/dbcheck.txt" >>"$RUNDIR/notes.txt"
    else
      echo "squall (pool $pool): the same $(wc -l <"$RUNDIR/dbcheck.txt") DB route checks: OK" >>"$RUNDIR/notes.txt"
    fi
    CHECKED+="$pool "
  fi
  wrk -t"$THREADS" -c"$conns" -d"${WARMUP}s" "$url" >/dev/null 2>&1 || true
  local t0 t1 d0 d1 b0 b1 s0 s1 wrk_times c0 c1 e0 e1
  c0=$(ctx_switches "$SERVER_PID"); e0=$(ctx_switches "$DB_PID")
  t0=$(cpu_ticks "$SERVER_PID"); d0=$(cpu_ticks "$DB_PID")
  read -r b0 s0 < <(machine_ticks)
  wrk_times=$( (wrk -t"$THREADS" -c"$conns" -d"${DURATION}s" --latency "$url" >"$out" 2>&1 || true; times) | tail -1)
  read -r b1 s1 < <(machine_ticks)
  t1=$(cpu_ticks "$SERVER_PID"); d1=$(cpu_ticks "$DB_PID")
  c1=$(ctx_switches "$SERVER_PID"); e1=$(ctx_switches "$DB_PID")
  local rss; rss=$(peak_rss_kb "$SERVER_PID")
  stop_server
  M_LOGERR=$(grep -c -E '\[(error|crit|alert|emerg)\]' "$RUNDIR/squall.log" || true)
  M_LOGFIRST=$(grep -m1 -E '\[(error|crit|alert|emerg)\]' "$RUNDIR/squall.log" | cut -c1-240 || true)
  local req rps p99 err non2xx
  read -r req rps p99 err non2xx < <(parse_wrk "$out")
  M_LINE=$(awk -v row="$row" -v pool="$pool" -v n="$req" -v rps="$rps" -v p99="$p99" -v st=$((t1 - t0)) \
      -v dt=$((d1 - d0)) -v q="$qpr" -v rss="$rss" -v e=$((err + non2xx)) -v hz="$CLK_TCK" -v t="$DURATION" \
      -v busy=$((b1 - b0)) -v steal=$((s1 - s0)) -v wt="$wrk_times" -v sc=$((c1 - c0)) -v dc=$((e1 - e0)) 'BEGIN {
    split(wt, f, " "); w = 0
    for (i = 1; i <= 2; i++) { split(f[i], a, /[ms]/); w += a[1] * 60 + a[2] }
    other = (busy / hz - st / hz - dt / hz - w) / t; if (other < 0) other = 0
    sus = n > 0 ? sprintf("%.3f", st / hz * 1e6 / n) : "nan"
    dus = n > 0 ? sprintf("%.3f", dt / hz * 1e6 / n) : "nan"
    dq  = n > 0 && q > 0 ? sprintf("%.3f", dt / hz * 1e6 / (n * q)) : "nan"
    wus = n > 0 ? sprintf("%.3f", w * 1e6 / n) : "nan"
    scs = n > 0 ? sprintf("%.2f", sc / n) : "nan"
    dcs = n > 0 ? sprintf("%.2f", dc / n) : "nan"
    printf "squall\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\t%d\t%s\t%d\t%d\t%.2f\t%.2f\t%s\t%.2f\t%.2f\t%s\t%s\n",
      row, pool, n, rps, p99, st, sus, dt, dus, q, dq, rss, e, st / hz / t, dt / hz / t, wus, other, steal / hz / t, scs, dcs
  }')
}

# The database ceiling: dbceiling with $2 connections for DURATION s, no HTTP; same M_* as above.
measure_ceiling_once() {  # out pool
  local out=$1 pool=$2
  "$DBCEIL" "$DB_SOCK" squall squall squall "$pool" "$WARMUP" >/dev/null 2>&1 || true
  local d0 d1 b0 b1 s0 s1 times_out e0 e1
  e0=$(ctx_switches "$DB_PID")
  d0=$(cpu_ticks "$DB_PID")
  read -r b0 s0 < <(machine_ticks)
  times_out=$( ("$DBCEIL" "$DB_SOCK" squall squall squall "$pool" "$DURATION" >"$out" 2>&1 || true; times) | tail -1)
  read -r b1 s1 < <(machine_ticks)
  d1=$(cpu_ticks "$DB_PID")
  e1=$(ctx_switches "$DB_PID")
  M_LOGERR=0; M_LOGFIRST=
  local qps; qps=$(grep -E '^[0-9]+$' "$out" | tail -1)
  if [ -z "$qps" ]; then M_LOGERR=1; M_LOGFIRST="dbceiling: $(head -c 200 "$out")"; qps=0; fi
  M_LINE=$(awk -v pool="$pool" -v qps="$qps" -v dt=$((d1 - d0)) -v hz="$CLK_TCK" -v t="$DURATION" \
      -v busy=$((b1 - b0)) -v steal=$((s1 - s0)) -v wt="$times_out" -v e=$((qps > 0 ? 0 : 1)) -v dc=$((e1 - e0)) 'BEGIN {
    split(wt, f, " "); w = 0
    for (i = 1; i <= 2; i++) { split(f[i], a, /[ms]/); w += a[1] * 60 + a[2] }
    n = qps * t
    other = (busy / hz - dt / hz - w) / t; if (other < 0) other = 0
    dus = n > 0 ? sprintf("%.3f", dt / hz * 1e6 / n) : "nan"
    wus = n > 0 ? sprintf("%.3f", w * 1e6 / n) : "nan"
    dcs = n > 0 ? sprintf("%.2f", dc / n) : "nan"
    printf "dbceiling\tceiling\t%s\t%d\t%s\tnan\t0\tnan\t%d\t%s\t1\t%s\t0\t%d\t0.00\t%.2f\t%s\t%.2f\t%.2f\tnan\t%s\n",
      pool, n, qps, dt, dus, dus, e, dt / hz / t, wus, other, steal / hz / t, dcs
  }')
}

# Repeat a run while other processes disturbed it (as run.sh's measure), append the kept one to RAW.
measure_job() {  # rep kind(route|ceiling) row pool
  local rep=$1 kind=$2 row=$3 pool=$4 attempt=0 out total best_line="" best_other=999
  local best_logerr=0 best_logfirst=""
  out="$RUNDIR/$kind-$row-pool$pool-$rep.txt"
  while :; do
    wait_quiet
    if [ "$kind" = ceiling ]; then measure_ceiling_once "$out.try" "$pool"
    else measure_route_once "$out.try" "$row" "$pool"; fi
    total=$(awk -F'\t' '{ printf "%.2f", $18 + $19 }' <<<"$M_LINE")
    log "$(awk -F'\t' -v rep="$rep" '{ printf "%-9s %-13s pool %-2s rep %d: %9.0f %s  p99 %7s ms  squall %7s us/req  mariadb %7s us/req %7s us/query  errors %d  other load %.2f",
      $1, $2, $3, rep, $5, ($1 == "dbceiling" ? "queries/s" : "req/s    "), $6, $8, $10, $12, $14, $18 + $19 }' <<<"$M_LINE")"
    keep_least_disturbed "$M_LINE" "$total" "$out" || break
  done
  # insert rep after pool (column 4)
  awk -F'\t' -v OFS='\t' -v rep="$rep" -v a="$attempt" '{ $3 = $3 OFS rep; print $0, a }' <<<"$best_line" >>"$RAW"
  if [ "$best_logerr" -gt 0 ]; then
    echo "$kind $row pool $pool rep $rep: $best_logerr error lines; first: $best_logfirst" >>"$RUNDIR/notes.txt"
    log "  $best_logerr error lines; first: $best_logfirst"
  fi
  local errs; errs=$(cut -f14 <<<"$best_line")
  [ "$errs" -eq 0 ] || log "  errors: $(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
}

# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
RUNDIR=$(mktemp -d /tmp/squall-bench.XXXXXX)
mkdir -p "$RESULTS"
trap db_cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages wrk:/usr/bin/wrk curl:/usr/bin/curl python3:/usr/bin/python3 cmake:/usr/bin/cmake \
  iproute2:/usr/bin/ss gcc:/usr/bin/gcc pkg-config:/usr/bin/pkg-config \
  libmariadb-dev:/usr/include/mariadb/mysql.h mariadb-server:/usr/sbin/mariadbd \
  mariadb-client:/usr/bin/mariadb
build_squall
build_dbceiling
ensure_db

DB_PORT=$(free_port 28081)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$RESULTS/raw-db-$STAMP.tsv"
printf 'kind\trow\tpool\trep\trequests\trps\tp99_ms\tsquall_ticks\tsquall_us_per_req\tdb_ticks\tdb_us_per_req\tqueries_per_req\tdb_us_per_query\tpeak_rss_kb\terrors\tsquall_cores\tdb_cores\tclient_us_per_req\tother_cores\tsteal_cores\tsquall_ctxsw_per_req\tdb_ctxsw_per_req\tretries\n' >"$RAW"
: >"$RUNDIR/notes.txt"

# jobs of one repetition: the ceiling per pool size, the rows at POOL, the sweep rows at the other sizes
all_pools=$(printf '%s\n' "$POOL" $POOLS | sort -nu | tr '\n' ' ')
jobs=()
if [ "$CEILING" = 1 ]; then for p in $all_pools; do jobs+=("ceiling ceiling $p"); done; fi
for row in $ROWS; do jobs+=("route $row $POOL"); done
for p in $POOLS; do
  for row in $SWEEP_ROWS; do
    [ "$p" = "$POOL" ] && [[ " $ROWS " == *" $row "* ]] && continue
    jobs+=("route $row $p")
  done
done

log "${#jobs[@]} runs per repetition x $REPEAT, ${WARMUP}s warm-up + ${DURATION}s each (about $(( ${#jobs[@]} * REPEAT * (DURATION + WARMUP + 3) / 60 + 1 )) min); port $DB_PORT, pool $POOL, sweep pools $POOLS, mariadbd pid $DB_PID"

for rep in $(seq 1 "$REPEAT"); do
  order=("${jobs[@]}")
  # alternate the order so no job always runs on a "cooler" machine
  if [ $((rep % 2)) -eq 0 ]; then
    order=(); for ((i = ${#jobs[@]} - 1; i >= 0; i--)); do order+=("${jobs[$i]}"); done
  fi
  for j in "${order[@]}"; do
    read -r kind row p <<<"$j"
    measure_job "$rep" "$kind" "$row" "$p"
  done
done

{
  describe_run
  echo "pool: $POOL"
  echo "load: wrk $(dpkg-query -W -f='${Version}' wrk) -t$THREADS, ${DURATION}s per run after ${WARMUP}s warm-up, median of $REPEAT, fresh Squall process per run"
  echo "squall: build-release (CMAKE_BUILD_TYPE=Release), bench/config-db.lua: workers=2, app scripts/app.lua, db.pool_size=$POOL unless stated, unix socket"
  echo "mariadb: $(/usr/sbin/mariadbd --version 2>/dev/null | sed 's/^.*Ver //'), tools/db.sh (innodb_buffer_pool_size=128M, innodb_flush_log_at_trx_commit=2), pid $DB_PID, RSS $(awk '/^VmRSS:/ {printf "%.0f MiB", $2/1024}' "/proc/$DB_PID/status")"
  echo "ceiling: bench/dbceiling.c, the /db prepared point select in a loop on N connections, no HTTP"
} >"$RUNDIR/env.txt"

/usr/bin/python3 "$BENCH_DIR/report-db.py" "$RAW" "$RUNDIR/env.txt" "$RUNDIR/notes.txt" "$RESULTS/latest-db.md"
