#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine (as root), idempotently,
# then run ruff, mypy --strict and pytest (unit tests, then the lab tests with real routers).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh test
echo "== ruff";  .venv/bin/ruff check .
echo "== ruff format"; .venv/bin/ruff format --check .
echo "== mypy --strict"; .venv/bin/mypy
echo "== pytest (unit)"
set +e; .venv/bin/pytest -q -m "not lab" "$@"; rc=$?; set -e
# pytest exits 5 when it collected no tests: that is a failure for us.
[ "$rc" -eq 0 ] || { echo "unit tests failed (pytest exit $rc)"; exit 1; }
echo "== pytest (lab: network namespaces, BIRD, FRR, GoBGP)"
set +e; .venv/bin/pytest -q -m lab "$@"; rc=$?; set -e
[ "$rc" -eq 0 ] || { echo "lab tests failed (pytest exit $rc)"; exit 1; }
echo "== all tests passed"
