#!/usr/bin/env bash
# Squall vs nginx + lua-nginx-module + lua-resty-mysql on the TechEmpower database routes
# (MariaDB), with nginx-lua's pool swept, Squall's pool_size x threads swept and the same
# comparison over the unix socket. Run from anywhere:  MODE=db bash bench/run.sh  (or
# bash bench/run-db.sh). See bench/README.md. It sources bench/run.sh for the helpers (packages,
# nginx-lua unpacking, build, start/stop, CPU ticks, wrk parsing, idle-machine waiting) and shares
# its knobs (WARMUP REPEAT SKIP_BUILD MAX_OTHER RETRIES QUIET_WAIT KEEP_RUNDIR SERVERS), plus:
#   ROWS="db-64 db-256 queries20-64 queries20-256 fortunes-64 fortunes-256 updates20-64 updates20-256"
#                   main rows: route[N]-connections; N = ?queries=N
#   DURATION=5 WARMUP=1 REPEAT=3 THREADS=1 (wrk -t)
#   POOL=4          Squall's db.pool_size on the main rows;  DBTHREADS=  its db.threads there (unset)
#   PIPELINE=       Squall's db.pipeline on every run (unset: the binary's default, 1)
#   NGINX_POOLS="4 16 32"   nginx-lua's pool (set_keepalive size, per worker); each main row runs
#                   at every size and Squall is compared with the best
#   NGINX_BACKLOG=  when set, also connect with pool_size=POOL, backlog=N (a hard cap + queue)
#   POOLS="2 4 8 16" THREADS_LIST="0 1 2"  Squall's sweep, on SWEEP_ROWS="db-256 queries20-256"
#                   (THREADS_LIST is skipped when the binary does not accept db.threads)
#   SOCKET=1        the main rows again with both servers on MariaDB's unix socket
#   CEILING=0       1: the database ceiling Q (bench/dbceiling.c, unix socket, POOL connections)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROWS=${ROWS:-"db-64 db-256 queries20-64 queries20-256 fortunes-64 fortunes-256 updates20-64 updates20-256"}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
QUIET_SAMPLE=${QUIET_SAMPLE:-0.5}     # idleness sample before each run (run.sh: 1 s)
THREADS=${THREADS:-1}                  # wrk threads
POOL=${POOL:-4}
DBTHREADS=${DBTHREADS:-}
PIPELINE=${PIPELINE:-}
if [ -n "$PIPELINE" ]; then export SQUALL_BENCH_PIPELINE=$PIPELINE; else unset SQUALL_BENCH_PIPELINE; fi
NGINX_POOLS=${NGINX_POOLS:-"4 16 32"}
NGINX_BACKLOG=${NGINX_BACKLOG:-}
POOLS=${POOLS:-"2 4 8 16"}
THREADS_LIST=${THREADS_LIST:-"0 1 2"}
SWEEP_ROWS=${SWEEP_ROWS-"db-256 queries20-256"}   # may be empty: no sweep
SOCKET=${SOCKET:-1}
CEILING=${CEILING:-0}
SQUALL_BENCH_CONFIG=$BENCH_DIR/config-db.lua
MODE=db
# shellcheck source=bench/run.sh
source "$BENCH_DIR/run.sh"          # cd's to the repo root; stops before its main

DB_DIR=${SQUALL_DB_DIR:-$ROOT/var/mariadb}   # where tools/db.sh keeps the private MariaDB
DB_SOCK=$DB_DIR/mysqld.sock
DBCEIL="$CACHE/dbceiling"
PEERS=$(cd "$ROOT/../shared/peers" 2>/dev/null && pwd) || PEERS=""

# ---------------------------------------------------------------------------------------------
# setup: packages, MariaDB, dbceiling, peers
# ---------------------------------------------------------------------------------------------

