#!/usr/bin/env bash
# A private MariaDB server for development, tests, CI and benchmarks: its own data directory
# (var/mariadb by default, SQUALL_DB_DIR to change), loopback TCP on a free port and a unix
# socket, the current user, and the example app's schema (db/schema.sql) loaded.
#
#   tools/db.sh start    start (initialising the data directory on first use); idempotent
#   tools/db.sh stop     stop it
#   tools/db.sh status   exit 0 when it answers
#   tools/db.sh env      print SQUALL_DB_* variables for `eval`
#   tools/db.sh client   a mariadb shell on the squall database
#   tools/db.sh reset    drop and reload the schema
#   tools/db.sh create NAME [USER [PASSWORD]]
#                        an app's own database NAME and a user (default NAME; a random password
#                        when none is given) with every right on it, from 127.0.0.1 and the
#                        socket; prints the `db` table for config.lua. Run again, it sets the
#                        password anew.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"   # mariadbd is in /usr/sbin, off a normal user's PATH
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SQUALL_DB_DIR:-$root/var/mariadb}
data=$dir/data
sock=$dir/mysqld.sock
pidf=$dir/mysqld.pid
portf=$dir/port
user=$(id -un)

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The data directory is installed with unix-socket authentication for root and for the user that
# installed it (mariadb-install-db --user): connecting as the OS user works for root and others.
as_root() { mariadb --no-defaults -u"$user" --socket="$sock" "$@"; }

alive() { [ -S "$sock" ] && mariadb-admin --no-defaults -u"$user" --socket="$sock" ping >/dev/null 2>&1; }

start() {
  mkdir -p "$dir"
  # Two starts at once (the plain and the ASan test copies) would install and start twice.
  exec 9>"$dir/.lock"
  flock 9
  if alive; then load_schema; return 0; fi
  if [ ! -d "$data/mysql" ]; then
    rm -rf "$data"
    mariadb-install-db --no-defaults --datadir="$data" --user="$user" \
      --auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 ||
      { cat "$dir/install.log"; exit 1; }
  fi
  [ -s "$portf" ] || free_port >"$portf"
  local port; port=$(cat "$portf")
  # Small buffers: this server shares 2 cores and some memory with the app, the tests and wrk.
  mariadbd --no-defaults --datadir="$data" --socket="$sock" --pid-file="$pidf" --user="$user" \
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=128M \
    --innodb-log-file-size=48M --innodb-flush-log-at-trx-commit=2 --max-connections=500 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
    --log-error="$dir/error.log" >"$dir/mariadbd.out" 2>&1 9>&- &   # 9>&-: it must not hold the lock
  for _ in $(seq 1 150); do
    alive && break
    sleep 0.1
  done
  alive || { echo "db.sh: mariadbd did not start; see $dir/error.log" >&2
             tail -20 "$dir/mariadbd.out" "$dir/error.log" >&2 2>/dev/null; exit 1; }
  if ! as_root -e "SELECT 1 FROM mysql.global_priv WHERE User='squall'" 2>/dev/null | grep -q 1; then
    as_root -e "CREATE DATABASE IF NOT EXISTS squall CHARACTER SET utf8mb4;
      CREATE USER IF NOT EXISTS 'squall'@'127.0.0.1' IDENTIFIED BY 'squall';
      CREATE USER IF NOT EXISTS 'squall'@'localhost' IDENTIFIED BY 'squall';
      GRANT ALL ON squall.* TO 'squall'@'127.0.0.1';
      GRANT ALL ON squall.* TO 'squall'@'localhost';
      GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'squall'@'127.0.0.1';
      GRANT PROCESS, CONNECTION ADMIN ON *.* TO 'squall'@'localhost';"
  fi
  load_schema
}

load_schema() {
  for f in "$root"/db/*.sql; do
    [ -e "$f" ] && as_root squall <"$f"
  done
  return 0
}

# The password goes into SQL as a quoted literal: backslashes and quotes escaped.
sql_quote() {
  local v=${1//\\/\\\\}
  v=${v//\'/\\\'}
  printf "'%s'" "$v"
}

create() {
  local name=${1:-} dbuser=${2:-${1:-}} pass=${3:-}
  [[ "$name" =~ ^[A-Za-z0-9_]{1,64}$ ]] || { echo "db.sh create: NAME must be 1-64 letters, digits or _" >&2; exit 2; }
  [[ "$dbuser" =~ ^[A-Za-z0-9_]{1,32}$ ]] || { echo "db.sh create: USER must be 1-32 letters, digits or _" >&2; exit 2; }
  [ -n "$pass" ] || pass=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
  alive || start
  local q h sql
  q=$(sql_quote "$pass")
  sql="CREATE DATABASE IF NOT EXISTS \`$name\` CHARACTER SET utf8mb4;"
  for h in 127.0.0.1 localhost; do
    sql+=" CREATE USER IF NOT EXISTS '$dbuser'@'$h' IDENTIFIED BY $q;"
    sql+=" ALTER USER '$dbuser'@'$h' IDENTIFIED BY $q;"
    # In a GRANT's database name _ and % are wildcards: escaped, the grant covers NAME alone.
    sql+=" GRANT ALL ON \`${name//_/\\_}\`.* TO '$dbuser'@'$h';"
  done
  # Through stdin: on the command line the password would show in ps.
  as_root <<<"$sql"
  printf 'db = {\n  host = "127.0.0.1", port = %s,   -- or: socket = "%s",\n' "$(cat "$portf")" "$sock"
  printf '  user = "%s", password_env = "SQUALL_DB_PASSWORD",\n  database = "%s",\n},\n' "$dbuser" "$name"
  printf -- '-- export SQUALL_DB_PASSWORD=%s\n' "$(printf '%q' "$pass")"
}

stop() {
  if alive; then
    mariadb-admin --no-defaults -u"$user" --socket="$sock" shutdown >/dev/null 2>&1 || true
  fi
  for _ in $(seq 1 100); do
    [ -f "$pidf" ] || break
    sleep 0.1
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) alive ;;
  env)
    echo "export SQUALL_DB_HOST=127.0.0.1 SQUALL_DB_PORT=$(cat "$portf") SQUALL_DB_SOCKET=$sock" \
      "SQUALL_DB_USER=squall SQUALL_DB_PASSWORD=squall SQUALL_DB_NAME=squall"
    ;;
  client) shift; mariadb --no-defaults -usquall -psquall --socket="$sock" squall "$@" ;;
  reset) as_root -e "DROP DATABASE IF EXISTS squall; CREATE DATABASE squall CHARACTER SET utf8mb4"; load_schema ;;
  create) shift; create "$@" ;;
  *) echo "usage: tools/db.sh start|stop|status|env|client|reset|create NAME [USER [PASSWORD]]" >&2; exit 2 ;;
esac
