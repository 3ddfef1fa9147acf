#!/usr/bin/env bash
# Squall vs nginx+lua benchmark. Run from anywhere:  bash bench/run.sh
# See bench/README.md. Environment knobs:
#   DURATION=10   seconds per measured run        WARMUP=2   seconds of load before each measured run
#   REPEAT=3      runs per row and server (median reported; servers interleaved)
#   THREADS=2     wrk threads                     SERVERS="squall nginx"   which servers to run
#   ROWS="plaintext-64 plaintext-256 json-64 json-256 pipeline-256"   which rows to run
#   SKIP_BUILD=1  use the existing build-release/squall
#   MAX_OTHER=0.25 RETRIES=2   repeat a run (up to RETRIES times) when other processes on the
#                 machine used more than MAX_OTHER cores (+ steal) during it
#   QUIET_WAIT=60 before each run, wait up to this long for other load to drop below MAX_OTHER
#   MODE=db       the TechEmpower database routes instead (bench/run-db.sh: Squall vs
#                 nginx + lua-resty-mysql)
#   MODE=static   static files instead (bench/run-static.sh: Squall vs nginx with sendfile)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
cd "$ROOT"

# MODE=db: the TechEmpower database routes (bench/run-db.sh, which sources this
# file for its helpers; sourced, this file stops before "main" below).
if [[ "${BASH_SOURCE[0]}" == "$0" && "${MODE:-http}" == db ]]; then exec bash "$BENCH_DIR/run-db.sh" "$@"; fi
if [[ "${BASH_SOURCE[0]}" == "$0" && "${MODE:-http}" == static ]]; then exec bash "$BENCH_DIR/run-static.sh" "$@"; fi
[[ "${MODE:-http}" =~ ^(http|db|static)$ ]] || { echo "[bench] ERROR: unknown MODE=$MODE (http, db or static)" >&2; exit 2; }

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPEAT=${REPEAT:-3}
THREADS=${THREADS:-2}
SERVERS=${SERVERS:-"squall nginx"}
ROWS=${ROWS:-"plaintext-64 plaintext-256 json-64 json-256 pipeline-256"}
PIPELINE_DEPTH=16
MAX_OTHER=${MAX_OTHER:-0.25}        # foreign load (cores) above which a run is repeated
RETRIES=${RETRIES:-2}               # ... at most this many times
QUIET_WAIT=${QUIET_WAIT:-60}        # seconds to wait for an idle machine before each run
QUIET_SAMPLE=${QUIET_SAMPLE:-1}     # seconds of each idleness sample before a run

SQUALL_BENCH_CONFIG=${SQUALL_BENCH_CONFIG:-$BENCH_DIR/config.lua}
CACHE="$BENCH_DIR/.cache"
DEBS="$CACHE/debs"
LUAROOT="$CACHE/root"               # private prefix: ngx_http_lua + ndk + resty-core + luajit2
RESULTS="$BENCH_DIR/results"
SQUALL_BIN="$ROOT/build-release/squall"
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. packages
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_update_once() { [ "$APT_UPDATED" = 1 ] || { log "apt-get update"; apt-get update -qq >&2; APT_UPDATED=1; }; }