DB_STARTED=0
ensure_db() {
  if ! bash "$ROOT/tools/db.sh" status; then DB_STARTED=1; log "starting MariaDB (tools/db.sh start)"; fi
  bash "$ROOT/tools/db.sh" start >&2 || die "tools/db.sh start failed"
  DB_PID=$(cat "$DB_DIR/mysqld.pid" 2>/dev/null) || die "no $DB_DIR/mysqld.pid"
  kill -0 "$DB_PID" 2>/dev/null || die "mariadbd pid $DB_PID from $DB_DIR/mysqld.pid is not running"
  eval "$(bash "$ROOT/tools/db.sh" env)"      # SQUALL_DB_HOST, SQUALL_DB_PORT, SQUALL_DB_SOCKET
  DB_HOST=$SQUALL_DB_HOST DB_TCP_PORT=$SQUALL_DB_PORT
  [ -n "$DB_TCP_PORT" ] || die "tools/db.sh env gave no TCP port"
  local n
  n=$(mariadb --no-defaults -usquall -psquall -h"$DB_HOST" -P"$DB_TCP_PORT" --protocol=tcp squall -N -B \
        -e "SELECT (SELECT COUNT(*) FROM World), (SELECT COUNT(*) FROM Fortune)") || die "cannot query MariaDB over TCP"
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

check_peers() {
  [ -n "$PEERS" ] && [ -f "$PEERS/lua-resty-mysql/lib/resty/mysql.lua" ] && [ -f "$PEERS/lua-resty-string/lib/resty/sha256.lua" ] \
    || die "lua-resty-mysql / lua-resty-string not found in $ROOT/../shared/peers (see its README)"
}

# Does this Squall binary accept db.threads? (config.c rejects unknown keys)
THREADS_OK=1
check_threads_key() {
  if SQUALL_BENCH_THREADS=1 SQUALL_BENCH_DB_PORT=$DB_TCP_PORT "$SQUALL_BIN" --check -c "$SQUALL_BENCH_CONFIG" \
      >"$RUNDIR/check-threads.log" 2>&1; then
    # Builds before db.threads = 0 (workers driving their own connections) accept 1 but not 0.
    if ! SQUALL_BENCH_THREADS=0 SQUALL_BENCH_DB_PORT=$DB_TCP_PORT "$SQUALL_BIN" --check -c "$SQUALL_BENCH_CONFIG" \
        >"$RUNDIR/check-threads0.log" 2>&1; then
      [ "$DBTHREADS" != 0 ] || die "DBTHREADS=0 but this squall rejects it: $(head -1 "$RUNDIR/check-threads0.log")"
      THREADS_LIST=$(echo " $THREADS_LIST " | sed 's/ 0 / /g')
      log "this squall rejects db.threads = 0: left out of THREADS_LIST"
    fi
    return
  fi
  THREADS_OK=0
  [ -z "$DBTHREADS" ] || die "DBTHREADS=$DBTHREADS but this squall rejects db.threads: $(head -1 "$RUNDIR/check-threads.log")"
  echo "squall: this build does not accept db.threads ($(head -1 "$RUNDIR/check-threads.log" | cut -c1-160)); the THREADS_LIST sweep is skipped" >>"$RUNDIR/notes.txt"
  log "this squall rejects db.threads: the THREADS_LIST sweep is skipped"
}

db_cleanup() {
  cleanup || true   # with KEEP_RUNDIR=1 it returns 1, which would end the trap before the stop below
  if [ "$DB_STARTED" = 1 ]; then log "stopping the MariaDB this run started"; bash "$ROOT/tools/db.sh" stop || true; fi
}

# ---------------------------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------------------------
# The job being run: transport (tcp|unix) and nginx's pool, read by nginx_conf and squall_env.
CUR_TRANSPORT=tcp CUR_POOL=4 CUR_THREADS=-

# run.sh's start_server calls this for nginx: bench/nginx-db.conf.in at the current job.
nginx_conf() {
  local opts
  if [ "$CUR_TRANSPORT" = unix ]; then opts="path = \"$DB_SOCK\","
  else opts="host = \"$DB_HOST\", port = $DB_TCP_PORT,"; fi
  [ -z "$NGINX_BACKLOG" ] || opts+=" pool_size = $CUR_POOL, backlog = $NGINX_BACKLOG,"
  sed -e "s#@LUAROOT@#$LUAROOT#g" -e "s#@RUNDIR@#$RUNDIR/nginx#g" -e "s#@PORT@#$1#g" \
      -e "s#@PEERS@#$PEERS#g" -e "s#@POOL@#$CUR_POOL#g" -e "s#@DB_OPTS@#$opts#g" \
      "$BENCH_DIR/nginx-db.conf.in" >"$RUNDIR/nginx/nginx.conf"
}

# Squall's environment for bench/config-db.lua at the current job.
squall_env() {
  export SQUALL_BENCH_POOL=$CUR_POOL SQUALL_BENCH_DB_HOST=$DB_HOST SQUALL_BENCH_DB_PORT=$DB_TCP_PORT \
    SQUALL_BENCH_DB_SOCKET=$DB_SOCK
  if [ "$CUR_THREADS" = - ]; then unset SQUALL_BENCH_THREADS; else export SQUALL_BENCH_THREADS=$CUR_THREADS; fi
  if [ "$CUR_TRANSPORT" = unix ]; then export SQUALL_BENCH_SOCKET=1; else unset SQUALL_BENCH_SOCKET; fi
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
# Context switches (voluntary + involuntary) summed over the threads of a process tree.
ctx_switches() {
  local pid s=0 n
  for pid in $(proc_tree "$1"); do
    n=$(cat /proc/"$pid"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }')
    s=$((s + n))
  done
  echo "$s"
}

# The first start of each server configuration checks its answers (bench/dbcheck.py): every line
# for the first configuration of a server and transport, one line for the others.
CHECKED=" "
db_checks() {  # server port
  local name=$1 port=$2 cfg="$1/$CUR_TRANSPORT/$CUR_POOL/$CUR_THREADS" label first=0
  [[ $CHECKED != *" $cfg "* ]] || return 0
  [[ $CHECKED == *" $name/$CUR_TRANSPORT/"* ]] || first=1
  CHECKED+="$cfg "
  if [[ $SANITY_DONE != *" $name "* ]]; then sanity_check "$name" "$port"; SANITY_DONE+=" $name "; fi
  label="$name $CUR_TRANSPORT pool $CUR_POOL$([ "$CUR_THREADS" = - ] || echo " threads $CUR_THREADS")"
  python3 "$BENCH_DIR/dbcheck.py" "$port" "$DB_SOCK" "$label" "$RUNDIR/fortunes-$name-$CUR_TRANSPORT.html" \
    >"$RUNDIR/dbcheck.txt" 2>&1 || echo "$label: dbcheck.py failed: $(tail -1 "$RUNDIR/dbcheck.txt")" >>"$RUNDIR/dbcheck.txt"
  if [ "$first" = 1 ] || grep -qv ': OK (' "$RUNDIR/dbcheck.txt"; then
    cat "$RUNDIR/dbcheck.txt" >>"$RUNDIR/notes.txt"
  else
    echo "$label: the same $(wc -l <"$RUNDIR/dbcheck.txt") DB route checks: OK" >>"$RUNDIR/notes.txt"
  fi
}

# One measured wrk run on a fresh server; sets M_LINE, M_LOGERR, M_LOGFIRST.
measure_route_once() {  # out server transport row pool threads
  local out=$1 name=$2 row=$4 conns=${4##*-} port url qpr
  CUR_TRANSPORT=$3 CUR_POOL=$5 CUR_THREADS=$6
  port=${PORT[$name]}
  url="http://127.0.0.1:$port$(row_path "$row")"; qpr=$(row_queries "$row")
  [ "$name" = squall ] && squall_env
  start_server "$name" "$port"
  db_checks "$name" "$port"
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
  local logf="$RUNDIR/squall.log"; [ "$name" = nginx ] && logf="$RUNDIR/nginx/error.log"
  M_LOGERR=$(grep -c -E '\[(error|crit|alert|emerg)\]' "$logf" || true)
  M_LOGFIRST=$(grep -m1 -E '\[(error|crit|alert|emerg)\]' "$logf" | cut -c1-240 || true)
  local req rps p99 err non2xx
  read -r req rps p99 err non2xx < <(parse_wrk "$out")
  M_LINE=$(awk -v srv="$name" -v tr="$CUR_TRANSPORT" -v row="$row" -v pool="$CUR_POOL" -v th="$CUR_THREADS" \
      -v n="$req" -v rps="$rps" -v p99="$p99" -v st=$((t1 - t0)) \
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
    printf "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%.2f\t%.2f\t%s\t%.2f\t%.2f\t%s\t%s\n",
      srv, tr, row, pool, th, n, rps, p99, st, sus, dt, dus, q, dq, rss, e, st / hz / t, dt / hz / t, wus, other, steal / hz / t, scs, dcs
  }')
}

# The database ceiling: dbceiling with $2 connections on the unix socket for DURATION s, no HTTP.
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
    printf "dbceiling\tunix\tceiling\t%s\t-\t%d\t%s\tnan\t0\tnan\t%d\t%s\t1\t%s\t0\t%d\t0.00\t%.2f\t%s\t%.2f\t%.2f\tnan\t%s\n",
      pool, n, qps, dt, dus, dus, e, dt / hz / t, wus, other, steal / hz / t, dcs
  }')
}

# Repeat a run while other processes disturbed it (as run.sh's measure), append the kept one to RAW.
measure_job() {  # rep server transport row pool threads
  local rep=$1 name=$2 tr=$3 row=$4 pool=$5 th=$6 attempt=0 out total best_line="" best_other=999
  local best_logerr=0 best_logfirst=""
  out="$RUNDIR/$name-$tr-$row-pool$pool-threads$th-$rep.txt"
  while :; do
    wait_quiet
    if [ "$name" = dbceiling ]; then measure_ceiling_once "$out.try" "$pool"
    else measure_route_once "$out.try" "$name" "$tr" "$row" "$pool" "$th"; fi
    total=$(awk -F'\t' '{ printf "%.2f", $20 + $21 }' <<<"$M_LINE")
    log "$(awk -F'\t' -v rep="$rep" '{ printf "%-9s %-4s %-14s pool %-2s thr %-2s rep %d: %8.0f %s p99 %7s ms  server %7s us/req  mariadb %7s us/req  errors %d  other load %.2f",
      $1, $2, $3, $4, $5, rep, $7, ($1 == "dbceiling" ? "q/s  " : "req/s"), $8, $10, $12, $16, $20 + $21 }' <<<"$M_LINE")"
    keep_least_disturbed "$M_LINE" "$total" "$out" || break
  done
  # insert rep after threads (column 5)
  awk -F'\t' -v OFS='\t' -v rep="$rep" -v a="$attempt" '{ $5 = $5 OFS rep; print $0, a }' <<<"$best_line" >>"$RAW"
  if [ "$best_logerr" -gt 0 ]; then
    echo "$name $tr $row pool $pool threads $th rep $rep: $best_logerr error lines; first: $best_logfirst" >>"$RUNDIR/notes.txt"
    log "  $best_logerr error lines; first: $best_logfirst"
  fi
  local errs; errs=$(cut -f16 <<<"$best_line")
  [ "$errs" -eq 0 ] || log "  errors: $(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
}

# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
RUNDIR=$(mktemp -d /tmp/squall-bench.XXXXXX)
mkdir -p "$RUNDIR/nginx" "$RESULTS"
trap db_cleanup EXIT
trap 'exit 130' INT TERM
: >"$RUNDIR/notes.txt"

has() { [[ " $SERVERS " == *" $1 "* ]]; }
ensure_packages wrk:/usr/bin/wrk curl:/usr/bin/curl python3:/usr/bin/python3 cmake:/usr/bin/cmake \
  iproute2:/usr/bin/ss gcc:/usr/bin/gcc pkg-config:/usr/bin/pkg-config \
  libmariadb-dev:/usr/include/mariadb/mysql.h mariadb-server:/usr/sbin/mariadbd \
  mariadb-client:/usr/bin/mariadb nginx:/usr/sbin/nginx \
  lua-cjson:/usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so libpcre3:/usr/lib/x86_64-linux-gnu/libpcre.so.3
if has nginx; then check_peers; ensure_nginx_lua; fi
has squall && build_squall
[ "$CEILING" = 1 ] && build_dbceiling
ensure_db
has squall && check_threads_key
[ "$THREADS_OK" = 1 ] || THREADS_LIST="-"
[ -n "$DBTHREADS" ] || DBTHREADS="-"

