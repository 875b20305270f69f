# Shared set-up for scripts/test and scripts/demo: a virtualenv with the project, and a Redis.
# Sourced, not executed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

ensure_venv() {
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e ".[dev]"
    rm -f "$VENV"/.installed-* && touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

redis_answers() { # url
  "$VENV/bin/python" - "$1" <<'PYEOF' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PYEOF
}

ensure_redis() {
  # Reuse REDIS_URL (or the default 127.0.0.1:6379) when it answers; otherwise start a
  # private server on another port, with noeviction (a broker must never lose keys).
  local url="${REDIS_URL:-redis://127.0.0.1:6379/0}"
  if redis_answers "$url"; then
    export REDIS_URL="$url"; return
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "redis-server not found; installing it from Debian's packages" >&2
    (apt-get update -qq && apt-get install -y -qq redis-server) >&2
  fi
  local port="${CONNECTOR_PRIVATE_REDIS_PORT:-6390}"
  mkdir -p "$ROOT/var/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$ROOT/var/redis" \
    --save "" --appendonly no --maxmemory-policy noeviction \
    --logfile "$ROOT/var/redis/redis.log" --pidfile "$ROOT/var/redis/redis.pid"
  export REDIS_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 1 50); do redis_answers "$REDIS_URL" && return; sleep 0.1; done
  echo "could not start a Redis server on port $port" >&2; exit 1
}

amqp_answers() {
  "$VENV/bin/python" - <<'PYEOF' >/dev/null 2>&1
import socket; socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
PYEOF
}

ensure_rabbitmq() {
  # Optional: the RabbitMQ tests skip with a visible reason when no broker can be had.
  amqp_answers && return 0
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server) >&2 || return 0
  fi
  rabbitmq-server -detached >&2 || return 0
  for _ in $(seq 1 120); do amqp_answers && return 0; sleep 0.5; done
  echo "RabbitMQ did not come up; its tests will be skipped" >&2
}
