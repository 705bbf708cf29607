"""`vipgate check` (the real command, as a process) against the lab's fake kube-apiserver.

The fake apiserver (``python -m lab.apiserver``) runs as a process of its own on loopback with a
kubeadm-shaped certificate from ``lab.pki`` (it names kubernetes..., node1 and 192.0.2.11, not
127.0.0.1), and each failure class is switched on through its control socket. No namespaces
needed: loopback only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.apiserver import ApiserverControl
from lab.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    pki: Pki
    port: int
    control: ApiserverControl

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/livez"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("check-lab")
    pki = make_pki(d / "pki", [("node1", ["192.0.2.11"])])
    node = pki.node("node1")
    port = _free_port()
    ctl_path = d / "apiserver.ctl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab.apiserver",
            "--cert",
            str(node.cert),
            "--key",
            str(node.key),
            "--control",
            str(ctl_path),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    control = ApiserverControl(ctl_path, timeout=5.0)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"fake apiserver exited: {err}")
            try:
                if ctl_path.exists() and control.ping():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("fake apiserver not ready within 15 s")
            time.sleep(0.05)
        yield Server(pki, port, control)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def vipgate_check(*flags: str) -> tuple[int, str, str]:
    # A clean environment: only what Python needs, no kube-vip variables from this shell.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    cp = subprocess.run(
        [sys.executable, "-m", "vipgate", "check", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    return cp.returncode, cp.stdout, cp.stderr


def _flags(server: Server, *, ca: str | None = None, name: str | None = "kubernetes") -> list[str]:
    out = [
        "--controlPlaneHealthCheckAddress",
        server.url,
        "--controlPlaneHealthCheckTimeoutSeconds",
    ]
    out.append("1")
    if ca != "":
        out += ["--controlPlaneHealthCheckCAPath", ca or str(server.pki.ca_cert)]
    if name:
        out += ["--controlPlaneHealthCheckServerName", name]
    return out


CASES = [
    # id, apiserver mode, flag variant, exit code, substrings of stdout
    ("healthy", "healthy", {}, 0, ["HEALTHY: HTTP 200", "issued by CN=kubernetes"]),
    (
        "hostname-trap",
        "healthy",
        {"name": None},
        1,
        ["does not name '127.0.0.1'", "control_plane_health_check_server_name=kubernetes"],
    ),
    ("wrong-ca", "healthy", {"ca": "other"}, 1, ["another cluster's CA or an outdated copy"]),
    ("no-ca", "healthy", {"ca": ""}, 1, ["no CA file is set", "/etc/kubernetes/pki/ca.crt"]),
    ("500", "fail", {}, 1, ["HTTP 500", "[-]etcd failed", "first lines of the body"]),
    ("401", "unauthorized", {}, 1, ["anonymous access refused (HTTP 401"]),
    ("403", "forbidden", {}, 1, ["anonymous access refused (HTTP 403"]),
    ("timeout", "hang", {}, 1, ["UNHEALTHY: timeout", "no answer within 1 s"]),
    ("refused", "refuse", {}, 1, ["UNHEALTHY: connection refused", "start kube-apiserver"]),
]


@pytest.mark.parametrize(
    ("mode", "variant", "code", "needles"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_each_failure_class(
    server: Server, mode: str, variant: dict[str, str | None], code: int, needles: list[str]
) -> None:
    server.control.set_mode(mode)
    try:
        ca = variant.get("ca")
        if ca == "other":
            ca = str(server.pki.other_ca_cert)
        name = variant.get("name", "kubernetes")
        rc, out, err = vipgate_check(*_flags(server, ca=ca, name=name))
    finally:
        server.control.set_mode("healthy")
    assert rc == code, out + err
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"
    if code:
        assert "\ncause:" in out and "\nfix:" in out


def test_not_configured_exits_2() -> None:
    rc, out, err = vipgate_check()
    assert rc == 2
    assert out == ""
    assert "no health check is configured" in err
