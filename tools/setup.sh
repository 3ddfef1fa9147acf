#!/usr/bin/env bash
# Installs the Debian bookworm packages Squall builds, runs and tests with. Idempotent: it only
# calls apt-get when something is missing. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libluajit-5.1-dev luajit          # LuaJIT: the handlers' VM
  libuv1-dev                        # event loops
  default-libmysqlclient-dev libmariadb-dev   # MariaDB Connector/C (libmysqlclient API)
  node-llhttp                       # llhttp's C sources, compiled into the build
  libssl-dev                        # libcrypto: squall.crypto's digests, HMAC and random bytes
  libsodium-dev                     # argon2id for squall.password (OpenSSL 3.0 has no argon2)
  argon2                            # the reference argon2 CLI: test vectors for squall.password
  lua-busted lua-cjson              # specs, JSON
  mariadb-server mariadb-client     # the development and test database
  curl python3                      # end-to-end tests
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# RUNLEVEL=1 keeps invoke-rc.d from starting the system MariaDB: the tests and the example app
# use their own server (tools/db.sh).
$SUDO env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
