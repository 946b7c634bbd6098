#!/usr/bin/env bash
# Project-local TimescaleDB and Mosquitto: install what is missing, start, stop.
# Idempotent. Everything lives under .local/ (git-ignored); the machine's own
# PostgreSQL and Mosquitto on the standard ports are left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOCAL="$ROOT/.local"
PG_PORT=${ELDERCARE_PG_PORT:-55432}
MQTT_PORT=${ELDERCARE_MQTT_PORT:-18883}
# Devices connect on their own listener (client id = user name; see mosquitto.conf.in).
MQTT_DEVICE_PORT=${ELDERCARE_MQTT_PUBLIC_PORT:-18884}
PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
PGDATA="$LOCAL/pg/data"
PGRUN="$LOCAL/pg/run"
MQ="$LOCAL/mosquitto"
DB_USER=${ELDERCARE_DB_USER:-eldercare}
DB_PASSWORD=${ELDERCARE_DB_PASSWORD:-eldercare}
DB_NAME=${ELDERCARE_DB_NAME:-eldercare}

log() { printf '[services] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_packages=(postgresql-15 postgresql-server-dev-15 postgresql-client-15 mosquitto mosquitto-clients
  build-essential cmake dpkg-dev xz-utils libssl-dev debian-archive-keyring chromium
  fonts-wqy-microhei)

install_packages() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    # The packaged services must not grab the standard ports on install if absent.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The Debian mirror this machine already uses, read from its own apt sources,
# so no registry host is ever written into the repository.
debian_mirror() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '
      /^URIs:/ {u=$2} /^Suites:/ {s=$0}
      /^$/ { if (u != "" && s !~ /security/) {print u; exit} u=""; s="" }
      END { if (u != "" && s !~ /security/) print u }' /etc/apt/sources.list.d/*.sources | head -n1)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { log "cannot find a Debian mirror in /etc/apt sources"; exit 1; }
  echo "$uri"
}

