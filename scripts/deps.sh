#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis for `make run`, `make test` and `make bench`.
#
# Source it, then call deps_start; it installs the Debian packages when missing, starts both
# servers on 127.0.0.1 from scratch in a temporary directory, and exports DATABASE_URL,
# REDIS_URL, TEST_DATABASE_URL and TEST_REDIS_URL. deps_stop (also run on exit) stops them
# and removes the directory.
#
# PG_PORT and REDIS_PORT choose the ports (default: free ones picked at start). PG_EXTRA_OPTS adds
# postgres server options (e.g. "-c shared_preload_libraries=pg_stat_statements" for `make bench`).

deps_install() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  deps_pg_bin >/dev/null 2>&1 || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]} from Debian packages" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
  fi
}

# deps_pg_bin prints the directory holding initdb and pg_ctl.
deps_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

# A free port below the kernel's ephemeral range, like shared/localserver: one from that range
# may become the local end of any outgoing connection before the server binds it.
deps_free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 10000))
import random, socket
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    lo = 32768
for _ in range(200):
    port = random.randrange(max(1024, lo - 20000), lo)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit(1)
PY
}

deps_start() {
  deps_install
  DEPS_DIR=$(mktemp -d /tmp/br-deps.XXXXXX)
  chmod 755 "$DEPS_DIR"
  local pgbin; pgbin=$(deps_pg_bin)
  PG_PORT=${PG_PORT:-$(deps_free_port)}
  REDIS_PORT=${REDIS_PORT:-$(deps_free_port)}
  local pguser=postgres asuser=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DEPS_DIR" postgres
    mkdir -p "$DEPS_DIR/pg" && chown postgres "$DEPS_DIR/pg"
    asuser=(runuser -u postgres --)
  else
    pguser=$(id -un); mkdir -p "$DEPS_DIR/pg"
  fi
  "${asuser[@]}" "$pgbin/initdb" --no-sync -A trust -U postgres -D "$DEPS_DIR/pg/data" >"$DEPS_DIR/initdb.log" 2>&1 \
    || { cat "$DEPS_DIR/initdb.log" >&2; return 1; }
  "${asuser[@]}" "$pgbin/pg_ctl" -D "$DEPS_DIR/pg/data" -l "$DEPS_DIR/pg/postgres.log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k $DEPS_DIR/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 ${PG_EXTRA_OPTS:-}" \
    start >/dev/null || { cat "$DEPS_DIR/pg/postgres.log" >&2; return 1; }
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$DEPS_DIR/redis.pid" --logfile "$DEPS_DIR/redis.log" --dir "$DEPS_DIR" >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export DEPS_DIR PG_PORT REDIS_PORT
  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  export TEST_DATABASE_URL=${TEST_DATABASE_URL:-$DATABASE_URL}
  export TEST_REDIS_URL=${TEST_REDIS_URL:-$REDIS_URL}
  echo "deps: PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT (in $DEPS_DIR)" >&2
}

deps_stop() {
  [ -n "${DEPS_DIR:-}" ] && [ -d "$DEPS_DIR" ] || return 0
  if [ -f "$DEPS_DIR/redis.pid" ]; then kill "$(cat "$DEPS_DIR/redis.pid")" 2>/dev/null || true; fi
  local pgbin; pgbin=$(deps_pg_bin)
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$DEPS_DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
  else
    "$pgbin/pg_ctl" -D "$DEPS_DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DEPS_DIR"
  DEPS_DIR=""
}