# Installs those of the given package:probe-path pairs whose probe is missing. RUNLEVEL=1 keeps
# invoke-rc.d from starting the services they bring (nginx on port 80, the system MariaDB).
ensure_packages() {
  local missing=() p
  for p in "$@"; do [ -e "${p#*:}" ] || missing+=("${p%%:*}"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt_update_once
    log "installing: ${missing[*]}"
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

# The lua module needs OpenResty's LuaJIT (libluajit2-5.1-2), which Conflicts with Debian's
# libluajit-5.1-2 that Squall links. So we never install it: the .debs are downloaded into
# bench/.cache/debs and unpacked into bench/.cache/root, and only nginx sees them
# (load_module + LD_LIBRARY_PATH + lua_package_path).
LUA_DEBS=(libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache
          libluajit2-5.1-2 libluajit2-5.1-common)

ensure_nginx_lua() {
  mkdir -p "$DEBS"
  local p need=()
  for p in "${LUA_DEBS[@]}"; do
    compgen -G "$DEBS/${p}_*.deb" >/dev/null || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "downloading: ${need[*]}"
    # apt-get download writes to the cwd; -o ... silences the "_apt sandbox" warning as root.
    if ! (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${need[@]}" >&2); then
      apt_update_once
      (cd "$DEBS" && apt-get download -qq -o APT::Sandbox::User=root "${need[@]}" >&2) \
        || die "apt-get download ${need[*]} failed"
    fi
  fi

  # ABI check: the module package Depends on nginx-abi-X; the installed nginx must Provide it.
  local moddeb abi
  moddeb=$(ls "$DEBS"/libnginx-mod-http-lua_*.deb | sort -V | tail -1)
  abi=$(dpkg-deb -f "$moddeb" Depends | grep -o 'nginx-abi-[^ ,]*' | head -1)
  dpkg-query -W -f='${Provides}\n' nginx 2>/dev/null | grep -qw -- "$abi" \
    || die "installed nginx does not provide $abi required by $(basename "$moddeb"); update nginx (apt-get install nginx) or clear $DEBS"

  # (Re)extract when the set of .debs changed.
  local stamp; stamp=$(cd "$DEBS" && ls -1 *.deb | sort | md5sum | cut -d' ' -f1)
  if [ "$(cat "$LUAROOT/.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "unpacking nginx-lua into $LUAROOT"
    rm -rf "$LUAROOT"; mkdir -p "$LUAROOT"
    local d; for d in "$DEBS"/*.deb; do dpkg-deb -x "$d" "$LUAROOT"; done
    echo "$stamp" > "$LUAROOT/.stamp"
  fi
  local nf
  nf=$(LD_LIBRARY_PATH="$LUAROOT/usr/lib/x86_64-linux-gnu" ldd "$LUAROOT/usr/lib/nginx/modules/ngx_http_lua_module.so" | grep 'not found' || true)
  [ -z "$nf" ] || die "ngx_http_lua_module.so has unresolved libraries: $nf"
}

build_squall() {
  if [ "${SKIP_BUILD:-0}" = 1 ] && [ -x "$SQUALL_BIN" ]; then return; fi
  bash "$ROOT/tools/setup.sh" >&2   # the build's own packages (LuaJIT, libuv, Connector/C, llhttp)
  log "building Squall (Release)"
  cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >"$RUNDIR/cmake-configure.log" 2>&1 \
    || { tail -30 "$RUNDIR/cmake-configure.log" >&2; die "cmake configure failed"; }
  cmake --build build-release -j2 --target squall >"$RUNDIR/cmake-build.log" 2>&1 \
    || { tail -30 "$RUNDIR/cmake-build.log" >&2; die "cmake build failed"; }
  [ -x "$SQUALL_BIN" ] || die "$SQUALL_BIN not produced by the build"
}

# ---------------------------------------------------------------------------------------------
# 2. processes: start/stop, CPU ticks, peak RSS
# ---------------------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p=$1
  while port_in_use "$p" || [ "$p" = "${TAKEN_PORT:-}" ]; do p=$((p + 1)); done
  echo "$p"
}

# pid and all its descendants (nginx: master + workers; Squall: one process, or its children).
proc_tree() {
  local root=$1 f s ppid pid
  declare -A kids=()
  for f in /proc/[0-9]*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    pid=${s%% *}; s=${s##*) }; set -- $s; ppid=$2
    kids[$ppid]+="$pid "
  done
  local queue=("$root") out=()
  while [ ${#queue[@]} -gt 0 ]; do
    pid=${queue[0]}; queue=("${queue[@]:1}")
    out+=("$pid")
    for f in ${kids[$pid]:-}; do queue+=("$f"); done
  done
  echo "${out[@]}"
}

# utime+stime (clock ticks, all threads) summed over the process tree.
cpu_ticks() {
  local total=0 pid s
  for pid in $(proc_tree "$1"); do
    read -r s 2>/dev/null <"/proc/$pid/stat" || continue
    s=${s##*) }; set -- $s
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# Peak RSS (VmHWM, kB): the process's own if it has no children, else summed over the
# children (the workers; nginx's master is left out).
peak_rss_kb() {
  local pids; read -ra pids <<<"$(proc_tree "$1")"
  [ ${#pids[@]} -gt 1 ] && pids=("${pids[@]:1}")
  local total=0 pid v
  for pid in "${pids[@]}"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

SERVER_PID=""
wait_ready() {
  local name=$1 port=$2 i
  for i in $(seq 1 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    curl -sf -o /dev/null "http://127.0.0.1:$port/plaintext" && return 0
    sleep 0.1
  done
  return 1
}

# Writes $RUNDIR/nginx/nginx.conf for a server on port $1 (bench/run-db.sh redefines it).
nginx_conf() {
  sed -e "s#@LUAROOT@#$LUAROOT#g" -e "s#@RUNDIR@#$RUNDIR/nginx#g" -e "s#@PORT@#$1#g" \
    "$BENCH_DIR/nginx.conf.in" >"$RUNDIR/nginx/nginx.conf"
}

start_server() {  # name port -> sets SERVER_PID
  local name=$1 port=$2
  case $name in
    squall)
      SQUALL_BENCH_PORT=$port "$SQUALL_BIN" -c "$SQUALL_BENCH_CONFIG" \
        >"$RUNDIR/squall.log" 2>&1 &
      SERVER_PID=$!
      ;;
    nginx)
      nginx_conf "$port"
      : >"$RUNDIR/nginx/error.log"
      LD_LIBRARY_PATH="$LUAROOT/usr/lib/x86_64-linux-gnu" \
        nginx -p "$RUNDIR/nginx" -c "$RUNDIR/nginx/nginx.conf" -e "$RUNDIR/nginx/error.log" \
        >>"$RUNDIR/nginx/stdout.log" 2>&1 &
      SERVER_PID=$!
      ;;
  esac
  if ! wait_ready "$name" "$port"; then
    tail -20 "$RUNDIR/squall.log" "$RUNDIR/nginx/error.log" 2>/dev/null >&2 || true
    stop_server
    die "$name did not come up on 127.0.0.1:$port"
  fi
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "WARNING: pid $SERVER_PID ignored SIGTERM for 10 s; killing its process tree"
    local p; for p in $(proc_tree "$SERVER_PID"); do kill -KILL "$p" 2>/dev/null || true; done
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

cleanup() {
  stop_server || true
  [ -n "${RUNDIR:-}" ] && [ "${KEEP_RUNDIR:-0}" != 1 ] && rm -rf "$RUNDIR"
}

# ---------------------------------------------------------------------------------------------
# 3. sanity: both routes answer correctly and the connection is kept alive
# ---------------------------------------------------------------------------------------------
sanity_check() {  # name port; appends a line per check to $RUNDIR/notes.txt
  local name=$1 port=$2 path body ctype want_body want_ctype out
  for path in /plaintext /json; do
    if [ $path = /plaintext ]; then want_body='Hello, World!'; want_ctype='text/plain'
    else want_body='{"message":"Hello, World!"}'; want_ctype='application/json'; fi
    out=$(curl -s -D "$RUNDIR/hdr" "http://127.0.0.1:$port$path") || true
    ctype=$(awk -F': *' 'tolower($1)=="content-type" {sub(/\r$/,"",$2); print $2}' "$RUNDIR/hdr")
    local framing
    framing=$(awk -F': *' 'tolower($1)=="content-length" {print "Content-Length"} tolower($1)=="transfer-encoding" {sub(/\r$/,"",$2); print "Transfer-Encoding: " $2}' "$RUNDIR/hdr" | head -1)
    local status; status=$(head -1 "$RUNDIR/hdr" | tr -d '\r')
    if [ "$out" = "$want_body" ] && [[ $ctype == $want_ctype* ]]; then
      echo "$name $path: OK ($status; Content-Type: $ctype; ${framing:-no length}; $(wc -c <"$RUNDIR/hdr") header bytes)" >>"$RUNDIR/notes.txt"
    else
      echo "$name $path: WRONG ANSWER ($status; Content-Type: $ctype; body: ${out:0:80})" >>"$RUNDIR/notes.txt"
    fi
  done
  # two requests in one curl: the second must reuse the connection
  if curl -sv -o /dev/null -o /dev/null "http://127.0.0.1:$port/plaintext" "http://127.0.0.1:$port/plaintext" 2>&1 \
      | grep -qi 're-using existing connection'; then
    echo "$name keep-alive: OK (connection reused)" >>"$RUNDIR/notes.txt"
  else
    echo "$name keep-alive: NOT KEPT ALIVE (curl opened a new connection)" >>"$RUNDIR/notes.txt"
  fi
  # pipelining: 3 requests in one write must give 3 responses
  local n
  n=$( (exec 3<>"/dev/tcp/127.0.0.1/$port"
        printf 'GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n%.0s' 1 2 3 >&3
        timeout 1 cat <&3) 2>/dev/null | grep -o 'HTTP/1.1 200' | wc -l) || true
  echo "$name pipelining: $n/3 responses to 3 pipelined requests" >>"$RUNDIR/notes.txt"
}

# ---------------------------------------------------------------------------------------------
# 4. one measured run
# ---------------------------------------------------------------------------------------------
wrk_args() {  # row port -> wrk arguments (without -d)
  local row=$1 port=$2 test=${1%-*} conns=${1##*-}
  case $test in
    plaintext) echo "-t$THREADS -c$conns --latency http://127.0.0.1:$port/plaintext" ;;
    json)      echo "-t$THREADS -c$conns --latency http://127.0.0.1:$port/json" ;;
    pipeline)  echo "-t$THREADS -c$conns --latency -s $BENCH_DIR/pipeline.lua http://127.0.0.1:$port/plaintext -- $PIPELINE_DEPTH" ;;
    *) die "unknown row $row" ;;
  esac
}

# Parse wrk output into: requests rps p99_ms errors(socket) non2xx
parse_wrk() {
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /m$/) return v*60000; if (v ~ /s$/) return v*1000; return v+0 }
    /requests in/           { req = $1 }
    /^Requests\/sec:/       { rps = $2 }
    /^ +99%/                { p99 = ms($2) }
    /Socket errors:/        { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    /Non-2xx or 3xx/        { non2xx = $NF }
    END { printf "%s %s %s %d %d\n", req+0, rps+0, (p99 == "" ? "nan" : p99), err, non2xx }
  ' "$1"
}

# Machine-wide busy and steal ticks from the "cpu" line of /proc/stat.
machine_ticks() {
  local cpu user nice system idle iowait irq softirq steal rest
  read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
  echo "$((user + nice + system + irq + softirq)) $steal"
}

# One measured run on a fresh server; sets M_* and writes the wrk output to $1.
measure_once() {  # out row server port
  local out=$1 row=$2 name=$3 port=$4 args
  args=$(wrk_args "$row" "$port")
  start_server "$name" "$port"
  if [[ $SANITY_DONE != *" $name "* ]]; then sanity_check "$name" "$port"; SANITY_DONE+=" $name "; fi
  # shellcheck disable=SC2086
  wrk ${args/--latency/} -d"${WARMUP}s" >/dev/null 2>&1 || true
  local t0 t1 b0 b1 s0 s1 wrk_times
  t0=$(cpu_ticks "$SERVER_PID")
  read -r b0 s0 < <(machine_ticks)
  # wrk runs in a subshell whose `times` then reports wrk's own CPU (children user, sys)
  # shellcheck disable=SC2086
  wrk_times=$( (wrk -d"${DURATION}s" $args >"$out" 2>&1 || true; times) | tail -1)
  read -r b1 s1 < <(machine_ticks)
  t1=$(cpu_ticks "$SERVER_PID")
  M_RSS=$(peak_rss_kb "$SERVER_PID")
  stop_server
  M_TICKS=$((t1 - t0))
  # server-side errors (the logs are per run: truncated at each start)
  local logf="$RUNDIR/squall.log"; [ "$name" = nginx ] && logf="$RUNDIR/nginx/error.log"
  M_LOGERR=$(grep -c -E '\[(error|crit|alert|emerg)\]' "$logf" || true)
  M_LOGFIRST=$(grep -m1 -E '\[(error|crit|alert|emerg)\]' "$logf" | cut -c1-240 || true)
  read -r M_REQ M_RPS M_P99 M_ERR M_NON2XX < <(parse_wrk "$out")
  # derived numbers: server CPU us/req, server cores, wrk CPU us/req, foreign load and steal (cores)
  read -r M_CPU_US M_CORES M_WRK_US M_OTHER M_STEAL < <(awk -v d="$M_TICKS" -v hz="$CLK_TCK" \
      -v t="$DURATION" -v n="$M_REQ" -v busy=$((b1 - b0)) -v steal=$((s1 - s0)) -v wt="$wrk_times" 'BEGIN {
    split(wt, f, " "); w = 0
    for (i = 1; i <= 2; i++) { split(f[i], a, /[ms]/); w += a[1] * 60 + a[2] }
    other = (busy / hz - d / hz - w) / t; if (other < 0) other = 0
    if (n > 0) printf "%.3f %.2f %.3f %.2f %.2f\n", d / hz * 1e6 / n, d / hz / t, w * 1e6 / n, other, steal / hz / t
    else       printf "nan %.2f nan %.2f %.2f\n", d / hz / t, other, steal / hz / t
  }')
}

# Before a run, wait (up to QUIET_WAIT s) until the machine is idle: other processes below MAX_OTHER.
wait_quiet() {
  local waited=0 b0 s0 b1 s1 busy
  while :; do
    read -r b0 s0 < <(machine_ticks); sleep "$QUIET_SAMPLE"; read -r b1 s1 < <(machine_ticks)
    busy=$(awk -v d=$((b1 - b0 + s1 - s0)) -v hz="$CLK_TCK" -v t="$QUIET_SAMPLE" 'BEGIN { printf "%.2f", d / hz / t }')
    awk -v b="$busy" -v m="$MAX_OTHER" 'BEGIN { exit !(b <= m) }' && break
    [ "$waited" -eq 0 ] && log "  machine busy ($busy cores used by other processes); waiting up to ${QUIET_WAIT}s"
    waited=$((waited + 1))
    awk -v w="$waited" -v s="$QUIET_SAMPLE" -v q="$QUIET_WAIT" 'BEGIN { exit !(w * s < q) }' \
      || { log "  still busy after ${QUIET_WAIT}s; measuring anyway"; break; }
  done
}

# After an attempt at a run: keeps it when other processes disturbed it least so far (the best_*
# variables of the caller, attempt counting from 0) and succeeds when it is to be repeated.
keep_least_disturbed() {  # line total out (out.try holds the attempt's output)
  if awk -v a="$2" -v b="$best_other" 'BEGIN { exit !(a < b) }'; then
    best_line=$1; best_other=$2; mv "$3.try" "$3"
    best_logerr=$M_LOGERR; best_logfirst=$M_LOGFIRST
  fi
  awk -v a="$best_other" -v m="$MAX_OTHER" 'BEGIN { exit !(a > m) }' && [ "$attempt" -lt "$RETRIES" ] || return 1
  attempt=$((attempt + 1))
  log "  other processes used more than $MAX_OTHER cores during the run: repeating it ($attempt/$RETRIES)"
}

measure() {  # rep row server port
  local rep=$1 row=$2 name=$3 port=$4 attempt=0 out line best_line="" best_other=999 total
  local best_logerr=0 best_logfirst=
  out="$RUNDIR/wrk-$name-$row-$rep.txt"
  while :; do
    wait_quiet
    measure_once "$out.try" "$row" "$name" "$port"
    total=$(awk -v o="$M_OTHER" -v s="$M_STEAL" 'BEGIN { printf "%.2f", o + s }')
    log "$(printf '%-6s %-13s rep %d: %10.0f req/s  p99 %8s ms  %7s us/req  %s cores  rss %6d kB  errors %d  other load %s' \
      "$name" "$row" "$rep" "$M_RPS" "$M_P99" "$M_CPU_US" "$M_CORES" "$M_RSS" "$((M_ERR + M_NON2XX))" "$total")"
    line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' \
      "$name" "$row" "$rep" "$M_REQ" "$M_RPS" "$M_P99" "$M_TICKS" "$M_CPU_US" "$M_RSS" \
      "$((M_ERR + M_NON2XX))" "$M_CORES" "$M_WRK_US" "$M_OTHER" "$M_STEAL")
    keep_least_disturbed "$line" "$total" "$out" || break
  done
  printf '%s\t%s\n' "$best_line" "$attempt" >>"$RAW"
  if [ "$best_logerr" -gt 0 ]; then
    echo "$name $row rep $rep: the server logged $best_logerr error lines; first: $best_logfirst" >>"$RUNDIR/notes.txt"
    log "  server logged $best_logerr error lines; first: $best_logfirst"
  fi
  local errs; errs=$(cut -f10 <<<"$best_line")
  [ "$errs" -eq 0 ] || log "  wrk reported errors: $(grep -E 'Socket errors|Non-2xx' "$out" | tr -s ' ' | tr '\n' ' ')"
}

# The report's first lines: when, what, where, and the disturbance limit its runs were held to.
describe_run() {
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
  echo "max_other: $MAX_OTHER"
}

# Sourced (by bench/run-db.sh): helpers only.
[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0

# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
RUNDIR=$(mktemp -d /tmp/squall-bench.XXXXXX)
mkdir -p "$RUNDIR/nginx" "$RESULTS"
trap cleanup EXIT
trap 'exit 130' INT TERM

# nginx must be the full Debian nginx (1.22 ships the binary in "nginx"; nginx-light is a
# transitional package there). libpcre3 is needed by ngx_http_lua_module.so.
ensure_packages wrk:/usr/bin/wrk nginx:/usr/sbin/nginx curl:/usr/bin/curl python3:/usr/bin/python3 \
  lua-cjson:/usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so libpcre3:/usr/lib/x86_64-linux-gnu/libpcre.so.3 \
  cmake:/usr/bin/cmake iproute2:/usr/bin/ss
[[ " $SERVERS " == *" nginx "* ]] && ensure_nginx_lua
[[ " $SERVERS " == *" squall "* ]] && build_squall

declare -A PORT
TAKEN_PORT=""
for s in $SERVERS; do
  case $s in squall) base=28081 ;; nginx) base=28082 ;; *) die "unknown server $s" ;; esac
  PORT[$s]=$(free_port "$base"); TAKEN_PORT=${PORT[$s]}
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$RESULTS/raw-$STAMP.tsv"
printf 'server\trow\trep\trequests\trps\tp99_ms\tcpu_ticks\tcpu_us_per_req\tpeak_rss_kb\terrors\tcores\twrk_cpu_us_per_req\tother_cores\tsteal_cores\tretries\n' >"$RAW"
: >"$RUNDIR/notes.txt"
SANITY_DONE=" "

nruns=$(( REPEAT * $(wc -w <<<"$ROWS") * $(wc -w <<<"$SERVERS") ))
log "$nruns runs of ${WARMUP}s warm-up + ${DURATION}s (about $(( nruns * (DURATION + WARMUP + 2) / 60 + 1 )) min); ports: $(for s in $SERVERS; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)"

for rep in $(seq 1 "$REPEAT"); do
  for row in $ROWS; do
    # interleave servers; alternate which goes first so neither always runs on a "cooler" machine
    order=$SERVERS
    [ $((rep % 2)) -eq 0 ] && order=$(tr ' ' '\n' <<<"$SERVERS" | tac | tr '\n' ' ')
    for s in $order; do measure "$rep" "$row" "$s" "${PORT[$s]}"; done
  done
done

# environment description for the report
{
  describe_run
  echo "load: wrk $(dpkg-query -W -f='${Version}' wrk) -t$THREADS, ${DURATION}s per run after ${WARMUP}s warm-up, median of $REPEAT, fresh server process per run"
  [[ " $SERVERS " == *" nginx "* ]] && echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //') + lua-nginx-module $(dpkg-deb -f "$(ls "$DEBS"/libnginx-mod-http-lua_*.deb 2>/dev/null | tail -1)" Version 2>/dev/null), $(basename "$(ls "$DEBS"/libluajit2-5.1-2_*.deb 2>/dev/null | tail -1)" .deb 2>/dev/null)"
  [[ " $SERVERS " == *" squall "* ]] && echo "squall: build-release (CMAKE_BUILD_TYPE=Release), workers=2, LuaJIT $(dpkg-query -W -f='${Version}' libluajit-5.1-2 2>/dev/null)"
  true
} >"$RUNDIR/env.txt"

/usr/bin/python3 "$BENCH_DIR/report.py" "$RAW" "$RUNDIR/env.txt" "$RUNDIR/notes.txt" "$RESULTS/latest.md"
