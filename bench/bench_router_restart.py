"""Router restarts (docs/routers.md, router restarts): the router's process stopped for a while
and started again -> the VIP back in the router's table, vipgate listening against dialing only.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_router_restart              # 3 trials per case
    .venv/bin/python -m bench.bench_router_restart --trials 10 --routers gobgp --outages 60

One node running vipgate's speaker (``lab.speaker_driver``, hold 9 s) and one router with its
own default recovery timers (BIRD 2.0.12: ``connect delay time 5``, ``connect retry time 120``;
FRR 8.4: ``timers connect 120``; GoBGP 3: ``connect-retry 120``). Each trial: the router's
process stopped (SIGTERM: it says Cease to vipgate), ``--outages`` seconds later started again.
Measured from the router's process start (``start``), each polled on its own thread:

- ``listen``: its TCP 179 socket in LISTEN (the router namespace's ``/proc/PID/net/tcp``,
  polled every 2 ms);
- ``ready``: ready to peer, the later of ``listen`` and the router answering a query that
  lists our neighbor (``birdc show protocols``, vtysh ``show bgp neighbors json``,
  ``gobgp neighbor``; polled every 20 ms, dated at the start of the query that saw it, the
  earliest it can be dated);
- ``back``: the VIP in the router's table with the node's next hop (polled every 20 ms; BIRD
  the kernel route, FRR vtysh, GoBGP its CLI: dated at the end of the query that saw it, so a
  query's time, up to 0.2 s with vtysh on a loaded machine, is counted in);
- ``dialer``: whose connection the session runs on (``vipgate``: the router's side is port 179).

The target (docs/routers.md) is ``back - ready <= 1.0 s``. ``listen`` is vipgate's default;
``dial-only`` is ``--no-listen`` (``bgp_listen=false``, kube-vip's behaviour). vipgate retries a
refused dial every 0.5-1 s whatever the outage's length, and any other failure within 30 s of
the loss at that cadence, then with its backoff (up to 30 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.report import write_json
from lab.netns import Lab
from lab.routers import Router
from lab.speaker import SpeakerProc
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4, build_topology

# The routers' own defaults (docs/routers.md), not the lab's lowered ones.
DEFAULTS: dict[str, dict[str, object]] = {
    "bird": {"connect_delay": 5, "connect_retry": 120},
    "frr": {"connect_retry": 120},
    "gobgp": {"connect_retry": 120},
}
BGP_PORT_HEX = ":00B3"
TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"


@dataclass
class Trial:
    router: str
    outage: float
    mode: str
    listen: float  # seconds from the router's process start
    ready: float
    back: float
    dialer: str

    @property
    def after_ready(self) -> float:
        return self.back - self.ready


class NsTcp:
    """The TCP sockets of one namespace, read from /proc/PID/net/tcp{,6} of a process in it."""

    def __init__(self, lab: Lab, ns: str) -> None:
        self.proc = lab.popen(ns, ["sleep", "86400"])
        self.lab = lab
        ino = Path(f"/run/netns/{ns}").stat().st_ino
        deadline = time.monotonic() + 5.0
        while Path(f"/proc/{self.proc.pid}/ns/net").stat().st_ino != ino:
            if time.monotonic() > deadline:
                raise TimeoutError(f"anchor process not in {ns}")
            time.sleep(0.005)

    def sockets(self) -> list[tuple[str, str, str]]:
        """(local, remote, state) as /proc shows them (hex)."""
        out: list[tuple[str, str, str]] = []
        for name in ("tcp", "tcp6"):
            lines = Path(f"/proc/{self.proc.pid}/net/{name}").read_text().splitlines()[1:]
            out += [(f[1], f[2], f[3]) for f in (ln.split() for ln in lines)]
        return out

    def listening(self) -> bool:
        return any(lo.endswith(BGP_PORT_HEX) and st == TCP_LISTEN for lo, _, st in self.sockets())

    def dialer(self) -> str:
        for lo, rem, st in self.sockets():
            if st == TCP_ESTABLISHED and lo.endswith(BGP_PORT_HEX):
                return "vipgate"
            if st == TCP_ESTABLISHED and rem.endswith(BGP_PORT_HEX):
                return "router"
        return "?"

    def close(self) -> None:
        self.lab.stop(self.proc, 1.0)


def _poll(
    pred: Any, interval: float, out: dict[str, float], key: str, stop: Any, at_start: bool
) -> None:
    """Record when `pred` first holds: the end of the query that saw it, or its start
    (``at_start``: the earliest the fact can be dated)."""
    while not stop.is_set():
        t = time.monotonic()
        try:
            if pred():
                out[key] = t if at_start else time.monotonic()
                return
        except Exception:  # the router not answering yet
            pass
        time.sleep(interval)


def one_trial(router: Router, tcp: NsTcp, hop: str, outage: float) -> dict[str, Any]:
    router.stop()
    time.sleep(outage)
    seen: dict[str, float] = {}
    stop = threading.Event()
    polls = [
        (tcp.listening, 0.002, "listen", False),
        (lambda: router.multipath_next_hops(VIP4) == {hop}, 0.02, "back", False),
        (lambda: router.running and hop in router.sessions(), 0.02, "neighbor", True),
    ]
    threads = [
        threading.Thread(target=_poll, args=(p, i, seen, k, stop, a), daemon=True)
        for p, i, k, a in polls
    ]
    t0 = time.monotonic()
    for t in threads[:2]:
        t.start()
    router.start(timeout=30.0)
    threads[2].start()
    deadline = time.monotonic() + 200.0
    while not {"listen", "back", "neighbor"} <= seen.keys():
        if time.monotonic() > deadline:
            stop.set()
            raise TimeoutError(f"VIP not back ({sorted(seen)}): {router.describe()}")
        time.sleep(0.02)
    stop.set()
    ready = max(seen["listen"], seen["neighbor"])
    return {
        "listen": seen["listen"] - t0,
        "ready": ready - t0,
        "back": seen["back"] - t0,
        "dialer": tcp.dialer(),
    }


def run_case(kind: str, outage: float, mode: str, trials: int) -> list[Trial]:
    out: list[Trial] = []
    with Lab() as lab:
        topo = build_topology(lab, 1, kind, client=False, neighbor_kwargs=DEFAULTS[kind])
        router = topo.router
        assert router is not None
        (n1,) = topo.nodes
        extra = ["--no-listen"] if mode == "dial-only" else []
        tcp = NsTcp(lab, router.ns)
        sp = SpeakerProc(
            lab,
            n1,
            [f"{ROUTER_IP4}:{ROUTER_AS}::false"],
            announce=[VIP4],
            hold=9,
            keepalive=3,
            extra=extra,
        )
        try:
            router.wait_multipath(VIP4, {n1.ip4}, 30.0)
            for _ in range(trials):
                tr = Trial(kind, outage, mode, **one_trial(router, tcp, n1.ip4, outage))
                out.append(tr)
                print(json.dumps(asdict(tr) | {"after_ready": tr.after_ready}), flush=True)
        finally:
            sp.close()
            tcp.close()
    return out


def mmm(xs: list[float]) -> str:
    """``min / median / max`` of ``xs`` (seconds), two decimals."""
    return f"{min(xs):.2f} / {statistics.median(xs):.2f} / {max(xs):.2f}"


def table(results: list[Trial]) -> str:
    rows = [
        "| router | outage | vipgate | trials | ready after start | VIP back after ready "
        "(min / median / max) | after start | dialed by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(t.router, t.outage, t.mode) for t in results})
    for kind, outage, mode in keys:
        ts = [t for t in results if (t.router, t.outage, t.mode) == (kind, outage, mode)]
        dialers = ", ".join(
            f"{d} {sum(t.dialer == d for t in ts)}" for d in sorted({t.dialer for t in ts})
        )
        rows.append(
            f"| {kind} | {outage:g} s | {mode} | {len(ts)} | {mmm([t.ready for t in ts])} s "
            f"| {mmm([t.after_ready for t in ts])} s | {mmm([t.back for t in ts])} s "
            f"| {dialers} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--routers", default="bird,frr,gobgp")
    ap.add_argument(
        "--outages", default="20,60", help="seconds the router is down, comma-separated"
    )
    ap.add_argument("--modes", default="listen,dial-only")
    ap.add_argument("--json", help="write the trials to this file")
    ap.add_argument("--replot", help="print the table of a --json file and exit")
    args = ap.parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            print(table([Trial(**t) for t in json.load(f)]))
        return 0
    results: list[Trial] = []
    for kind in args.routers.split(","):
        for outage in (float(x) for x in args.outages.split(",")):
            for mode in args.modes.split(","):
                results += run_case(kind, outage, mode, args.trials)
    print(table(results))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
