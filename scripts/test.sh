#!/usr/bin/env bash
# Quick start 2: set up and run the whole test suite (SQLite and a private PostgreSQL
# cluster the tests start themselves), plus the linter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
