"""The lab load client against a 3-node vipgate cluster behind the BIRD ECMP router."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from lab.client import LoadClient, classify_exception, parse_status, summarize
from lab.cluster import Cluster
from lab.netns import Lab

pytestmark = pytest.mark.lab

ALL = {"192.0.2.11", "192.0.2.12", "192.0.2.13"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Lab() as lab:
        c = Cluster.create(lab, 3, period=1, timeout=1, threshold=3, hold=9)
        c.start_all()
        c.wait_nexthops(ALL, timeout=20)
        yield c
        for name in list(c.vipgates):
            c.stop(name)


def client(c: Cluster, duration: float, name: str) -> LoadClient:
    return LoadClient(c.lab, c.topo.client_ns, c.pki.ca_cert, rate=50, duration=duration, name=name)


def test_requests_ok_and_spread_over_nodes(cluster: Cluster) -> None:
    lc = client(cluster, 3.0, "client-ok")
    t0 = lc.start()
    assert lc.wait() == 0
    start, reqs, end = lc.read()
    assert start is not None and end is not None
    s = summarize(reqs)
    # 50/s for 3 s: 150 scheduled (+1 at the boundary at most), every one recorded.
    assert 149 <= s.total <= 151, s
    assert end["sent"] == s.total
    assert s.failed == 0, s
    assert set(s.nodes) == {"node1", "node2", "node3"}, s
    # Per-flow hashing spreads new connections: no node gets (almost) everything.
    assert max(s.nodes.values()) < 0.8 * s.total, s
    assert all(r.t >= t0 for r in reqs)
    assert all(r.status == 200 and r.latency < 1.0 for r in reqs)


def test_refused_apiserver_counts_failures(cluster: Cluster) -> None:
    """node1's apiserver refuses: the requests hashed to node1 fail (refused) until vipgate
    withdraws node1's next hop; then all requests succeed on node2/node3."""
    api = cluster.apiservers["node1"]
    lc = client(cluster, 8.0, "client-refused")
    lc.start()
    try:
        t_fault = api.set_mode("refuse")
        cluster.wait_nexthops(ALL - {"192.0.2.11"}, timeout=10)
        lc.wait()
    finally:
        api.set_mode("healthy")
    reqs = lc.window(t_fault, t_fault + 8.0)
    s = summarize(reqs)
    assert s.failed > 0, s
    assert set(s.outcomes) <= {"ok", "refused", "reset"}, s
    assert "node1" not in {r.node for r in reqs if r.ok}
    # Failures only while node1 was still in the ECMP set (within a few seconds of the fault).
    last_fail = max(r.t for r in reqs if r.failed)
    assert last_fail - t_fault < 5.0
    assert s.ok > s.failed
    cluster.wait_nexthops(ALL, timeout=10)


def test_classify_and_parse() -> None:
    assert parse_status(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n") == 200
    assert parse_status(b"HTTP/1.1 500 Internal Server Error\r\n\r\n") == 500
    assert parse_status(b"garbage\r\n\r\n") is None
    assert classify_exception(ConnectionRefusedError())[0] == "refused"
    assert classify_exception(ConnectionResetError())[0] == "reset"
    assert classify_exception(TimeoutError())[0] == "timeout"


def test_rate_kept_while_requests_hang(cluster: Cluster) -> None:
    """Straight to node1's hanging apiserver: every request times out, yet the client keeps
    starting one every 1/rate seconds (one task per request, not one after another)."""
    api = cluster.apiservers["node1"]
    lc = LoadClient(
        cluster.lab,
        cluster.topo.client_ns,
        cluster.pki.ca_cert,
        host=cluster.ip("node1"),
        rate=50,
        duration=2.0,
        timeout=0.5,
        name="client-hang",
    )
    api.set_mode("hang")
    try:
        lc.start()
        assert lc.wait() == 0
    finally:
        api.set_mode("healthy")
    s = summarize(lc.records())
    assert 99 <= s.total <= 101, s
    assert s.outcomes == {"timeout": s.total}, s
    starts = [r.t for r in lc.records()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert max(gaps) < 0.2, max(gaps)  # never waited for a hanging request (0.5 s)
    assert starts[-1] - starts[0] < 2.5
    assert all(0.45 <= r.latency < 1.0 for r in lc.records())
    cluster.wait_nexthops(ALL, timeout=15)
