"""The generated static pod, run by a pod runtime: `podman kube play` in a lab node
(docs/deployment.md).

``vipgate manifest pod ...`` (the real generator) with the image built by scripts/image.sh,
played with Debian's podman inside node1's network namespace (hostNetwork = that namespace), the
lab's CA as a real hostPath file: the route is announced at the lab's BIRD, an apiserver failure
withdraws it, and ``podman pod stop -t N`` (SIGTERM, N seconds grace) withdraws it cleanly with
vipgate exiting 0; ``kube down`` then removes the pod. (``kube down`` alone would SIGKILL at once in
podman 4.3.1, and podman ignores ``terminationGracePeriodSeconds``: see lab/podman.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab.cluster import HEALTH_URL, Cluster, vip_on_lo
from lab.netns import Lab
from lab.podman import IMAGE, Podman
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4_ADDR
from tests.e2e.conftest import FIGURES

pytestmark = pytest.mark.lab

CONTAINER = "vipgate-vipgate"  # podman names a pod's container <pod>-<container>


def manifest(node_ip: str, ca: Path) -> str:
    """The static pod as `vipgate manifest pod` writes it (1 s period, threshold 2)."""
    argv = [
        "manifest", "pod", "--image", IMAGE,
        "--interface", "lo", "--address", VIP4_ADDR, "--controlplane", "--bgp",
        "--bgpRouterID", node_ip, "--bgppeers", f"{ROUTER_IP4}:{ROUTER_AS}::false",
        "--bgpHoldTimer", "9", "--bgpKeepAliveInterval", "3",
        "--controlPlaneHealthCheckAddress", HEALTH_URL,
        "--controlPlaneHealthCheckPeriodSeconds", "1",
        "--controlPlaneHealthCheckTimeoutSeconds", "1",
        "--controlPlaneHealthCheckFailureThreshold", "2",
        "--controlPlaneHealthCheckCAPath", str(ca),
        "--controlPlaneHealthCheckServerName", "kubernetes",
        "--prometheusHTTPServer", "",
    ]  # fmt: skip
    cp = subprocess.run(
        [sys.executable, "-m", "vipgate", *argv], capture_output=True, text=True, check=True
    )
    return cp.stdout


def test_static_pod_in_podman_announces_withdraws_and_stops_cleanly(podman: Podman) -> None:
    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=1)
        node = c.topo.node("node1")
        text = manifest(node.ip4, c.pki.ca_cert)
        assert yaml.safe_load(text)["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == (
            str(c.pki.ca_cert)
        )
        pod_yaml = lab.workdir / "vipgate-pod.yaml"
        pod_yaml.write_text(text)
        try:
            podman.run("kube", "play", str(pod_yaml), netns=node.ns, timeout=120)
            c.wait_nexthops({node.ip4}, timeout=30)

            # The runtime applied the manifest's hardening.
            caps = json.loads(podman.inspect(CONTAINER, "{{json .EffectiveCaps}}"))
            assert sorted(caps) == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
            assert podman.inspect(CONTAINER, "{{.HostConfig.ReadonlyRootfs}}") == "true"
            pid = podman.inspect(CONTAINER, "{{.State.Pid}}")
            status = Path(f"/proc/{pid}/status").read_text()
            assert "\nNoNewPrivs:\t1\n" in status  # allowPrivilegeEscalation: false
            mounts = json.loads(podman.inspect(CONTAINER, "{{json .Mounts}}"))
            ca = [m for m in mounts if m["Destination"] == str(c.pki.ca_cert)]
            assert ca and ca[0]["Source"] == str(c.pki.ca_cert) and ca[0]["RW"] is False, mounts
            assert vip_on_lo(lab, node)  # NET_ADMIN in the node's namespace: the VIP is on lo

            # The apiserver fails: the route goes; it comes back: the route comes back.
            c.apiservers["node1"].set_mode("refuse")
            c.wait_nexthops(set(), timeout=15)
            c.apiservers["node1"].set_mode("healthy")
            c.wait_nexthops({node.ip4}, timeout=15)

            # SIGTERM with a grace period: withdrawn, sessions closed, exit 0 (not 137).
            t0 = time.monotonic()
            grace = str(yaml.safe_load(text)["spec"]["terminationGracePeriodSeconds"])
            podman.run("pod", "stop", "-t", grace, "vipgate", timeout=60)
            stopped = time.monotonic() - t0
            FIGURES[f"podman pod stop -t {grace} (SIGTERM to stopped)"] = f"{stopped:.2f} s"
            c.wait_nexthops(set(), timeout=5)
            cp = podman.run("logs", CONTAINER)
            logs = cp.stdout + cp.stderr
            assert podman.inspect(CONTAINER, "{{.State.ExitCode}}") == "0", logs
            assert "BGP sessions closed" in logs, logs
            assert not vip_on_lo(lab, node), logs
            podman.run("kube", "down", str(pod_yaml), netns=node.ns)
            assert podman.run("pod", "ps", "--quiet").stdout.strip() == ""
        finally:
            podman.run("kube", "down", str(pod_yaml), netns=node.ns, check=False)
            podman.run("pod", "rm", "--all", "--force", check=False)
