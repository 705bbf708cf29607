"""OPEN negotiation against FRR 8.4: strict capability matching (RFC 5492 section 3), RFC 9072.

FRR with ``neighbor X strict-capability-match`` and only IPv4 unicast activated answers an OPEN
that offers IPv6 unicast with NOTIFICATION 2/7 naming that capability; with
``extended-optional-parameters`` it sends its OPEN in RFC 9072's extended encoding.
"""

from __future__ import annotations

from collections.abc import Iterator

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
