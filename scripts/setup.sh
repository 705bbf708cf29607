# Sourced by scripts/test.sh, scripts/demo.sh and scripts/image.sh: install system and Python
# packages, idempotently. Needs root (network namespaces, apt). Safe to run again.
#
#   . scripts/setup.sh test    # everything the test suite needs (the default)
#   . scripts/setup.sh demo    # only what ./scripts/demo.sh needs
#
# Always pass the mode: a sourced script sees its caller's arguments as its own.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "vipgate setup: run as root (network namespaces, apt)" >&2; exit 1; fi
vipgate_setup_mode=${1:-test}
case "$vipgate_setup_mode" in
  # The demo: BIRD (the router), iproute2 (namespaces), openssl, python3-venv; Python: the runtime,
  # the lab's PKI and matplotlib (pyproject's `demo` extra).
  demo)
    apt_pkgs="bird2 iproute2 openssl python3-venv"
    extras="demo" ;;
  # The test suite, on top of the demo's: frr, gobgpd (interop tests); procps, curl (lab);
  # nftables (the BFD lab test makes a node silent: every packet dropped in its namespace);
  # podman buildah mmdebstrap runc catatonit: the container image (scripts/image.sh) and the
  # pod-runtime test (catatonit: the pause process of the pod's infra container, built locally by
  # podman); prometheus: promtool and the alerting test (the lab starts its own server in a
  # namespace). Python: the `demo`, `test` and `fuzz` extras.
  test)
    apt_pkgs="bird2 frr gobgpd iproute2 nftables openssl procps curl python3-venv podman buildah mmdebstrap runc catatonit prometheus"
    extras="demo,test,fuzz" ;;
  *) echo "vipgate setup: unknown mode '$vipgate_setup_mode' (demo or test)" >&2; exit 2 ;;
esac
missing=""
for p in $apt_pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "== apt-get install$missing"
  # Keep the packages' services from starting on the host: the lab starts routers itself in namespaces.
  policy=/usr/sbin/policy-rc.d; created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || true
  apt-get install -y -q --no-install-recommends $missing
  [ "$created_policy" -eq 0 ] || rm -f "$policy"
  # Debian starts these daemons in the host namespace on some setups; the lab never uses them.
  # prometheus: the alerting test runs its own server in a namespace; podman: no daemon, socket
  # or restart service is needed (the tests call podman with a private store).
  for s in bird frr gobgpd prometheus prometheus-node-exporter \
    podman.socket podman.service podman-restart.service podman-auto-update.timer; do
    systemctl stop "$s" 2>/dev/null || true; systemctl disable "$s" 2>/dev/null || true
  done
fi
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then echo "== python venv"; "$py" -m venv .venv; fi
# One stamp per mode; the test mode's extras include the demo's.
stamp=.venv/.vipgate-installed-$vipgate_setup_mode
fresh() { [ -f "$1" ] && ! [ pyproject.toml -nt "$1" ]; }
if ! fresh "$stamp" && ! { [ "$vipgate_setup_mode" = demo ] && fresh .venv/.vipgate-installed-test; }; then
  echo "== pip install -e .[$extras]"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[$extras]"
  touch "$stamp"
fi
unset vipgate_setup_mode extras apt_pkgs missing stamp py
unset -f fresh
