#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine (as root), idempotently,
# then run ruff, mypy --strict and pytest (unit tests, then the lab tests with real routers).
# Each stage prints its wall time, and a table of them comes at the end.
#
# The lab tests run in VIPGATE_LAB_WORKERS pytest-xdist workers (default 2, a whole test module
# per worker at a time: tests/conftest.py); VIPGATE_LAB_WORKERS=1 runs them in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
t_stage=$SECONDS
times=""
stage_done() {  # record the wall time of the stage that just ended
  local took=$((SECONDS - t_stage))
  echo "-- $1: ${took} s"
  times+=$(printf '%-24s %5d s' "$1" "$took")$'\n'
  t_stage=$SECONDS
}
run_pytest() {  # run pytest; exit 1 unless it passed (exit 5, no test collected, fails too)
  local what=$1 rc=0
  shift
  .venv/bin/pytest "$@" || rc=$?
  [ "$rc" -eq 0 ] || { echo "$what failed (pytest exit $rc)"; exit 1; }
}

echo "== setup (apt, .venv)"; . scripts/setup.sh test; stage_done "setup"
echo "== ruff"; .venv/bin/ruff check .; stage_done "ruff"
echo "== ruff format"; .venv/bin/ruff format --check .; stage_done "ruff format"
echo "== mypy --strict"; .venv/bin/mypy; stage_done "mypy"
echo "== pytest (unit)"
run_pytest "unit tests" -q -m "not lab" "$@"; stage_done "pytest (unit)"

workers=${VIPGATE_LAB_WORKERS:-2}
parallel=()
if [ "$workers" -gt 1 ]; then parallel=(-n "$workers" --dist loadfile); fi
echo "== pytest (lab: network namespaces, BIRD, FRR, GoBGP; ${workers} worker(s))"
run_pytest "lab tests" -q -m lab --durations=15 "${parallel[@]}" "$@"; stage_done "pytest (lab)"

echo "== wall time per stage"
printf '%s' "$times"
printf '%-24s %5d s\n' "total" "$SECONDS"
echo "== all tests passed"