build_timescaledb() {
  if [ -f "$($PG_CONFIG --pkglibdir)/timescaledb.so" ] && [ -f "$($PG_CONFIG --sharedir)/extension/timescaledb.control" ]; then
    return
  fi
  local build="$LOCAL/build/timescaledb" apt="$LOCAL/build/apt"
  mkdir -p "$build" "$apt/lists/partial" "$apt/cache/archives/partial"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main" > "$apt/sources.list"
  local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o "Dir::Etc::sourceparts=/nonexistent"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root")
  log "fetching Debian's timescaledb source (suite trixie)"
  apt-get "${opts[@]}" -qq update
  (cd "$build" && rm -rf timescaledb-*/ && apt-get "${opts[@]}" -qq source --download-only timescaledb)
  (cd "$build" && dpkg-source -x --no-check ./*.dsc >/dev/null)
  local src; src=$(find "$build" -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)
  log "building $(basename "$src") (Apache-only) against PostgreSQL 15"
  (cd "$src" && ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
      -DPG_CONFIG=$PG_CONFIG >"$build/bootstrap.log" 2>&1 \
    && cd build && make -j"$(nproc)" >"$build/make.log" 2>&1 && as_root make install >"$build/install.log" 2>&1) \
    || { log "timescaledb build failed; see $build/*.log"; tail -n 30 "$build"/*.log >&2; exit 1; }
}

pg_running() { [ -f "$PGDATA/postmaster.pid" ] && as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The cluster runs as `postgres`, which must be able to walk down to .local/pg; a clone
# in a private directory (mktemp -d is 0700) would stop it. Grant traverse-only.
ensure_traversable() {
  [ "$(id -u)" = 0 ] || return 0
  local d="$1"
  while [ "$d" != "/" ]; do
    if ! runuser -u postgres -- test -x "$d" 2>/dev/null; then
      log "granting traverse permission (o+x) on $d so the postgres user can reach its data"
      chmod o+x "$d"
    fi
    d=$(dirname "$d")
  done
}

start_postgres() {
  mkdir -p "$LOCAL/pg" "$PGRUN"
  ensure_traversable "$LOCAL"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$LOCAL/pg" "$PGRUN"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "initdb $PGDATA"
    as_postgres "$PG_BIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$PGDATA/postgresql.conf" <<CONF
# eldercare local cluster
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGRUN'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = 512MB
synchronous_commit = on
wal_compression = lz4
max_wal_size = 2GB
checkpoint_timeout = 15min
log_min_messages = warning
CONF
    cat > "$PGDATA/pg_hba.conf" <<HBA
local all postgres trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
HBA
  fi
  if ! pg_running; then
    if port_busy "$PG_PORT"; then log "port $PG_PORT is taken by another program; set ELDERCARE_PG_PORT"; exit 1; fi
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOCAL/pg/postgres.log" -w -t 60 start >/dev/null
  fi
  local psql=("$PG_BIN/psql" -h "$PGRUN" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
  as_postgres "${psql[@]}" -d postgres <<SQL >/dev/null
DO \$\$ BEGIN
  -- The owner: migrations, test databases. The platform connects as eldercare_app, which
  -- 'eldercare db migrate' creates and grants (eldercare/storage/roles.py, audit H11).
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE "$DB_USER" LOGIN SUPERUSER PASSWORD '$DB_PASSWORD';
  ELSE
    ALTER ROLE "$DB_USER" PASSWORD '$DB_PASSWORD';
  END IF;
END \$\$;
SQL
  # Full-page images in the WAL compressed with lz4, not pglz ("on"): pglz took a third of
  # the database's CPU per heartbeat of a 10,000-device fleet after each checkpoint (random
  # index pages); lz4 -30 % CPU per message (BENCHMARKS.md). Applied to existing clusters too.
  if [ "$(as_postgres "${psql[@]}" -d postgres -c "SHOW wal_compression")" != lz4 ]; then
    as_postgres "${psql[@]}" -d postgres -c "ALTER SYSTEM SET wal_compression = 'lz4'" -c "SELECT pg_reload_conf()" >/dev/null
  fi
  if [ "$(as_postgres "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != 1 ]; then
    as_postgres "${psql[@]}" -d postgres -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\"" >/dev/null
  fi
}

mosquitto_running() { [ -f "$MQ/mosquitto.pid" ] && kill -0 "$(cat "$MQ/mosquitto.pid")" 2>/dev/null; }

start_mosquitto() {
  mkdir -p "$MQ/data"
  touch "$MQ/passwd" "$MQ/acl"
  sed -e "s|@DIR@|$MQ|g" -e "s|@DEVICE_PORT@|$MQTT_DEVICE_PORT|g" -e "s|@PORT@|$MQTT_PORT|g" "$ROOT/eldercare/registry/mosquitto.conf.in" > "$MQ/mosquitto.conf"
  if ! mosquitto_running; then
    if port_busy "$MQTT_PORT"; then log "port $MQTT_PORT is taken by another program; set ELDERCARE_MQTT_PORT"; exit 1; fi
    log "starting Mosquitto on 127.0.0.1:$MQTT_PORT"
    mosquitto -d -c "$MQ/mosquitto.conf"
    for _ in $(seq 50); do port_busy "$MQTT_PORT" && break; sleep 0.1; done
  fi
}

stop_all() {
  if mosquitto_running; then
    local pid; pid=$(cat "$MQ/mosquitto.pid"); kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    log "Mosquitto stopped"
  fi
  if pg_running; then as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null; log "PostgreSQL stopped"; fi
}

print_env() {
  cat <<ENV
ELDERCARE_DATABASE_URL=postgresql://eldercare_app:eldercare-app-dev@127.0.0.1:$PG_PORT/$DB_NAME
ELDERCARE_OWNER_DATABASE_URL=postgresql://$DB_USER:$DB_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME
ELDERCARE_MQTT_HOST=127.0.0.1
ELDERCARE_MQTT_PORT=$MQTT_PORT
ELDERCARE_MQTT_PUBLIC_PORT=$MQTT_DEVICE_PORT
ELDERCARE_BROKER_DIR=$MQ
ENV
}

case "${1:-up}" in
  install) install_packages; build_timescaledb ;;
  up) install_packages; build_timescaledb; start_postgres; start_mosquitto; print_env ;;
  start) start_postgres; start_mosquitto ;;
  restart-postgres) as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w restart -l "$LOCAL/pg/postgres.log" >/dev/null ;;
  down) stop_all ;;
  env) print_env ;;
  *) echo "usage: $0 install|up|start|down|env|restart-postgres" >&2; exit 2 ;;
esac
