#!/usr/bin/env bash
# The vipgate demo, the first thing to run: as root on a fresh Debian 12 machine it installs what
# it needs (apt packages and a .venv, idempotently, via scripts/setup.sh demo: BIRD, iproute2,
# openssl, the runtime and matplotlib), then brings up a lab of
# network namespaces -- 3 nodes running `vipgate manager`, a BIRD router with ECMP, a client --
# and narrates five phases: all healthy, node1's apiserver killed, restarted, node2's vipgate
# stopped with SIGTERM, every node's /livez answering 401 (the VIP stays announced
# de-preferred). Ends with a summary table and out/demo-timeline.png; removes the lab on
# success, failure, Ctrl-C and SIGTERM.
#
#   ./scripts/demo.sh            # about a minute of scenario
#   ./scripts/demo.sh --short    # same phases, shorter (CI)
#   ./scripts/demo.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh demo
exec .venv/bin/python -m demo.run "$@"
