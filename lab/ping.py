"""A tiny ICMP echo client (the machines have no ping binary): ``python -m lab.ping ADDR``.

Exit status 0 if at least one echo reply arrived, 1 otherwise. Needs root (raw socket).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ping(address: str, count: int = 1, timeout: float = 1.0) -> int:
    """Send `count` echo requests, each waiting up to `timeout` s; return replies received."""
    ip = ipaddress.ip_address(address)
    v6 = ip.version == 6
    if v6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        req_type, rep_type = 128, 129
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        req_type, rep_type = 8, 0
    ident = os.getpid() & 0xFFFF
    received = 0
    with sock:
        for seq in range(1, count + 1):
            payload = struct.pack("!d", time.monotonic()) + b"vipgate-lab"
            hdr = struct.pack("!BBHHH", req_type, 0, 0, ident, seq)
            csum = 0 if v6 else _checksum(hdr + payload)  # kernel fills in ICMPv6 checksum
            pkt = struct.pack("!BBHHH", req_type, 0, csum, ident, seq) + payload
            sock.sendto(pkt, (str(ip), 0))
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([sock], [], [], left)
                if not r:
                    break
                data, _ = sock.recvfrom(2048)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4 :]
                if len(icmp) < 8:
                    continue
                typ, _code, _c, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
                if typ == rep_type and rid == ident and rseq == seq:
                    received += 1
                    break
    return received


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.ping")
    ap.add_argument("address")
    ap.add_argument("-c", "--count", type=int, default=1)
    ap.add_argument("-W", "--timeout", type=float, default=1.0)
    a = ap.parse_args(argv)
    n = ping(a.address, a.count, a.timeout)
    print(f"{n}/{a.count} replies from {a.address}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
