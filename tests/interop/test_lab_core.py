"""The lab itself: topology, forwarding, BIRD ECMP, cleanup and the stale sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.netns import MARKER_DIR, Lab, _proc_start_time, list_netns, make_tag, sweep_stale
from lab.routemon import RouteWatch, exactly
from lab.routers import BirdRouter, Neighbor
from lab.topology import (
    CLIENT_IP4,
    NODE_AS,
    ROUTER_AS,
    ROUTER_IP4,
    VIP4,
    VIP4_ADDR,
    VIP6,
    build_topology,
)
from lab.wait import LabTimeout, wait_for

pytestmark = pytest.mark.lab


def _pids_in(ns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def test_topology_forwards_and_has_no_outside_route() -> None:
    before = _host_links()
    with Lab() as lab:
        topo = build_topology(lab, 2, router_kind=None)
        assert all(len(ns) <= 32 and ns.startswith(lab.tag) for ns in lab.namespaces)
        # Nothing went into the host namespace (ours would be named n1, n2, c0, br0, eth0).
        assert not (_host_links() - before) & {"n1", "n2", "c0", "br0", "eth0"}
        n1, n2 = topo.nodes
        assert topo.ping(topo.client_ns, n1.ip4)
        assert topo.ping(topo.client_ns, n2.ip6)
        assert topo.ping(n1.ns, CLIENT_IP4)
        # The router's only routes are the lab's own segments.
        routes = lab.ip_json(topo.router_ns, "route", "show")
        assert all(r["dst"] != "default" for r in routes)
        assert (
            lab.run(
                topo.router_ns, ["sysctl", "-n", "net.ipv4.fib_multipath_hash_policy"]
            ).stdout.strip()
            == "1"
        )
        # No route to anywhere outside the lab from a node.
        assert not topo.ping(n1.ns, "198.18.0.1", timeout=0.3)


def test_bird_ecmp_from_two_bgp_nodes_and_client_reaches_vip() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 3, "bird")
        router = topo.router
        assert isinstance(router, BirdRouter)
        speakers = []
        for n in topo.nodes[:2]:
            b = BirdRouter(
                lab,
                n.ns,
                asn=NODE_AS,
                router_id=n.ip4,
                name=f"speaker-{n.name}",
                neighbors=[Neighbor(ROUTER_IP4, ROUTER_AS)],
                originate=[VIP4],
                kernel_export=False,
            )
            b.start()
            speakers.append(b)
            topo.add_vip(n)
        for n in topo.nodes[:2]:
            router.wait_session(n.ip4)
        assert router.session_state(topo.nodes[2].ip4) != "Established"
        router.wait_kernel_nexthops(VIP4, {topo.nodes[0].ip4, topo.nodes[1].ip4})
        paths = router.rib(VIP4)
        assert {p.next_hop for p in paths} == {topo.nodes[0].ip4, topo.nodes[1].ip4}
        assert all(p.as_path == (NODE_AS,) for p in paths)
        assert topo.ping(topo.client_ns, VIP4_ADDR)
        # A killed speaker's route goes at once (TCP closed by the kernel).
        speakers[0].kill()
        router.wait_kernel_nexthops(VIP4, {topo.nodes[1].ip4}, timeout=3)
        assert topo.kernel_nexthops(VIP4) == {topo.nodes[1].ip4}


def test_cleanup_on_exception_leaves_nothing_behind() -> None:
    tag = ""
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        tag = lab.tag
        topo = build_topology(lab, 1, "bird")
        assert topo.router is not None and topo.router.pid is not None
        pids = _pids_in(topo.router_ns)
        assert pids
        lab.popen(topo.nodes[0].ns, ["sleep", "30"])
        raise RuntimeError("boom")
    assert tag and not [ns for ns in list_netns() if ns.startswith(tag)]
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), pid
    assert not (MARKER_DIR / f"{tag}.json").exists()


CHILD = (
    "import sys, time; sys.path.insert(0, '.')\n"
    "from lab.netns import Lab\n"
    "with Lab() as lab:\n"
    "    ns = lab.add_netns('x'); p = lab.popen(ns, ['sleep', '30'])\n"
    "    print(lab.tag, p.pid, flush=True); time.sleep(30)\n"
)


def _start_child() -> tuple[subprocess.Popen[str], str, int]:
    p = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    tag, pid = p.stdout.readline().split()
    assert tag.startswith("vg") and f"{tag}-x" in list_netns()
    return p, tag, int(pid)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cleanup_when_the_creating_process_is_signalled(sig: signal.Signals) -> None:
    p, tag, sleeper = _start_child()
    try:
        p.send_signal(sig)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert f"{tag}-x" not in list_netns()
    assert _gone(sleeper)


def test_killed_creator_children_die_and_next_lab_sweeps() -> None:
    p, tag, sleeper = _start_child()
    p.kill()
    p.wait(10)
    wait_for(lambda: _gone(sleeper), 3, what="PR_SET_PDEATHSIG took the child along")
    # Nobody cleaned up (SIGKILL); a parallel run's sweep may already have. Either way:
    with Lab():  # a new Lab sweeps stale runs
        assert f"{tag}-x" not in list_netns()


def test_stale_sweep_removes_dead_runs_only() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale_tag = make_tag(pid=dead.pid, n=1)
    live_tag = make_tag()  # this process: alive
    created = []
    try:
        MARKER_DIR.mkdir(parents=True, exist_ok=True)
        for tag, pid in ((stale_tag, dead.pid), (live_tag, os.getpid())):
            start = _proc_start_time(pid) or "1"
            (MARKER_DIR / f"{tag}.json").write_text(json.dumps({"pid": pid, "start": start}))
            subprocess.run(["ip", "netns", "add", f"{tag}-a"], check=True)
            created.append(f"{tag}-a")
        t0 = time.monotonic()
        removed = sweep_stale()
        # (another run's sweep may have removed the stale one first: check the outcome)
        assert f"{live_tag}-a" not in removed
        assert f"{stale_tag}-a" not in list_netns()
        assert f"{live_tag}-a" in list_netns()
        assert time.monotonic() - t0 < 10
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for tag in (stale_tag, live_tag):
            (MARKER_DIR / f"{tag}.json").unlink(missing_ok=True)


def test_route_monitor_timestamps_nexthop_changes() -> None:
    with Lab() as lab:
        topo = build_topology(lab, 2, router_kind=None)
        r = topo.router_ns
        with RouteWatch(lab, r, VIP4) as w4, RouteWatch(lab, r, VIP6) as w6:
            assert w4.current() == frozenset()
            t0 = time.monotonic()
            lab.ip(
                r,
                "route",
                "add",
                VIP4,
                "nexthop",
                "via",
                "192.0.2.11",
                "nexthop",
                "via",
                "192.0.2.12",
            )
            t_add = w4.first(exactly({"192.0.2.11", "192.0.2.12"}), t0, 10.0)
            lab.ip(r, "route", "replace", VIP4, "via", "192.0.2.12")
            t_one = w4.first(exactly({"192.0.2.12"}), t_add, 10.0)
            lab.ip(r, "route", "del", VIP4)
            t_gone = w4.first(exactly(set()), t_one, 10.0)
            assert t0 <= t_add <= t_one <= t_gone <= time.monotonic()
            v6 = ["2001:db8:0:1::11", "2001:db8:0:1::12"]
            lab.ip(r, "-6", "route", "add", VIP6, "nexthop", "via", v6[0], "nexthop", "via", v6[1])
            w6.first(exactly(set(v6)), t_gone, 10.0)
            lab.ip(r, "-6", "route", "del", VIP6, "via", v6[0])
            w6.first(exactly({v6[1]}), t_gone, 10.0)
            with pytest.raises(LabTimeout):
                w4.wait(exactly({"192.0.2.13"}), 0.2)
        assert w4.proc is not None and w4.proc.poll() is not None
        assert w6.proc is not None and w6.proc.poll() is not None


def test_route_monitor_keeps_a_state_that_lasted_microseconds(tmp_path: Path) -> None:
    """Two IPv4 changes the kernel makes back to back (one ``ip -batch``: no read can fall
    between them) both show in the timeline: the one-hop state between two equal ECMP sets is
    what resets connections in flight (a node re-announcing plainly before the others do)."""
    both = ["nexthop", "via", "192.0.2.11", "nexthop", "via", "192.0.2.13"]
    batch = tmp_path / "changes"
    batch.write_text(
        f"route replace {VIP4} via 192.0.2.11\nroute replace {VIP4} {' '.join(both)}\n"
    )
    with Lab() as lab:
        topo = build_topology(lab, 3, router_kind=None)
        r = topo.router_ns
        lab.ip(r, "route", "add", VIP4, *both)
        with RouteWatch(lab, r, VIP4) as w:
            assert w.current() == frozenset({"192.0.2.11", "192.0.2.13"})
            t0 = time.monotonic()
            lab.ip(r, "-batch", str(batch))
            t_one = w.first(exactly({"192.0.2.11"}), t0, 10.0)
            t_both = w.first(exactly({"192.0.2.11", "192.0.2.13"}), t0, 10.0)
            assert t0 <= t_one <= t_both <= time.monotonic()
            assert [sorted(x.hops) for x in w.samples] == [
                ["192.0.2.11", "192.0.2.13"],
                ["192.0.2.11"],
                ["192.0.2.11", "192.0.2.13"],
            ]
