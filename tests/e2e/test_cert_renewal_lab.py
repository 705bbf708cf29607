"""A kubeadm-style renewal of the health check's client certificate, without a restart
(docs/configuration.md, "Client certificates").

The lab's fake apiserver requires a client certificate of the cluster CA (401 without, as with
``--anonymous-auth=false``). vipgate checks every 0.2 s with certificate v1; then, as ``kubeadm
certs renew`` does, a new key and certificate v2 of the same CA are written beside the old files
and renamed over them (key first: for a moment the key does not match the certificate). The
next checks present v2 (the apiserver sees its serial), no check fails, the route never moves,
and vipgate_tls_reloads_total says it loaded them once. Then a half-written certificate: v2
stays in use, the log says why once, vipgate_tls_reload_success is 0 -- until v3 is in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from lab.apiserver import Apiserver
from lab.cluster import Cluster
from lab.netns import Lab
from lab.pki import make_client_cert
from lab.wait import wait_for

pytestmark = pytest.mark.lab

CERT = "control_plane_health_check_client_cert_path"
KEY = "control_plane_health_check_client_key_path"


def serial(cert: Path) -> str:
    """The serial as the apiserver records it: ssl's getpeercert() hex, an even number of digits
    (OpenSSL pads an odd-length one with a leading 0)."""
    digits = f"{x509.load_pem_x509_certificate(cert.read_bytes()).serial_number:X}"
    return digits.zfill(len(digits) + len(digits) % 2)


def metric(text: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not label or label in line) and not line.startswith("#"):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def presented_next(api: Apiserver, n: int) -> set[str]:
    """The serials of the client certificates presented in the next `n` requests."""
    before = api.stats()
    wait_for(lambda: api.stats().requests >= before.requests + n, 10, 0.1, what="more checks")
    after = api.stats().clients
    return {k for k, v in after.items() if v > before.clients.get(k, 0)}


def renew(src_cert: Path, src_key: Path, cert: Path, key: Path) -> None:
    """Write beside, then rename over: the key first, then the certificate."""
    for src, dst in ((src_key, key), (src_cert, cert)):
        tmp = dst.with_name(dst.name + ".new")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def test_client_certificate_renewed_on_disk_is_used_without_a_restart() -> None:
    with Lab() as lab:
        c = Cluster.create(
            lab, n_nodes=1, period=0.2, timeout=1.0, metrics=True,
            apiserver_kwargs={"client_auth": True},
        )  # fmt: skip
        v1 = make_client_cert(c.pki, "v1", "vipgate", ["system:vipgate"])
        v2 = make_client_cert(c.pki, "v2", "vipgate", ["system:vipgate"])
        v3 = make_client_cert(c.pki, "v3", "vipgate", ["system:vipgate"])
        d = lab.workdir / "kubelet-pki"
        d.mkdir()
        cert, key = d / "client.crt", d / "client.key"
        shutil.copyfile(v1[0], cert)
        shutil.copyfile(v1[1], key)
        c.start("node1", {CERT: str(cert), KEY: str(key)})
        ip = c.ip("node1")
        c.wait_nexthops({ip}, timeout=20)
        api = c.apiservers["node1"]
        wait_for(lambda: serial(v1[0]) in api.stats().clients, 5, 0.1, what="v1 presented")

        renew(*v2, cert, key)
        wait_for(lambda: serial(v2[0]) in api.stats().clients, 10, 0.1, what="v2 presented")
        assert presented_next(api, 10) == {serial(v2[0])}  # only v2 from now on
        m = c.scrape("node1")
        assert metric(m, "vipgate_tls_reloads_total") == 1, m
        assert metric(m, "vipgate_tls_reload_success") == 1
        assert metric(m, "vipgate_probe_results_total") == metric(
            m, "vipgate_probe_results_total", 'outcome="ok"'
        )  # no failed check
        assert metric(m, "vipgate_gate_transitions_total") == 1  # the first announcement only
        assert c.nexthops() == {ip}

        # a half-written certificate: v2 stays in use, reported once
        cert.write_bytes(v3[0].read_bytes()[:200])
        wait_for(
            lambda: metric(c.scrape("node1"), "vipgate_tls_reload_success", "") == 0,
            10, 0.1, what="the failed load reported",
        )  # fmt: skip
        assert presented_next(api, 10) == {serial(v2[0])}
        log = c.log("node1")
        assert log.count("TLS files changed on disk but do not load") == 1, log
        renew(*v3, cert, key)
        wait_for(lambda: serial(v3[0]) in api.stats().clients, 10, 0.1, what="v3 presented")
        m = c.scrape("node1")
        assert metric(m, "vipgate_tls_reload_success") == 1
        assert metric(m, "vipgate_tls_reload_errors_total") >= 1
        assert metric(m, "vipgate_gate_transitions_total") == 1  # the route never moved
        assert c.nexthops() == {ip}
        assert c.stop("node1") == 0
