"""The container image built by scripts/image.sh runs vipgate, read-only (docs/deployment.md).

The image is built once per run by the session fixture ``podman`` (Debian bookworm base made by
mmdebstrap, Debian's podman/buildah) into a private store that is removed at the end.
"""

from __future__ import annotations

import pytest

from lab.podman import IMAGE, Podman
from tests.e2e.conftest import FIGURES
from vipgate import __version__

pytestmark = pytest.mark.lab

# A container as the manifests run it: read-only root without podman's extra tmpfs mounts,
# only the pod's capabilities, no network.
READ_ONLY = (
    "run", "--rm", "--network=none", "--read-only", "--read-only-tmpfs=false",
    "--cap-drop=ALL", "--cap-add=NET_ADMIN,NET_RAW",
)  # fmt: skip


def test_image_runs_vipgate_version(podman: Podman) -> None:
    out = podman.run("run", "--rm", "--network=none", IMAGE, "version").stdout
    assert out.strip() == f"vipgate {__version__}"


def test_image_entrypoint_is_the_manager(podman: Podman) -> None:
    fmt = "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}}"
    out = podman.run("image", "inspect", "--format", fmt, IMAGE).stdout.strip()
    assert out == '["vipgate"] ["manager"] root'


def test_image_size(podman: Podman) -> None:
    size = podman.image_size()
    FIGURES["image size (podman image inspect .Size)"] = f"{size / 1e6:.1f} MB ({size} bytes)"
    # Debian's python3 (~100 MB with its libraries) plus vipgate's venv (~10 MB): a much larger
    # image means something that does not belong in it was copied (a build stage, pip caches).
    assert 50e6 < size < 200e6, size


def test_image_has_no_apt_sources_and_no_pip(podman: Podman) -> None:
    script = (
        "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | wc -c; "
        "ls /opt/vipgate/bin | grep -c '^pip' || true"
    )
    out = podman.run(*READ_ONLY, "--entrypoint", "sh", IMAGE, "-c", script).stdout.split()
    assert out == ["0", "0"], out


def test_image_works_with_a_read_only_root_filesystem(podman: Podman) -> None:
    env = [
        "--env", "address=203.0.113.100", "--env", "bgp_enable=true",
        "--env", "bgp_peers=192.0.2.1:65001::false",
    ]  # fmt: skip
    cp = podman.run(*READ_ONLY, *env, IMAGE, "config")
    assert "203.0.113.100/32" in cp.stdout, cp.stdout
    cp = podman.run(*READ_ONLY, IMAGE, "manifest", "pod", "--address", "203.0.113.100",
                    "--bgppeers", "192.0.2.1:65001::false")  # fmt: skip
    assert "readOnlyRootFilesystem: true" in cp.stdout
    # The root really is read-only (so the runs above wrote nothing).
    cp = podman.run(*READ_ONLY, "--entrypoint", "sh", IMAGE, "-c", "touch /opt/vipgate/x",
                    check=False)  # fmt: skip
    assert cp.returncode != 0 and "Read-only file system" in cp.stderr, cp
