"""The fake kube-apiserver as a real client sees it (curl and Python ssl, lab CA)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lab.apiserver import Apiserver, Startup, start_apiservers
from lab.netns import Lab
from lab.pki import Pki
from lab.topology import Topology, build_topology

pytestmark = pytest.mark.lab


@dataclass
class Env:
    lab: Lab
    topo: Topology
    pki: Pki
    api: Apiserver


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with Lab() as lab:
        topo = build_topology(lab, 1, router_kind=None)
        pki, servers = start_apiservers(topo)
        yield Env(lab, topo, pki, servers["node1"])


@pytest.fixture(autouse=True)
def healthy(env: Env) -> Iterator[None]:
    env.api.set_mode("healthy")
    yield
    env.api.set_mode("healthy")


def curl(env: Env, url: str, *extra: str, ns: str | None = None) -> tuple[int, str, str]:
    """(curl exit code, body + final status line, stderr) from the client namespace."""
    cmd = ["curl", "-sS", "-m", "2", "--cacert", str(env.pki.ca_cert), *extra]
    cmd += ["-w", "\n%{http_code}", url]
    cp = env.lab.run(ns or env.topo.client_ns, cmd, check=False, timeout=10)
    return cp.returncode, cp.stdout, cp.stderr


def url(env: Env, path: str = "/livez") -> str:
    return f"https://{env.topo.nodes[0].ip4}:6443{path}"


def test_healthy_ipv4_ipv6_and_verbose(env: Env) -> None:
    assert curl(env, url(env))[:2] == (0, "ok\n200")
    rc, out, _ = curl(env, f"https://[{env.topo.nodes[0].ip6}]:6443/livez")
    assert (rc, out) == (0, "ok\n200")
    rc, out, _ = curl(env, url(env, "/livez?verbose"))
    assert rc == 0 and "[+]ping ok" in out and "livez check passed" in out and out.endswith("200")


def test_fail_unauthorized_forbidden(env: Env) -> None:
    env.api.set_mode("fail")
    rc, out, _ = curl(env, url(env))
    assert rc == 0 and out.endswith("\n500")
    assert "[-]etcd failed: reason withheld" in out and "livez check failed" in out
    env.api.set_mode("unauthorized")
    rc, out, _ = curl(env, url(env))
    body, status = out.rsplit("\n", 1)
    assert (rc, status) == (0, "401")
    assert json.loads(body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    env.api.set_mode("forbidden")
    rc, out, _ = curl(env, url(env))
    body, status = out.rsplit("\n", 1)
    assert (rc, status) == (0, "403") and json.loads(body)["reason"] == "Forbidden"


def test_slow_hang_refuse_and_back(env: Env) -> None:
    env.api.set_mode("slow", delay_ms=400)
    t0 = time.monotonic()
    assert curl(env, url(env))[:2] == (0, "ok\n200")
    assert time.monotonic() - t0 >= 0.4
    env.api.control.reset()
    env.api.set_mode("hang")
    rc, _, err = curl(env, url(env), "-m", "1")
    assert rc == 28, err  # timed out after the TLS handshake
    st = env.api.stats()
    assert st.handshakes == 1 and st.requests == 1 and st.responses == 0
    before = time.monotonic()
    t = env.api.set_mode("refuse")
    assert before <= t <= time.monotonic()
    rc, _, err = curl(env, url(env))
    assert rc == 7, err  # connection refused
    assert not env.api.stats().listening
    env.api.set_mode("healthy")
    assert curl(env, url(env))[:2] == (0, "ok\n200")


def test_certificate_shape(env: Env) -> None:
    # Signed by an unrelated CA: verification fails.
    rc, _, err = curl(env, url(env), "--cacert", str(env.pki.other_ca_cert))
    assert rc == 60, err
    # kubeadm's certificate does not name localhost: the classic trap.
    node_ns = env.topo.nodes[0].ns
    rc, _, err = curl(env, "https://localhost:6443/livez", ns=node_ns)
    assert rc == 60 and "localhost" in err, err
    rc, _, err = curl(env, "https://127.0.0.1:6443/livez", ns=node_ns)
    assert rc == 60, err
    # ...but it names "kubernetes": connect to loopback, verify against that name.
    rc, out, err = curl(
        env, "https://kubernetes:6443/livez", "--resolve", "kubernetes:6443:127.0.0.1", ns=node_ns
    )
    assert (rc, out) == (0, "ok\n200"), err


CLIENT = r"""
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
s = ctx.wrap_socket(socket.create_connection((sys.argv[2], 6443), timeout=5),
                    server_hostname="kubernetes")
