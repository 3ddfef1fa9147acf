#!/usr/bin/env bash
# Squall vs nginx serving static files: a 4 KiB and a 1 MiB file, both servers reading the same
# files from the same directory (Squall: `static = { ["/static"] = dir }`; nginx: sendfile on,
# tcp_nopush, open_file_cache). Run from anywhere:  MODE=static bash bench/run.sh  (or
# bash bench/run-static.sh). See bench/README.md. It sources bench/run.sh for the helpers (packages,
# build, start/stop, CPU ticks, peak RSS, wrk parsing, idle-machine waiting and repeats) and shares
# its knobs (DURATION WARMUP REPEAT THREADS SERVERS SKIP_BUILD MAX_OTHER RETRIES QUIET_WAIT
# KEEP_RUNDIR), plus:
#   ROWS="file4k-64 file1m-64"   file (4k, 1m) and wrk connections
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROWS=${ROWS:-"file4k-64 file1m-64"}
SQUALL_BENCH_CONFIG=$BENCH_DIR/config-static.lua
MODE=static
# shellcheck source=bench/run.sh
source "$BENCH_DIR/run.sh"          # cd's to the repo root; stops before its main

# run.sh's start_server calls this for nginx.
nginx_conf() {
  sed -e "s#@RUNDIR@#$RUNDIR/nginx#g" -e "s#@PORT@#$1#g" -e "s#@FILES@#$FILES#g" \
    "$BENCH_DIR/nginx-static.conf.in" >"$RUNDIR/nginx/nginx.conf"
}

row_file() {  # row -> file name under /static/
  case ${1%-*} in
    file4k) echo 4k.bin ;;
    file1m) echo 1m.bin ;;
    *) die "unknown row $1" ;;
  esac
}

# run.sh's measure_once calls this.
wrk_args() {  # row port
  echo "-t$THREADS -c${1##*-} --latency http://127.0.0.1:$2/static/$(row_file "$1")"
}

