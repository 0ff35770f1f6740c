#!/usr/bin/env bash
# Quick start 2: set up and run the whole test suite (SQLite and a private PostgreSQL
# cluster the tests start themselves), plus the linter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check .
# Two workers (pytest-xdist), a test file each at a time: much of the suite waits on real
# parts (Asterisk calls, Chromium, servers in subprocesses), so two workers on two cores
# take about a third less wall time (docs/benchmarks.md). Each worker has its own
# PostgreSQL cluster, Asterisk and temporary directory.
# CARECALL_TEST_WORKERS=0 runs it in one process.
workers="${CARECALL_TEST_WORKERS:-2}"
if [ "$workers" = 0 ]; then
  exec .venv/bin/python -m pytest --durations=15 "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile --durations=15 "$@"
