#!/usr/bin/env bash
# The README's first command: install geoetl, ingest the sample data on the embedded default
# (SQLite and a local folder under ./geoetl-data; nothing else to install) and serve them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/geoetl" demo "$@"
