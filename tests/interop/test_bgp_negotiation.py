"""OPEN negotiation against FRR 8.4: strict capability matching (RFC 5492 section 3), RFC 9072.

FRR with ``neighbor X strict-capability-match`` and only IPv4 unicast activated answers an OPEN
that offers IPv6 unicast with NOTIFICATION 2/7 naming that capability; with
``extended-optional-parameters`` it sends its OPEN in RFC 9072's extended encoding, on the
connections vipgate dials and on those FRR opens to vipgate's listener alike.
"""

from __future__ import annotations

import contextlib
import json
import queue
import select
import sys
import time
from collections.abc import Iterator
from subprocess import PIPE
from typing import Any

import pytest

from lab.netns import Lab
from lab.routers import FrrRouter, Neighbor
from lab.speaker import SpeakerProc
from lab.topology import NODE_AS, ROUTER_AS, ROUTER_IP4, VIP4, Topology, build_topology

pytestmark = pytest.mark.lab

PEER = f"{ROUTER_IP4}:{ROUTER_AS}::false"


@pytest.fixture(scope="module")
def frr() -> Iterator[tuple[Topology, FrrRouter]]:
    """node1, node2: strict capability matching, IPv4 unicast only; node3: extended OPEN."""
    with Lab() as lab:
        topo = build_topology(lab, 3, None, client=False)
        n1, n2, n3 = topo.nodes
        strict = {"families": (4,), "strict_capabilities": True}
        router = FrrRouter(
            lab,
            topo.router_ns,
            asn=ROUTER_AS,
            router_id=ROUTER_IP4,
            neighbors=[
                Neighbor(n1.ip4, NODE_AS, **strict),  # type: ignore[arg-type]
                Neighbor(n2.ip4, NODE_AS, **strict),  # type: ignore[arg-type]
                Neighbor(n3.ip4, NODE_AS, extended_open=True),
            ],
        )
        router.start()
        yield topo, router


def test_strict_router_ipv4_only(frr: tuple[Topology, FrrRouter]) -> None:
    topo, router = frr
    n1, n2, _ = topo.nodes
    # node1 as kube-vip would be configured: offers IPv4 unicast only, no NOTIFICATION at all.
    # node2 with MP-BGP settings offers IPv6 too: refused with 2/7, retried without it.
    mp = f"{PEER}::mpbgp_nexthop=fixed;mpbgp_ipv6=[{n2.ip6}]"
    s1 = SpeakerProc(topo.lab, n1, [PEER], announce=[VIP4])
    s2 = SpeakerProc(topo.lab, n2, [mp], announce=[VIP4])
    router.wait_next_hops(VIP4, {n1.ip4, n2.ip4}, timeout=15.0)
    assert "NOTIFICATION" not in s1.log(), s1.log()
    log2 = s2.log()
    assert (
        "the router refuses capabilities (NOTIFICATION Unsupported Capability): "
        "Multiprotocol IPv6 unicast; retrying without them (RFC 5492); "
        "families offered now: IPv4 unicast" in log2
    ), log2
    assert log2.count("refuses capabilities") == 1, log2  # once: the next OPEN was accepted
    assert "Established" in log2 and "(data " not in log2
    s1.close()
    s2.close()


def test_rfc9072_extended_open_from_frr(frr: tuple[Topology, FrrRouter]) -> None:
    topo, router = frr
    n3 = topo.nodes[2]
    # Dialing only: a connection FRR opens to us meanwhile would carry our standard OPEN again
    # before FRR's own OPEN taught us its encoding (a second 2/0, then success).
    s3 = SpeakerProc(topo.lab, n3, [PEER], announce=[VIP4], extra=["--no-listen"])
    router.wait_session(n3.ip4)
    router.wait_rib(VIP4, lambda ps: n3.ip4 in {p.next_hop for p in ps})
    log3 = s3.log()
    assert "OPEN from AS 65001 id 192.0.2.1, hold 30 s (RFC 9072 extended parameters)" in log3
    # FRR 8.4 misreads a standard OPEN (2/0). Each connection starts with our OPEN, so the
    # connection on which FRR's extended OPEN first arrives may still end in that 2/0 (and one
    # before it too, if FRR answered ours before sending its own); every connection after it
    # mirrors FRR's encoding and is accepted at once.
    attempts = log3.split("-> OpenSent (TCP connected")[1:]
    learnt = next(i for i, a in enumerate(attempts) if "RFC 9072 extended parameters" in a)
    assert learnt <= 1, log3
    later = attempts[learnt + 1 :]
    assert all("NOTIFICATION" not in a for a in later), log3
    established = [i for i, a in enumerate(attempts) if "-> Established" in a]
    assert established and established[0] <= learnt + 1, log3
    assert log3.count("received NOTIFICATION OPEN Message Error/Unspecific") <= learnt + 1, log3
    s3.close()