declare -A PORT
TAKEN_PORT=""
for s in $SERVERS; do
  case $s in squall) base=28081 ;; nginx) base=28082 ;; *) die "unknown server $s" ;; esac
  PORT[$s]=$(free_port "$base"); TAKEN_PORT=${PORT[$s]}
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$RESULTS/raw-db-$STAMP.tsv"
printf 'server\ttransport\trow\tpool\tthreads\trep\trequests\trps\tp99_ms\tserver_ticks\tserver_us_per_req\tdb_ticks\tdb_us_per_req\tqueries_per_req\tdb_us_per_query\tpeak_rss_kb\terrors\tserver_cores\tdb_cores\tclient_us_per_req\tother_cores\tsteal_cores\tserver_ctxsw_per_req\tdb_ctxsw_per_req\tretries\n' >"$RAW"
SANITY_DONE=" "

# Jobs of one repetition ("server transport row pool threads"): per main row, Squall then nginx at
# each pool size (over TCP, then over the unix socket), then Squall's sweep. Every other
# repetition runs the list backwards, so Squall and nginx alternate which goes first.
jobs=()
[ "$CEILING" = 1 ] && jobs+=("dbceiling unix ceiling $POOL -")
transports=tcp; [ "$SOCKET" = 1 ] && transports="tcp unix"
for tr in $transports; do
  for row in $ROWS; do
    has squall && jobs+=("squall $tr $row $POOL $DBTHREADS")
    if has nginx; then for p in $NGINX_POOLS; do jobs+=("nginx $tr $row $p -"); done; fi
  done