f = s.makefile("rb")
for _ in range(3):
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: kubernetes\r\n\r\n")
    status = f.readline().split()[1].decode()
    length = 0
    while (line := f.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    f.read(length)
    print(status, flush=True)
sys.stdin.readline()
try:
    print("eof" if f.read(1) == b"" else "data", flush=True)
except OSError as e:
    print("error", type(e).__name__, flush=True)
"""


def test_keepalive_counts_and_refuse_closes_open_connections(env: Env) -> None:
    env.api.control.reset()
    p = env.lab.popen(
        env.topo.client_ns,
        [sys.executable, "-c", CLIENT, str(env.pki.ca_cert), env.topo.nodes[0].ip4],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdin is not None
        assert [p.stdout.readline().strip() for _ in range(3)] == ["200", "200", "200"]
        st = env.api.stats()
        assert (st.handshakes, st.requests, st.open) == (1, 3, 1)
        time.sleep(0.3)
        assert env.api.stats().open == 1  # idle keep-alive connection stays open
        env.api.set_mode("refuse")
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().split()[0] in ("eof", "error")
        assert p.wait(5) == 0
    finally:
        env.lab.stop(p)


def test_shutdown_sequence_as_curl_sees_it(env: Env) -> None:
    t0 = env.api.shutdown(1.0, retry_after=True, drain=1.0)
    rc, out, _ = curl(env, url(env, "/readyz"))
    assert rc == 0 and out.endswith("\n500") and "[-]shutdown failed: reason withheld" in out
    assert curl(env, url(env))[:2] == (0, "ok\n200")
    assert curl(env, url(env, "/readyz/shutdown"))[1].endswith("\n403")
    while time.monotonic() < t0 + 1.2:
        time.sleep(0.05)
    rc, out, _ = curl(env, url(env, "/version"), "-i")
    assert rc == 0 and out.endswith("\n429") and "Retry-After: 5" in out, out
    assert curl(env, url(env))[:2] == (0, "ok\n200")  # /livez still answers
    while env.api.stats().shutdown_phase != "stopped" and time.monotonic() < t0 + 5:
        time.sleep(0.05)
    rc, _, err = curl(env, url(env))
    assert rc == 7, err  # refused
    st = env.api.stats()
    assert st.stopped_t is not None and st.stopped_t - t0 >= 2.0
    assert st.retry_after_t is not None and 1.0 <= st.retry_after_t - t0 < st.stopped_t - t0


def test_sigkill_closes_kept_alive_connections_and_start_again(env: Env) -> None:
    p = env.lab.popen(
        env.topo.client_ns,
        [sys.executable, "-c", CLIENT, str(env.pki.ca_cert), env.topo.nodes[0].ip4],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None and p.stdin is not None
        assert [p.stdout.readline().strip() for _ in range(3)] == ["200", "200", "200"]
        env.api.kill()
        assert env.api.pid is None
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().split()[0] in ("eof", "error")
        rc, _, err = curl(env, url(env))
        assert rc == 7, err
    finally:
        env.lab.stop(p)
        if env.api.pid is None:
            env.api.start()
    assert curl(env, url(env))[:2] == (0, "ok\n200")


def test_restart_with_the_real_startup_as_curl_sees_it(env: Env) -> None:
    """403 (RBAC not loaded), then 500 naming the post-start hooks, then 200."""
    env.api.kill()
    try:
        env.api.start(startup=Startup((0.4, 0.4), (0.4, 0.4)))
        seen: list[tuple[str, str]] = []
        while not seen or seen[-1][0] != "200":
            rc, out, err = curl(env, url(env))
            assert rc == 0, err
            body, status = out.rsplit("\n", 1)
            if not seen or seen[-1][0] != status:
                seen.append((status, body))
            assert len(seen) <= 3, seen
    finally:
        if env.api.pid is None:
            env.api.start()
    assert [s for s, _ in seen] == ["403", "500", "200"], seen
    assert json.loads(seen[0][1])["message"] == (
        'forbidden: User "system:anonymous" cannot get path "/livez"'
    )
    assert "[-]poststarthook/rbac/bootstrap-roles failed: reason withheld" in seen[1][1]
    assert "[-]poststarthook/scheduling/bootstrap-system-priority-classes failed" in seen[1][1]
    assert "[+]etcd ok" in seen[1][1] and seen[1][1].endswith("livez check failed\n")
    st = env.api.wait_started()
    assert st.startup_t is not None and st.startup_done_t is not None
    assert st.startup_done_t - st.startup_t == pytest.approx(0.8, abs=0.1)
    assert st.startup_done_t <= st.first_200_t["/livez"]