# The BGP OPENs on a node's eth0, one JSON line each: sent by the node ("ours") or to it, the
# connection (the port that is not 179) and whether the OPEN is in RFC 9072's extended encoding
# (section 2: Non-Ext OP Len 255, Non-Ext OP Type 255).
SNIFF = r"""
import json, socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
me = socket.inet_aton(sys.argv[2])
print("ready", flush=True)
while True:
    f = s.recv(65535)
    if f[12:14] != b"\x08\x00" or f[23] != 6:
        continue
    ip = f[14 : 14 + struct.unpack("!H", f[16:18])[0]]
    tcp = ip[(ip[0] & 15) * 4 :]
    ports = struct.unpack("!HH", tcp[:4])
    if 179 not in ports:
        continue
    data, i = tcp[(tcp[12] >> 4) * 4 :], 0
    while len(data) >= i + 19 and data[i : i + 16] == b"\xff" * 16:
        size, kind = struct.unpack("!HB", data[i + 16 : i + 19])
        if kind == 1 and len(data) >= i + 29:
            print(json.dumps({"t": time.monotonic(), "ours": ip[12:16] == me,
                              "conn": ports[1] if ports[0] == 179 else ports[0],
                              "extended": data[i + 28 : i + 30] == b"\xff\xff"}), flush=True)
        i += max(size, 19)
"""
CLOSED_PORT = 1179  # nothing listens there on the router
# From vipgate's start to Established: FRR's dials, whose interval doubles after each failed
# attempt (measured: 2.9 s alone, 5.9 s after the tests above).
UP_WITHIN = 12.0
ANSWER_WITHIN = 1.0  # from the first OPEN on the session's connection to Established


def test_rfc9072_extended_open_to_vipgates_listener(frr: tuple[Topology, FrrRouter]) -> None:
    """FRR dials vipgate's listener with its extended OPEN. vipgate's own dials go to a port
    where FRR does not listen (the peer's port field), so every connection is FRR's. What vipgate
    controls: its OPEN on every connection after the one that brought FRR's first OPEN is in
    FRR's encoding (docs/design.md, "Protocol scope": learnt from any of its OPENs), the
    session is up within ANSWER_WITHIN of that connection's first OPEN (and UP_WITHIN of the
    start), and vipgate sends no NOTIFICATION. FRR 8.4 may answer our first, standard OPEN with
    2/0, when and as often as it does: not counted."""
    topo, router = frr
    lab, n3 = topo.lab, topo.nodes[2]
    sniff = lab.popen(n3.ns, [sys.executable, "-c", SNIFF, "eth0", n3.ip4], stdout=PIPE)
    sp: SpeakerProc | None = None
    try:
        assert sniff.stdout is not None
        assert select.select([sniff.stdout], [], [], 10.0)[0], "sniffer not ready"
        assert sniff.stdout.readline() == b"ready\n"
        t0 = time.monotonic()
        peer = f"{ROUTER_IP4}:{ROUTER_AS}::false:{CLOSED_PORT}"
        sp = SpeakerProc(lab, n3, [peer], announce=[VIP4])
        events: list[dict[str, Any]] = []
        while time.monotonic() < t0 + UP_WITHIN and not any(
            e["ev"] == "state" and e["state"] == "Established" for e in events
        ):
            with contextlib.suppress(queue.Empty):
                events.append(sp.events.get(timeout=0.1))
        log3 = sp.log()
        up = [e["t"] for e in events if e["ev"] == "state" and e["state"] == "Established"]
        assert up and up[0] - t0 <= UP_WITHIN, log3
        router.wait_rib(VIP4, lambda ps: n3.ip4 in {p.next_hop for p in ps})
        while not sp.events.empty():
            events.append(sp.events.get())
        assert not [e for e in events if e["ev"] == "notification_sent"], log3
        assert "sent NOTIFICATION" not in log3, log3
        assert "OpenSent (TCP connection from the peer" in log3, log3
        assert "-> OpenSent (TCP connected" not in log3, log3
    finally:
        lab.stop(sniff)
        if sp is not None:
            sp.close()
    assert sniff.stdout is not None
    opens = [json.loads(line) for line in sniff.stdout.read().splitlines()]
    conns = list(dict.fromkeys(o["conn"] for o in opens))  # in the order they began
    frr_first = min(conns.index(o["conn"]) for o in opens if not o["ours"] and o["extended"])
    ours = {o["conn"]: o["extended"] for o in opens if o["ours"]}  # one OPEN per connection
    later = [c for c in conns[frr_first + 1 :] if c in ours]
    assert all(ours[c] for c in later), (opens, log3)
    assert conns[-1] in ours and ours[conns[-1]], (opens, log3)  # the session's connection
    began = min(o["t"] for o in opens if o["conn"] == conns[-1])
    assert up[0] - began <= ANSWER_WITHIN, (up[0] - began, opens, log3)