# Once per server: both files byte for byte, their type, a range, HEAD, keep-alive.
sanity_check() {  # name port
  local name=$1 port=$2 f status ctype
  for f in 4k.bin 1m.bin; do
    curl -s -o "$RUNDIR/got" -D "$RUNDIR/hdr" "http://127.0.0.1:$port/static/$f" || true
    status=$(head -1 "$RUNDIR/hdr" | tr -d '\r')
    ctype=$(awk -F': *' 'tolower($1)=="content-type" {sub(/\r$/,"",$2); print $2}' "$RUNDIR/hdr")
    if cmp -s "$RUNDIR/got" "$FILES/$f"; then
      echo "$name /static/$f: OK ($status; Content-Type: $ctype; body identical; $(wc -c <"$RUNDIR/hdr") header bytes)" >>"$RUNDIR/notes.txt"
    else
      echo "$name /static/$f: WRONG ANSWER ($status; body differs from the file)" >>"$RUNDIR/notes.txt"
    fi
  done
  status=$(curl -s -o "$RUNDIR/got" -w '%{http_code} %{size_download}' -H 'Range: bytes=100-199' "http://127.0.0.1:$port/static/1m.bin") || true
  if [ "$status" = "206 100" ] && cmp -s "$RUNDIR/got" <(tail -c +101 "$FILES/1m.bin" | head -c 100); then
    echo "$name range: OK (206, 100 bytes, identical)" >>"$RUNDIR/notes.txt"
  else
    echo "$name range: WRONG ANSWER ($status)" >>"$RUNDIR/notes.txt"
  fi
  status=$(curl -s -I -o "$RUNDIR/hdr" -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/static/1m.bin") || true
  echo "$name HEAD: $status, $(awk -F': *' 'tolower($1)=="content-length" {sub(/\r$/,"",$2); print "Content-Length " $2}' "$RUNDIR/hdr")" >>"$RUNDIR/notes.txt"
  if curl -sv -o /dev/null -o /dev/null "http://127.0.0.1:$port/static/4k.bin" "http://127.0.0.1:$port/static/4k.bin" 2>&1 \
      | grep -qi 're-using existing connection'; then
    echo "$name keep-alive: OK (connection reused)" >>"$RUNDIR/notes.txt"
  else
    echo "$name keep-alive: NOT KEPT ALIVE (curl opened a new connection)" >>"$RUNDIR/notes.txt"
  fi
}

RUNDIR=$(mktemp -d /tmp/squall-bench.XXXXXX)
mkdir -p "$RUNDIR/nginx" "$RESULTS"
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_packages wrk:/usr/bin/wrk nginx:/usr/sbin/nginx curl:/usr/bin/curl python3:/usr/bin/python3 \
  cmake:/usr/bin/cmake iproute2:/usr/bin/ss
[[ " $SERVERS " == *" squall "* ]] && build_squall

# The files, random bytes (nothing compresses or caches better for one side). nginx's workers
# run as nobody: the directory and the files must be readable by them.
FILES=$RUNDIR/files
mkdir -p "$FILES"
head -c 4096 /dev/urandom >"$FILES/4k.bin"
head -c 1048576 /dev/urandom >"$FILES/1m.bin"
chmod 755 "$RUNDIR" "$FILES"; chmod 644 "$FILES"/*
export SQUALL_BENCH_STATIC_DIR=$FILES

declare -A PORT
TAKEN_PORT=""
for s in $SERVERS; do
  case $s in squall) base=28081 ;; nginx) base=28082 ;; *) die "unknown server $s" ;; esac
  PORT[$s]=$(free_port "$base"); TAKEN_PORT=${PORT[$s]}
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RAW="$RESULTS/raw-static-$STAMP.tsv"
printf 'server\trow\trep\trequests\trps\tp99_ms\tcpu_ticks\tcpu_us_per_req\tpeak_rss_kb\terrors\tcores\twrk_cpu_us_per_req\tother_cores\tsteal_cores\tretries\n' >"$RAW"
: >"$RUNDIR/notes.txt"
SANITY_DONE=" "

nruns=$(( REPEAT * $(wc -w <<<"$ROWS") * $(wc -w <<<"$SERVERS") ))
log "$nruns runs of ${WARMUP}s warm-up + ${DURATION}s (about $(( nruns * (DURATION + WARMUP + 2) / 60 + 1 )) min); ports: $(for s in $SERVERS; do printf '%s=%s ' "$s" "${PORT[$s]}"; done)"

for rep in $(seq 1 "$REPEAT"); do
  for row in $ROWS; do
    order=$SERVERS
    [ $((rep % 2)) -eq 0 ] && order=$(tr ' ' '\n' <<<"$SERVERS" | tac | tr '\n' ' ')
    for s in $order; do measure "$rep" "$row" "$s" "${PORT[$s]}"; done
  done
done

{
  describe_run
  echo "load: wrk $(dpkg-query -W -f='${Version}' wrk) -t$THREADS, ${DURATION}s per run after ${WARMUP}s warm-up, median of $REPEAT, fresh server process per run"
  [[ " $SERVERS " == *" nginx "* ]] && echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), sendfile on, tcp_nopush on, open_file_cache (bench/nginx-static.conf.in)"
  [[ " $SERVERS " == *" squall "* ]] && echo "squall: build-release (CMAKE_BUILD_TYPE=Release), workers=2, static = { [\"/static\"] = files } (bench/config-static.lua)"
  echo "files: 4 KiB and 1 MiB of random bytes, the same directory for both servers"
  true
} >"$RUNDIR/env.txt"

RPS_TARGET=0.80 CPU_TARGET=1.25 REPORT_TITLE="Static files: Squall vs nginx (sendfile)" \
  /usr/bin/python3 "$BENCH_DIR/report.py" "$RAW" "$RUNDIR/env.txt" "$RUNDIR/notes.txt" "$RESULTS/latest-static.md"
