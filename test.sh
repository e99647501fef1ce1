#!/usr/bin/env bash
# Runs every test of WaOS against real Postgres, real Redis and real NATS.
# Uses them where they answer (127.0.0.1:5432 with trust auth, 127.0.0.1:6379, NATS with
# JetStream at 127.0.0.1:4222); where they do not, installs them from Debian's packages and
# starts them; installs Debian's Chromium and chromedriver for the browser tests where missing.
# Then: format check, clippy, tests.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '== %s\n' "$*" >&2; }

answers() { # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # host port what
  for _ in $(seq 1 60); do
    answers "$1" "$2" && return 0
    sleep 0.5
  done
  log "$3 did not start on $1:$2"
  exit 1
}

ensure_postgres() {
  answers 127.0.0.1 5432 && return 0
  log "Postgres is not answering on 127.0.0.1:5432: installing and starting it"
  ls /etc/postgresql >/dev/null 2>&1 || apt_install postgresql
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  # The tests connect as postgres over TCP without a password (trust, local machine only).
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for 127.0.0.1 5432 Postgres
}

ensure_redis() {
  answers 127.0.0.1 6379 && return 0
  log "Redis is not answering on 127.0.0.1:6379: installing and starting it"
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for 127.0.0.1 6379 Redis
}

ensure_nats() {
  # The cluster's leases live in NATS JetStream (engine/src/cluster); its tests use buckets of
  # their own on this server, and the NATS-outage test starts a server of its own (the binary
  # must be here even when another NATS answers on 4222).
  if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    log "nats-server is missing: installing Debian's nats-server"
    apt_install nats-server
  fi
  answers 127.0.0.1 4222 && return 0
  log "NATS is not answering on 127.0.0.1:4222: installing and starting it"
  mkdir -p /var/lib/nats-server
  local binary
  binary=$(command -v nats-server || echo /usr/sbin/nats-server)
  nohup "$binary" -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server >/var/log/nats-server.log 2>&1 &
  wait_for 127.0.0.1 4222 NATS
}

ensure_browser() {
  # The console's tests drive Debian's Chromium through chromedriver (never a downloaded browser).
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    return 0
  fi
  log "Chromium or chromedriver is missing: installing Debian's chromium and chromium-driver"
  apt_install chromium chromium-driver
}

ensure_schemathesis() {
  # The OpenAPI document is checked from outside by schemathesis (web/tests/api/openapi.rs).
  if command -v schemathesis >/dev/null 2>&1; then
    export WAOS_SCHEMATHESIS="${WAOS_SCHEMATHESIS:-$(command -v schemathesis)}"
    return 0
  fi
  log "schemathesis is missing: installing it from PyPI"
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  python3 -m pip install -q schemathesis 2>/dev/null ||
    python3 -m pip install -q --break-system-packages schemathesis
  local found
  found=$(command -v schemathesis || echo "$(python3 -m site --user-base)/bin/schemathesis")
  export WAOS_SCHEMATHESIS="$found"
}

ensure_postgres
ensure_redis
ensure_nats
ensure_browser
ensure_schemathesis

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Each test process logs at trace level under here, and each test app checks, when it ends,
# that none of the secrets it made reached the log (web/src/testing/log.rs, trace_log).
rm -rf "${TMPDIR:-/tmp}/waos-test-logs"

if cargo nextest --version >/dev/null 2>&1; then
  log "cargo nextest"
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  log "cargo test (cargo-nextest is not installed)"
  cargo test --workspace --locked --no-fail-fast "$@"
fi
