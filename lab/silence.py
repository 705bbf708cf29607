"""Make a lab namespace silent: every packet in or out dropped (nftables), nothing closed.

A silent node is what a router sees when a machine loses power or its link goes dark without
carrier loss: sockets stay open, processes keep running, but nothing arrives and nothing leaves.
The table lives in the namespace, so removing the namespace removes it too.
"""

from __future__ import annotations

from lab.netns import Lab

TABLE = "vipgate_lab_silent"


def silence(lab: Lab, ns: str, ifname: str | None = None) -> None:
    """Drop every IPv4/IPv6 packet entering or leaving `ns` (input and output hooks); with
    `ifname`, only those on that interface (the rest, e.g. the loopback where the routers'
    query sockets are, untouched)."""
    lab.run(ns, ["nft", "add", "table", "inet", TABLE])
    policy = "drop" if ifname is None else "accept"
    for hook, match in (("input", "iifname"), ("output", "oifname")):
        rule = f"{{ type filter hook {hook} priority -400 ; policy {policy} ; }}"
        lab.run(ns, ["nft", "add", "chain", "inet", TABLE, hook, rule])
        if ifname is not None:
            lab.run(ns, ["nft", "add", "rule", "inet", TABLE, hook, match, ifname, "drop"])


def unsilence(lab: Lab, ns: str) -> None:
    """Undo :func:`silence` (no-op if `ns` is not silent)."""
    lab.run(ns, ["nft", "delete", "table", "inet", TABLE], check=False)
