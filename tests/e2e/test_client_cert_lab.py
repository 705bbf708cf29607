"""Health checks against apiservers without anonymous access: the client certificate
(docs/configuration.md, "Client certificates").

The lab's fake apiservers run with ``--client-ca`` (the cluster CA): a request without a client
certificate of that CA gets 401, as kube-apiserver's health paths do with --anonymous-auth=false
(RKE2). node1's vipgate presents a client certificate signed by the cluster CA and announces;
node2's presents none and never announces; ``vipgate check`` on node2 says why and what to set.
"""

from __future__ import annotations

import sys

import pytest

from lab.cluster import Cluster
from lab.netns import Lab
from lab.pki import make_client_cert
from lab.wait import wait_for

pytestmark = pytest.mark.lab

CERT = "control_plane_health_check_client_cert_path"
KEY = "control_plane_health_check_client_key_path"


def vipgate_check(c: Cluster, node: str, env: dict[str, str]) -> tuple[int, str]:
    """`vipgate check` in the node's namespace with exactly this environment."""
    cmd = ["env", "-i", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in env.items())]
    cp = c.lab.run(
        c.topo.node(node).ns, [*cmd, sys.executable, "-m", "vipgate", "check"], check=False,
        timeout=30,
    )  # fmt: skip
    return cp.returncode, cp.stdout + cp.stderr


def test_client_certificate_opens_the_health_check() -> None:
    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=2, apiserver_kwargs={"client_auth": True})
        cert, key = make_client_cert(c.pki, "vipgate-client", "vipgate", ["system:vipgate"])
        files = {CERT: str(cert), KEY: str(key)}
        c.start("node1", files)
        c.start("node2")
        c.wait_nexthops({c.ip("node1")}, timeout=20)
        # node2's checks are answered 401 (not a crash, not a TLS error) and it stays withdrawn.
        wait_for(lambda: "401" in c.log("node2"), 10, 0.1, what="node2 sees HTTP 401")
        assert c.nexthops() == {c.ip("node1")}, c.log("node2")

        node2_env = c.node_env(c.topo.node("node2"))
        rc, out = vipgate_check(c, "node2", node2_env)
        assert rc == 1, out
        assert "anonymous access refused (HTTP 401" in out and CERT in out, out
        rc, out = vipgate_check(c, "node2", {**node2_env, **files})
        assert rc == 0, out
        assert f"certificate O=system:vipgate, CN=vipgate from {cert}" in out, out

        # node2 restarted with the certificate announces too.
        assert c.stop("node2") == 0
        c.start("node2", files)
        c.wait_nexthops({c.ip("node1"), c.ip("node2")}, timeout=20)