done
if has squall; then
  for row in $SWEEP_ROWS; do
    for p in $POOLS; do
      for t in $THREADS_LIST; do
        [ "$p" = "$POOL" ] && [ "$t" = "$DBTHREADS" ] && [[ " $ROWS " == *" $row "* ]] && continue
        jobs+=("squall tcp $row $p $t")
      done
    done
  done
fi

T_START=$SECONDS
log "${#jobs[@]} runs per repetition x $REPEAT, ${WARMUP}s warm-up + ${DURATION}s each (about $(( ${#jobs[@]} * REPEAT * (DURATION + WARMUP + 2) / 60 + 1 )) min on an idle machine); ports: $(for s in $SERVERS; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)MariaDB 127.0.0.1:$DB_TCP_PORT and $DB_SOCK, mariadbd pid $DB_PID"

for rep in $(seq 1 "$REPEAT"); do
  order=("${jobs[@]}")
  if [ $((rep % 2)) -eq 0 ]; then
    order=(); for ((i = ${#jobs[@]} - 1; i >= 0; i--)); do order+=("${jobs[$i]}"); done
  fi
  for j in "${order[@]}"; do
    read -r s tr row p t <<<"$j"
    measure_job "$rep" "$s" "$tr" "$row" "$p" "$t"
  done
done

log "measured in $(( (SECONDS - T_START + 30) / 60 )) min"

# Squall and nginx must send the same /fortunes page (byte for byte).
for tr in $transports; do
  a="$RUNDIR/fortunes-squall-$tr.html" b="$RUNDIR/fortunes-nginx-$tr.html"
  [ -f "$a" ] && [ -f "$b" ] || continue
  if cmp -s "$a" "$b"; then echo "/fortunes ($tr): squall and nginx sent the same $(wc -c <"$a") bytes" >>"$RUNDIR/notes.txt"
  else echo "/fortunes ($tr): squall and nginx pages DIFFER ($(wc -c <"$a") vs $(wc -c <"$b") bytes)" >>"$RUNDIR/notes.txt"; fi
done

{
  describe_run
  echo "pool: $POOL"
  echo "rows: $ROWS"
  echo "dbthreads: $DBTHREADS"
  echo "pipeline: ${PIPELINE:-1}"
  echo "load: wrk $(dpkg-query -W -f='${Version}' wrk) -t$THREADS, ${DURATION}s per run after ${WARMUP}s warm-up, median of $REPEAT, fresh server process per run, Squall and nginx interleaved"
  has squall && echo "squall: build-release (CMAKE_BUILD_TYPE=Release), bench/config-db.lua: workers=2, app scripts/app.lua, db.pool_size=$POOL$([ "$DBTHREADS" = - ] || echo ", db.threads=$DBTHREADS"), db.pipeline=${PIPELINE:-1} on the main rows ($([ "$DBTHREADS" = 0 ] && echo "each worker driving half of the connections on its own loop" || echo "connections shared by both workers"))"
  has nginx && echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //') + lua-nginx-module $(dpkg-deb -f "$(ls "$DEBS"/libnginx-mod-http-lua_*.deb | tail -1)" Version) + lua-resty-mysql $(awk -F'|' '$2 ~ /^ *lua-resty-mysql *$/ {gsub(/ /, "", $4); print substr($4, 1, 12)}' "$PEERS/README.md"), bench/nginx-db.conf.in: 2 workers, pool = set_keepalive size per worker (${NGINX_POOLS// /, })$([ -z "$NGINX_BACKLOG" ] || echo ", connect pool_size = pool, backlog = $NGINX_BACKLOG")"
  echo "mariadb: $(/usr/sbin/mariadbd --version 2>/dev/null | sed 's/^.*Ver //'), tools/db.sh (innodb_buffer_pool_size=128M, innodb_flush_log_at_trx_commit=2), TCP 127.0.0.1:$DB_TCP_PORT, pid $DB_PID, RSS $(awk '/^VmRSS:/ {printf "%.0f MiB", $2/1024}' "/proc/$DB_PID/status")"
  [ "$CEILING" = 1 ] && echo "ceiling: bench/dbceiling.c, the /db prepared point select in a loop on $POOL connections over the unix socket, no HTTP"
  true
} >"$RUNDIR/env.txt"

/usr/bin/python3 "$BENCH_DIR/report-db.py" "$RAW" "$RUNDIR/env.txt" "$RUNDIR/notes.txt" "$RESULTS/latest-db.md"
