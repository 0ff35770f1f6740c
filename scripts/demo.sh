#!/usr/bin/env bash
# Quick start 1: set up, load demo data into SQLite, run the server in the foreground.
#   FastAGI on 127.0.0.1:4573, office web on http://127.0.0.1:8080 (Ctrl-C stops).
# Then, in another terminal:
#   .venv/bin/carecall simulate-call --from "020 8698 9911" --digits 1001,1234
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
mkdir -p var
export CARECALL_DB="${CARECALL_DB:-sqlite:///var/demo.db}"
export CARECALL_DATA_DIR="${CARECALL_DATA_DIR:-var}"
export CARECALL_SECRET_FILE="${CARECALL_SECRET_FILE:-var/carecall.key}"
# An office login for the demo: "demo" / "demo-password", a manager (sees every page) with key-safe access.
# On a second start the user exists already; that is fine.
echo "demo-password" | .venv/bin/carecall user add demo --role manager --keysafe-access --password-stdin >/dev/null 2>&1 || true
exec .venv/bin/carecall run --demo
