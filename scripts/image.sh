#!/usr/bin/env bash
# Build the vipgate container image localhost/vipgate:dev without any image registry (as root):
#   1. a Debian bookworm base with Debian's python3 (+ python3-venv, ca-certificates), made by
#      mmdebstrap from Debian's mirror, apt sources emptied, imported as localhost/vipgate-base:bookworm;
#   2. a wheelhouse from this checkout with the host's pip (vipgate, its dependencies and the build
#      backend) in build/wheelhouse;
#   3. `podman build` of the Dockerfile with BASE_IMAGE=that base and pip told to use only the wheelhouse.
# With a registry, `podman build .` (or docker) builds the same Dockerfile on the official python image.
#
#   ./scripts/image.sh [--store DIR] [--tag IMAGE] [--rebuild-base]
#
# --store DIR: a private podman store (images, containers, state, network configs under DIR; the
# tests use one and remove it), instead of the machine's. The base is reused from the store when
# present unless --rebuild-base. Prints the image's size at the end.
# VIPGATE_DEBIAN_MIRROR: the mirror for mmdebstrap (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=localhost/vipgate:dev
base=localhost/vipgate-base:bookworm
store=()
rebuild_base=0
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store=(--root "$2/root" --runroot "$2/run" --tmpdir "$2/tmp" --network-config-dir "$2/net"); shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --rebuild-base) rebuild_base=1; shift ;;
    *) echo "image.sh: unknown argument $1 (accepted: --store DIR --tag IMAGE --rebuild-base)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then echo "image.sh: run as root (mmdebstrap, podman)" >&2; exit 1; fi
. scripts/setup.sh test
# Debian's podman 4.3 as installed cannot start containers here (crun, RLIMIT_NOFILE, cgroups):
# this file fixes it and repeats Debian's default capabilities (see its comments).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/podman/containers.conf}
podman=(podman "${store[@]}")
mirror=${VIPGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${VIPGATE_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
work=$(mktemp -d /tmp/vipgate-image.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ "$rebuild_base" -eq 1 ] || ! "${podman[@]}" image exists "$base"; then
  echo "== base: mmdebstrap bookworm (python3, python3-venv, ca-certificates) -> $base"
  # essential variant: no apt in the image; merged-usr hook: usr-is-merged instead of usrmerge
  # (which would pull in perl). Documentation and locales are left out, copyright files kept.
  mmdebstrap --quiet --variant=essential --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook='rm -f "$1/etc/apt/sources.list"; rm -rf "$1"/etc/apt/sources.list.d/* "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$work/base.tar" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb $security bookworm-security main"
  "${podman[@]}" import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    "$work/base.tar" "$base" >/dev/null
  rm -f "$work/base.tar"
fi

echo "== wheelhouse: build/wheelhouse (vipgate and its dependencies, setuptools and wheel for the build)"
rm -rf build/wheelhouse
.venv/bin/pip wheel --quiet --wheel-dir build/wheelhouse . 'setuptools>=77' wheel

echo "== podman build -> $tag"
"${podman[@]}" build --quiet --pull-never --layers=false --network=none \
  --build-arg BASE_IMAGE="$base" \
  --build-arg PIP_ARGS="--no-index --find-links /src/build/wheelhouse" \
  -t "$tag" -f Dockerfile . >/dev/null
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$tag")
echo "== built $tag: $(( size / 1000000 )) MB ($size bytes)"
