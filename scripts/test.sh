#!/usr/bin/env bash
# The README's test command: installs what the tests need on a fresh machine, then runs
# lint, type checks and the whole test suite (SQLite and PostgreSQL).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# System packages: PostgreSQL with PostGIS (pgSTAC is installed into it by pypgstac later),
# Debian's Chromium for the browser tests (Playwright drives it; no browser download), and
# GDAL's command-line tools (ogr2ogr reads the PostGIS tables as an independent client).
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in postgresql-15-postgis-3 chromium gdal-bin; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# PostgreSQL must be running, with a `test` database.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1; then
  psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"
fi
# The catalog's spatial filters use PostGIS on PostgreSQL.
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE EXTENSION IF NOT EXISTS postgis"

# Redis and RabbitMQ: the Celery executor's brokers, tested on both.
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /tmp --logfile /tmp/geoetl-ci-redis.log
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  as_root rabbitmq-server -detached
  for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done
fi

bash "$ROOT/scripts/bootstrap.sh"

# Azurite (Azure Blob emulator) for the storage tests, from npm into .cache/npm (ignored
# by git); tests/servers.py finds it there. moto's S3 server comes with the dev extra.
if [ ! -x "$ROOT/.cache/npm/node_modules/.bin/azurite-blob" ]; then
  mkdir -p "$ROOT/.cache/npm"
  npm install --prefix "$ROOT/.cache/npm" --no-audit --no-fund --silent azurite@3 >/dev/null
fi
export PATH="$ROOT/.venv/bin:$PATH"

ruff check
ruff format --check
mypy --strict src
# Tests that need PostgreSQL fail rather than skip when CI=true.
pytest -q "$@"
