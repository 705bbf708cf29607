"""Write the starting corpora (``python -m fuzz.seeds``): valid inputs of every shape, from our
own encoders, the lab apiserver's answers and the settings of docs/configuration.md.
Deterministic file names."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

from vipgate.bgp import wire as w

ROOT = Path(__file__).parent / "corpus"


def bgp_seeds() -> Iterable[bytes]:
    pol2 = w.OutboundPolicy(local_as=65000, ebgp=True, as4=False)
    pol4 = w.OutboundPolicy(local_as=4200000000, ebgp=True, as4=True, med=10, communities=(1,))
    ibgp = w.OutboundPolicy(local_as=65000, ebgp=False, as4=True)
    v4 = [IPv4Network("203.0.113.100/32"), IPv4Network("198.51.100.0/24")]
    v6 = [IPv6Network("2001:db8:100::100/128"), IPv6Network("2001:db8::/32")]
    caps: tuple[w.Capability, ...] = (
        w.MultiprotocolCapability(w.AFI_IPV4, w.SAFI_UNICAST),
        w.MultiprotocolCapability(w.AFI_IPV6, w.SAFI_UNICAST),
        w.RouteRefreshCapability(),
        w.FourOctetAsCapability(4200000000),
        w.UnknownCapability(64, b"\x00\x78"),
    )
    msgs: list[tuple[bool, bytes]] = [
        (False, w.encode(w.Open(65000, 9, IPv4Address("192.0.2.11"), caps))),
        (False, w.encode(w.Open(65001, 0, IPv4Address("192.0.2.1")))),
        (False, w.encode_open_extended(w.Open(23456, 90, IPv4Address("192.0.2.1"), caps))),
        (False, w.encode(w.Keepalive())),
        (False, w.encode(w.Notification.shutdown("vipgate shutting down"))),
        (False, w.encode(w.Notification(3, 1, b""))),
        (False, w.encode(w.RouteRefresh(w.AFI_IPV4, w.SAFI_UNICAST))),
        (False, w.encode(w.RouteRefresh(w.AFI_IPV6, w.SAFI_UNICAST, 1))),
        (False, w.announce_ipv4(v4, IPv4Address("192.0.2.11"), pol2)[0]),
        (True, w.announce_ipv4(v4, IPv4Address("192.0.2.11"), pol4)[0]),
        (True, w.announce_ipv4(v4, IPv4Address("192.0.2.11"), ibgp)[0]),
        (True, w.announce_ipv6(v6, IPv6Address("2001:db8:0:1::11"), pol4)[0]),
        (
            True,
            w.announce_ipv6(v6, IPv6Address("2001:db8:0:1::11"), pol4, IPv6Address("fe80::1"))[0],
        ),
        (False, w.withdraw_ipv4(v4)[0]),
        (True, w.withdraw_ipv6(v6)[0]),
        (False, w.encode(w.Update())),  # End-of-RIB IPv4
    ]
    for as4, m in msgs:
        yield bytes([int(as4), 0]) + m  # stream mode, one message
        yield bytes([int(as4) | 2, m[18] % 7]) + m[19:]  # framed body of the same type
    # a stream of several messages, split at many points
    stream = b"".join(m for _, m in msgs[:4]) + msgs[8][1] + msgs[3][1]
    yield bytes([0, 7]) + stream
    yield bytes([1, 200]) + b"".join(m for as4, m in msgs if as4)


def http_seeds() -> Iterable[bytes]:
    from lab.apiserver import check_list

    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    fail = check_list("livez", ("etcd",))
    shut = check_list("readyz", ("shutdown",))
    f500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % len(fail) + fail
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok"
    redirect = (
        b"HTTP/1.1 301 Moved\r\nLocation: https://kubernetes:6443/x\r\nContent-Length: 0\r\n\r\n"
    )
    cont = b"HTTP/1.1 100 Continue\r\n\r\n" + ok
    sep = b"\r\n\x00NEXT\x00\r\n"
    close_sep = b"\r\n\x00CLOSE\x00\r\n"
    for flags in (0, 1, 3, 4, 8):
        yield bytes([flags, 1]) + ok
        yield bytes([flags, 7]) + ok + sep + f500 + sep + ok
    yield bytes([0, 0]) + f500
    yield bytes([8, 0]) + ok + sep + b"HTTP/1.1 500 Internal Server Error\r\n\r\n" + shut
    yield bytes([4, 3]) + chunked + sep + chunked
    yield bytes([0, 0]) + close + sep + ok
    yield bytes([1, 5]) + ok + close_sep + f500 + close_sep + ok
    yield bytes([0, 0]) + redirect + sep + cont
    yield bytes([2, 0]) + b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok"  # short body, hang
    yield bytes([0, 0]) + b"HTTP/1.0 200 OK\r\n\r\nok"
    yield (
        bytes([0, 0])
        + b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nConnection: close\r\n\r\n"
    )


def config_seeds() -> Iterable[bytes]:
    base = {
        "vip_interface": "lo",
        "cp_enable": "true",
        "bgp_enable": "true",
        "bgp_as": "65000",
        "bgp_routerid": "192.0.2.11",
        "bgp_peers": "192.0.2.1:65001:secret-pw:true:179",
        "address": "203.0.113.100",
        "control_plane_health_check_address": "https://localhost:6443/livez",
        "control_plane_health_check_period_seconds": "1",
        "control_plane_health_check_timeout_seconds": "0.5",
        "control_plane_health_check_failure_threshold": "3",
        "control_plane_health_check_server_name": "kubernetes",
        "prometheus_server": ":2112",
    }

    def env(d: dict[str, str]) -> bytes:
        return "".join(f"{k}={v}\n" for k, v in d.items()).encode()

    yield env(base)
    v6 = {**base, "address": "2001:db8:100::100", "vip_subnet": "128"}
    yield env({**v6, "bgp_peers": "[2001:db8:0:1::1]:65001::false,[2001:db8:0:1::2]:65002"})
    mp = "::false::mpbgp_nexthop=fixed;mpbgp_ipv6=[2001:db8:0:1::11]:true;300;300;3"
    yield env({**v6, "bgp_peers": "192.0.2.1:65001" + mp})
    yield env(
        {
            **v6,
            "bgp_peers": "192.0.2.1:65001::false",
            "mpbgp_nexthop": "auto_sourceif",
            "bgp_sourceif": "eth0",
        }
    )
    # dual stack (docs/configuration.md): a session per family, and both over one with MP-BGP
    ds = {**base, "address": "203.0.113.100, 2001:db8:100::100", "vip_subnet": "32,128"}
    yield env({**ds, "bgp_peers": "192.0.2.1:65001::false,[2001:db8:0:1::1]:65001::false"})
    yield env({**ds, "bgp_peers": "192.0.2.1:65001" + mp})
    yield env({**base, "bgp_peers": "", "bgp_peeraddress": "192.0.2.1", "bgp_peerpass": "pw-2"})
    yield env(
        {**base, "bgp_hold_time": "9", "bgp_keepalive_interval": "3", "vip_loglevel": "debug"}
    )
    yield env({"address": "203.0.113.100", "bgp_enable": "true", "bgp_as": "4200000000"})
    yield b"--address=203.0.113.100\n--bgp=true\n--localAS=65000\n"
    yield b"--address=203.0.113.100\n--bgp=true\n--bgppeers=192.0.2.1:65001::false\n"
    from vipgate.config import SETTINGS

    # every setting once with its default, numbered (the harness maps #n to SETTINGS[n])
    yield "".join(f"#{i}={s.default}\n" for i, s in enumerate(SETTINGS)).encode()


def rtnl_seeds() -> Iterable[bytes]:
    """Kernel replies as routing-table mode reads them: routes of both families (ours, another
    table, another protocol), addresses (IPv4 labelled, IPv6 with IFA_PROTO), an ack, an error,
    the end of a dump; each behind the 4-byte query (table 0 -> main, protocol, ifindex, seq)."""
    import struct

    from vipgate import netlink as nl
    from vipgate.routing import rtnl as r
    from vipgate.routing.plan import KernelRoute

    seq = 7
    v4 = KernelRoute(IPv4Network("203.0.113.100/32"), 254, 186, 1, 0, 2, 0)
    v6 = KernelRoute(IPv6Network("2001:db8::100/128"), 254, 186, 1, 0, 2, 1000)
    other = KernelRoute(IPv4Network("198.51.100.0/24"), 100, 4, 1, 253, 3, 20)
    routes = [r.encode_route_change(True, x, seq) for x in (v4, v6, other)]
    addr4 = nl.IFADDR.pack(2, 32, 0, 0, 2) + nl.attr(nl.IFA_LOCAL, bytes([203, 0, 113, 100]))
    addr4 += nl.attr(nl.IFA_LABEL, b"lo:vipgate\0")
    addr6 = nl.IFADDR.pack(10, 128, 0, 0, 2) + nl.attr(
        nl.IFA_ADDRESS, IPv6Address("2001:db8::100").packed
    )
    addr6 += nl.attr(nl.IFA_PROTO, b"\x99")
    addrs = [nl.message(nl.RTM_NEWADDR, 2, seq, a) for a in (addr4, addr6)]
    ack = nl.message(nl.NLMSG_ERROR, 0, seq, struct.pack("=i", 0) + b"\0" * 16)
    err = nl.message(nl.NLMSG_ERROR, 0, seq, struct.pack("=i", -17) + b"\0" * 16)
    done = nl.message(nl.NLMSG_DONE, 2, seq, struct.pack("=i", 0))
    for query in (bytes([0, 186, 2, seq]), bytes([100, 4, 3, seq])):
        yield query + b"".join(routes) + done
        yield query + b"".join(addrs) + done
        yield query + ack
        yield query + err
        for m in [*routes, *addrs]:
            yield query + m


def write(target: str, seeds: Iterable[bytes]) -> int:
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    n = 0
    for data in seeds:
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
        n += 1
    return n


def main() -> None:
    for target, seeds in (
        ("bgp", bgp_seeds()),
        ("probe", http_seeds()),
        ("config", config_seeds()),
        ("rtnl", rtnl_seeds()),
    ):
        print(target, write(target, seeds))


if __name__ == "__main__":
    main()
