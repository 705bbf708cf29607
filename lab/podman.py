"""Debian's podman 4.3 with a private store, for the image and pod-runtime tests.

Everything podman keeps goes under one directory of ours: images and containers (``--root``),
run state (``--runroot``), libpod's state (``--tmpdir``) and network configs
(``--network-config-dir``: ``kube play`` writes one), so a test never touches the machine's store
and :meth:`Podman.remove` leaves nothing behind. ``CONTAINERS_CONF`` points at
``deploy/podman/containers.conf`` (runc, ulimits, cgroupfs: what this podman needs here)::

    pm = Podman.create()
    pm.build_image()                      # scripts/image.sh --store DIR -> localhost/vipgate:dev
    pm.run("run", "--rm", "--network=none", IMAGE, "version")
    pm.run("kube", "play", "pod.yaml", netns=node.ns)   # hostNetwork = that namespace
    pm.remove()

Facts (Debian 12, podman 4.3.1, measured here): ``ip netns exec NS podman kube play`` fails (its
fresh /sys hides the cgroup mounts) while ``nsenter --net=/run/netns/NS podman ...`` works, so
:meth:`run` uses nsenter; ``kube down`` kills with SIGKILL at once (the YAML's
``terminationGracePeriodSeconds`` is ignored): stop the pod with ``pod stop -t N`` (SIGTERM, then
N seconds) first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "deploy" / "podman" / "containers.conf"
IMAGE = "localhost/vipgate:dev"
# Written by podman whatever --root says (the blob-info cache of containers/image, for root):
# removed by Podman.remove() when it did not exist before the store was created.
MACHINE_PATHS = (Path("/var/lib/containers"),)


class PodmanError(RuntimeError):
    pass


@dataclass
class Podman:
    """podman with every piece of its state under ``store`` (created by :meth:`create`)."""

    store: Path
    created_outside: tuple[Path, ...] = ()  # machine paths absent at create(): ours to remove

    @classmethod
    def create(cls) -> Podman:
        absent = tuple(p for p in MACHINE_PATHS if not p.exists())
        return cls(Path(tempfile.mkdtemp(prefix="vipgate-podman-", dir="/var/tmp")), absent)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}

    def argv(self, *args: str) -> list[str]:
        s = self.store
        return [
            "podman",
            "--root", str(s / "root"),
            "--runroot", str(s / "run"),
            "--tmpdir", str(s / "tmp"),
            "--network-config-dir", str(s / "net"),
            *args,
        ]  # fmt: skip

    def run(
        self, *args: str, netns: str | None = None, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS`` (inside network namespace ``netns`` when given); capture text."""
        cmd = self.argv(*args)
        if netns is not None:
            cmd = ["nsenter", f"--net=/run/netns/{netns}", *cmd]
        cp = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )
        if check and cp.returncode != 0:
            raise PodmanError(
                f"{' '.join(args)} exited {cp.returncode}: {cp.stderr.strip()[-2000:]}"
            )
        return cp

    def build_image(self, tag: str = IMAGE, timeout: float = 900.0) -> float:
        """``scripts/image.sh --store`` into this store; returns the seconds it took.

        The build runs at the lowest CPU priority (``nice -n 19``): the lab tests run in two
        workers, and a build (minutes of mmdebstrap and compression) beside a test that times
        sub-second failovers would otherwise starve it."""
        t0 = time.monotonic()
        script = str(REPO / "scripts" / "image.sh")
        cp = subprocess.run(
            ["nice", "-n", "19", script, "--store", str(self.store), "--tag", tag],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )
        if cp.returncode != 0:
            out = f"{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}"
            raise PodmanError(f"scripts/image.sh exited {cp.returncode}:\n{out}")
        return time.monotonic() - t0

    def image_size(self, image: str = IMAGE) -> int:
        """The image's size in bytes as podman reports it (uncompressed layers)."""
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def inspect(self, container: str, fmt: str) -> str:
        return self.run("container", "inspect", "--format", fmt, container).stdout.strip()

    def remove(self) -> None:
        """Remove every pod, container and image of the store, then the store itself (and the
        machine paths podman made outside it during our run)."""
        if not self.store.exists():
            return
        for args in (("pod", "rm", "--all", "--force"), ("rm", "--all", "--force")):
            self.run(*args, check=False, timeout=120)
        self.run("rmi", "--all", "--force", check=False, timeout=120)
        # Anything podman left mounted under the store (overlay layers, shm) goes too.
        prefix = str(self.store) + "/"
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.store)
        for path in self.created_outside:
            shutil.rmtree(path, ignore_errors=True)
