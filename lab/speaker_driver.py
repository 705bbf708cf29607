"""The vipgate BGP speaker as a process driven over stdin, for the lab (interop tests, bench).

``python -m lab.speaker_driver`` runs a :class:`vipgate.bgp.speaker.Speaker` driven by stdin
lines (``announce P``, ``withdraw P``, ``deprefer P on|off``, ``graceful on|off``, ``close MSG``,
``states``, ``rss``)
and reports JSON lines on stdout; :class:`lab.speaker.SpeakerProc` runs it inside a lab
namespace.  Peers are given in kube-vip's ``bgp_peers`` format (``--peer``, repeatable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TypeAlias

from vipgate.bgp.speaker import PeerSettings, Speaker, SpeakerSettings, peer_settings
from vipgate.config import Raw, Source
from vipgate.config import parse_peers as parse_config_peers
from vipgate.vip import mpbgp_next_hops

IPAddress: TypeAlias = IPv4Address | IPv6Address


def parse_peers(
    specs: Sequence[str], source_ip: IPAddress | None = None, source_if: str = ""
) -> list[PeerSettings]:
    """Peers in kube-vip's ``bgp_peers`` format, parsed by the configuration's own parser
    (the 6th field's MP-BGP next hops resolved as the manager does)."""
    peers = parse_config_peers(Raw(",".join(specs), Source.FLAG, "--peer"))
    # no VIP to leave out of the auto_* addresses here
    return [peer_settings(p, *mpbgp_next_hops(p, source_ip, source_if, ())) for p in peers]


class _JsonObserver:
    def __init__(self, out: Callable[[dict[str, object]], None]) -> None:
        self.out = out

    def session_state(self, peer: str, state: str) -> None:
        self.out({"ev": "state", "peer": peer, "state": state})

    def message(self, peer: str, direction: str, msg_type: str) -> None:
        if direction == "out" and msg_type == "KEEPALIVE":  # when each one left (timers)
            self.out({"ev": "keepalive", "peer": peer})
        elif direction == "out" and msg_type == "NOTIFICATION":  # any of ours, on any connection
            self.out({"ev": "notification_sent", "peer": peer})

    def bfd_state(self, peer: str, state: str, diag: str) -> None:
        self.out({"ev": "bfd", "peer": peer, "state": state, "diag": diag})

    def connection_refused(self, source: str) -> None:
        self.out({"ev": "refused", "source": source})


async def _drive(args: argparse.Namespace) -> int:
    def out(obj: dict[str, object]) -> None:
        obj["t"] = time.monotonic()
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    settings = SpeakerSettings(
        local_as=args.local_as,
        router_id=IPv4Address(args.router_id),
        hold_time=args.hold,
        keepalive=args.keepalive,
        source_ip=ip_address(args.source_ip) if args.source_ip else None,
        source_if=args.source_if,
    )
    speaker = Speaker(
        settings,
        parse_peers(args.peer, settings.source_ip, settings.source_if or ""),
        _JsonObserver(out),
        connect_timeout=args.connect_timeout,
        listen=args.listen,
    )
    for p in args.announce:
        speaker.announce(ip_network(p))
    if args.announce_range:
        base, count = args.announce_range.split("+")
        first = ip_address(base)
        net_cls = IPv4Network if first.version == 4 else IPv6Network
        for i in range(int(count)):
            speaker.announce(net_cls((int(first) + i, first.max_prefixlen)))
    await speaker.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out({"ev": "started"})
    while True:
        line = (await reader.readline()).decode()
        if not line:
            await speaker.close("stdin closed", args.close_timeout)
            return 0
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "announce":
            speaker.announce(ip_network(arg))
            out({"ev": "announced", "prefix": arg})
        elif cmd == "withdraw":
            t0 = time.monotonic()
            speaker.withdraw(ip_network(arg))
            out({"ev": "withdrawn", "prefix": arg, "t0": t0})
        elif cmd == "deprefer":
            prefix, _, on = arg.partition(" ")
            t0 = time.monotonic()
            if on == "off":
                speaker.announce(ip_network(prefix))
            else:
                speaker.deprefer(ip_network(prefix))
            out({"ev": "deprefer", "prefix": prefix, "on": on != "off", "t0": t0})
        elif cmd == "graceful":
            t0 = time.monotonic()
            speaker.graceful_shutdown(arg != "off")
            out({"ev": "graceful", "on": speaker.graceful, "t0": t0})
        elif cmd == "states":
            out({"ev": "states", "states": speaker.session_states()})
        elif cmd == "rss":
            out({"ev": "rss", "kb": _rss_kb()})
        elif cmd == "close":
            t0 = time.monotonic()
            await speaker.close(arg or "vipgate shutting down", args.close_timeout)
            out({"ev": "closed", "t0": t0})
            return 0


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="vipgate BGP speaker driven by stdin (for tests)")
    ap.add_argument("--local-as", type=int, default=65000)
    ap.add_argument("--router-id", required=True)
    ap.add_argument("--hold", type=int, default=30)
    ap.add_argument("--keepalive", type=int, default=10)
    ap.add_argument("--source-ip")
    ap.add_argument("--source-if")
    ap.add_argument("--connect-timeout", type=float, default=5.0)
    ap.add_argument("--close-timeout", type=float, default=2.0)
    ap.add_argument(
        "--no-listen",
        dest="listen",
        action="store_false",
        help="do not accept the routers' connections (dial only)",
    )
    ap.add_argument("--peer", action="append", default=[], help="address:AS:password:multihop")
    ap.add_argument("--announce", action="append", default=[])
    ap.add_argument("--announce-range", help="FIRST+COUNT: announce COUNT host routes from FIRST")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_drive(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
