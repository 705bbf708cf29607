"""Chaos run: random faults, several at once, against a 2-node vipgate cluster and BIRD; one
invariant checked continuously.

Run as root from the repository root::

    .venv/bin/python -m bench.bench_chaos                    # 10 minutes (bench mode)
    .venv/bin/python -m bench.bench_chaos --seconds 75       # the CI size (tests/e2e/test_chaos*)
    .venv/bin/python -m bench.bench_chaos --seed 1234        # replay a run's fault sequence
    .venv/bin/python -m bench.bench_chaos --dual-stack       # IPv4 and IPv6 VIP (modes below)
    .venv/bin/python -m bench.bench_chaos --router-dials
    .venv/bin/python -m bench.bench_chaos --routing-table

Faults (seeded RNG, its seed printed first; each picks a node at random and lasts a random time;
a new one starts every 0.5-2.5 s, so several overlap):

- the node's apiserver: refuse, hang, 500, slow (200 after 60 % of the timeout) or the real
  apiserver's SIGTERM sequence (``/readyz`` fails, then the port closes), 2-6 s, then healthy;
- BIRD: restart (stop + start), or SIGSTOP for 1-4 s then SIGCONT;
- the node's link down for 1-5 s (the router's bridge port), then up;
- packet loss on the node's link, 10-40 % both ways for 3-8 s (nftables ``numgen random`` drop
  in the node's namespace: this kernel has no ``sch_netem``, so ``tc netem`` cannot load);
- vipgate SIGTERM (it must exit 0) and a restart 0.5-3 s later.

Monitor: every 0.1 s, BIRD's session state per node (``birdc``; unknown while BIRD is frozen);
the router's kernel route for the VIP is watched by :class:`lab.routemon.RouteWatch`. After the
run the invariant is checked at every sample, per node:

- *present*: apiserver healthy for >= B_up, vipgate running for >= B_up, session Established
  for >= 1 s, BIRD not frozen (nor thawed < 2 s ago)  =>  the node's next hop is at the router;
- *absent*: (apiserver unhealthy for >= B_down, or the session not Established for >= 1 s) and
  BIRD not frozen (nor thawed < 2 s ago)  =>  it is not;
- anything else is a transition (not checked). B_down = threshold x period + timeout + 1 s
  (slack for a loaded machine); with loss or the link down in that window, + hold time (the
  withdrawal cannot get through; the router's hold timer ends the session). B_up = success
  threshold x period + timeout + 1 s; with loss or the link down in the last B_up + hold time,
  *present* is not checked (the announcement may not have got through while the router still
  counts the session up).

Any violation, a ``Traceback`` in a vipgate log, or a vipgate exit that was not requested (or
not 0) fails the run; the report shows the timeline around each violation. A SIGTERM is only
sent once vipgate has its handler (``SigCgt``): before, the interpreter is still starting.
At the end every fault is healed, each node's next hop must be back within 45 s, and the
monitor goes on until *present* holds at every node by the bounds above (B_up + hold time
after the last fault's end): every run checks *present*, even one whose faults left no moment
for it before.

Modes (each with the same faults and the invariant above, adapted):

- ``--dual-stack``: ``address=203.0.113.100, 2001:db8:100::100``, ``vip_subnet=32,128``, each
  node with an IPv4 and an IPv6 session (each carries the VIP of its own family). The invariant
  per node *and family*: the node's next hop of that family in the router's route for that
  family's VIP, against the session of that family (one health check gates both);
- ``--router-dials``: vipgate dials the router on a port where nothing listens (refused), so
  every session is one BIRD opened to vipgate's listener (TCP 179): sessions after BIRD's
  restarts, vipgate's restarts and the link's returns all come through the listener (counted
  from vipgate's log: ``sessions_via_listener``). It combines with ``--dual-stack`` (each
  family's session the router's; tests/e2e/test_chaos_modes.py runs the two together);
- ``--routing-table``: kube-vip's routing-table mode (table 198, no BGP session of vipgate's),
  a BIRD on each node learning table 198 and peering with the router (docs/routers.md, "Node
  daemon"); one more fault, the node daemon's restart. The session checked is the node
  daemon's; the bounds get 1.5 s more for the daemon's share (kernel table -> BIRD -> router),
  *present* needs vipgate running for B_up + 2 s (its start-up: no session of its own waits
  for it), and *absent* also holds 1 s + that share after vipgate's SIGTERM (it removes the
  route).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lab.cluster import Cluster
from lab.netns import Lab
from lab.routemon import RouteWatch
from lab.routers import BirdRouter, Router
from lab.topology import (
    ROUTER_AS,
    ROUTER_IP4,
    ROUTER_IP6,
    VIP4,
    VIP4_ADDR,
    VIP6,
    VIP6_ADDR,
    node_daemon,
)

NODES = ("node1", "node2")
API_FAULTS = ("refuse", "hang", "fail", "slow", "shutdown")
KINDS = {  # fault kind -> weight
    "apiserver": 5,
    "bird_restart": 1,
    "bird_freeze": 1,
    "link_down": 2,
    "loss": 2,
    "vipgate_stop": 2,
}
DAEMON_RESTART = 2  # routing-table mode: the node daemon's restart (weight)
TABLE = 198  # routing-table mode: kube-vip's routing table (vip_routingtable_id)
DIAL_PORT = 1179  # router-dials mode: where vipgate dials (nothing listens: refused)
START_UP = 2.0  # routing-table mode: vipgate's start (interpreter, host setup) on a loaded machine
VIPS = {4: VIP4, 6: VIP6}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    seconds: float = 600.0
    seed: int | None = None
    period: float = 0.2
    timeout: float = 0.15
    threshold: int = 3
    hold: int = 3
    keepalive: int = 1
    sample: float = 0.1
    unhealthy_action: str = "withdraw"  # or deprefer (control_plane_health_check_unhealthy_action)
    dual_stack: bool = False  # an IPv4 and an IPv6 VIP, one session of each family per node
    router_dials: bool = False  # vipgate's dials refused: every session the router's, accepted
    routing_table: bool = False  # routing-table mode: a BIRD on each node exports table 198
    out: str = "bench/out/chaos"

    @property
    def relay(self) -> float:
        """Routing-table mode: the node daemon's share (kernel table -> BIRD -> router)."""
        return 1.5 if self.routing_table else 0.0

    @property
    def b_down(self) -> float:
        return self.threshold * self.period + self.timeout + 1.0 + self.relay

    @property
    def b_up(self) -> float:
        return self.period + self.timeout + 1.0 + self.relay

    @property
    def families(self) -> tuple[int, ...]:
        return (4, 6) if self.dual_stack else (4,)

    @property
    def mode(self) -> str:
        parts = [self.unhealthy_action]
        parts += ["dual-stack"] * self.dual_stack + ["router-dials"] * self.router_dials
        return ", ".join(parts + ["routing-table"] * self.routing_table)


def vipgate_env(s: Settings) -> dict[str, str]:
    """vipgate's settings for the run's mode (beside the cluster's own)."""
    env: dict[str, str] = {}
    if s.unhealthy_action == "deprefer":
        env["control_plane_health_check_unhealthy_action"] = "deprefer"
    port = f":{DIAL_PORT}" if s.router_dials else ""
    peers = [f"{ROUTER_IP4}:{ROUTER_AS}::false{port}"]
    if s.dual_stack:  # one session per family, each carrying the VIP of its own family
        peers.append(f"[{ROUTER_IP6}]:{ROUTER_AS}::false{port}")
        env.update(address=f"{VIP4_ADDR}, {VIP6_ADDR}", vip_subnet="32,128")
    env["bgp_peers"] = ",".join(peers)
    if s.routing_table:  # kube-vip's table mode: table 198, protocol 248, no session of ours
        env.update(bgp_enable="false", bgp_peers="", vip_routingtable="true")
    return env


@dataclass
class Event:
    t: float
    what: str  # "apiserver", "bird_freeze", ... + ":on" / ":off"
    node: str
    detail: str = ""


@dataclass
class ChaosResult:
    settings: Settings
    seed: int
    events: list[Event] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    checks: int = 0
    checks_present: int = 0
    checks_absent: int = 0
    checks_fallback: int = 0  # deprefer: an unhealthy node's path checked present (no plain one)
    checks_by_family: dict[str, int] = field(default_factory=dict)  # "4"/"6" -> checks
    sessions_established: int = 0  # vipgate's "Established" log lines (all its processes)
    sessions_via_listener: int = 0  # of those, on a connection the router opened to vipgate
    healed_present: list[str] = field(default_factory=list)  # "node/IPv4" checked present at
    # the end, after the healing (quiet_tail)
    violations: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # tracebacks, unexpected exits
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations and not self.problems and self.checks > 0


class History:
    """What the chaos run did, by time: the state of each node's apiserver, vipgate, link and of
    BIRD at any instant, from the recorded events."""

    def __init__(self, events: list[Event], t0: float) -> None:
        self.ev = sorted(events, key=lambda e: e.t)
        self.t0 = t0

    def last(self, pred: Callable[[Event], bool], t: float) -> Event | None:
        found = None
        for e in self.ev:
            if e.t > t:
                break
            if pred(e):
                found = e
        return found

    def health(self, n: str, t: float) -> tuple[str, float]:
        """('up'|'down'|'unknown', since)."""
        e = self.last(lambda e: e.node == n and e.what.startswith("apiserver"), t)
        if e is None:
            return "up", self.t0 - 60
        if e.what == "apiserver:off" or e.detail == "slow":
            return "up", e.t
        if e.detail.startswith("shutdown:"):
            delay = float(e.detail.split(":")[1])
            return ("unknown", e.t) if t < e.t + delay else ("down", e.t + delay)
        return "down", e.t

    def running_since(self, n: str, t: float) -> float | None:
        e = self.last(lambda e: e.node == n and e.what.startswith("vipgate_stop"), t)
        if e is None:
            return self.t0 - 60
        return e.t if e.what == "vipgate_stop:off" else None

    def stopped_since(self, n: str, t: float) -> float | None:
        e = self.last(lambda e: e.node == n and e.what.startswith("vipgate_stop"), t)
        return e.t if e is not None and e.what == "vipgate_stop:on" else None

    def frozen_near(self, t: float) -> bool:
        e = self.last(lambda e: e.what.startswith("bird_freeze"), t)
        return e is not None and (e.what == "bird_freeze:on" or t - e.t < 2.0)

    def link_trouble(self, n: str, t0: float, t1: float) -> bool:
        for kind in ("loss", "link_down"):

            def same(e: Event, k: str = kind) -> bool:
                return e.node == n and e.what.startswith(k)

            e = self.last(same, t0)
            if e is not None and e.what.endswith(":on"):
                return True
            if any(x.node == n and x.what.startswith(kind) and t0 < x.t <= t1 for x in self.ev):
                return True
        return False


class Chaos:
    def __init__(self, s: Settings, lab: Lab, seed: int) -> None:
        self.s = s
        self.lab = lab
        self.rng = random.Random(seed)
        self.res = ChaosResult(s, seed)
        self.c = Cluster.create(
            lab,
            n_nodes=len(NODES),
            ipv6_sessions=s.dual_stack,
            period=s.period,
            timeout=s.timeout,
            threshold=s.threshold,
            hold=s.hold,
            keepalive=s.keepalive,
            extra_env=vipgate_env(s),
        )
        assert isinstance(self.c.topo.router, BirdRouter)
        self.router: BirdRouter = self.c.topo.router
        nodes = {n.name: n for n in self.c.topo.nodes}
        self.addr = {4: {n: nodes[n].ip4 for n in NODES}, 6: {n: nodes[n].ip6 for n in NODES}}
        self.ip = self.addr[4]
        self.kinds = dict(KINDS, daemon_restart=DAEMON_RESTART) if s.routing_table else KINDS
        self.daemons: dict[str, Router] = {}  # routing-table mode: each node's BIRD
        self.busy: set[tuple[str, str]] = set()  # (kind, node) active
        self.ends: list[tuple[float, int, str, str]] = []  # heap of (t, seq, kind, node)
        self.seq = 0
        self.frozen = False
        self.session_samples: list[tuple[float, dict[str, str] | None]] = []
        self.stop_monitor = threading.Event()
        self.expected_exit: dict[str, bool] = {n: False for n in NODES}
        self.t0 = 0.0

    # ------------------------------------------------------------------ bookkeeping
    def event(self, what: str, node: str, detail: str = "") -> None:
        self.res.events.append(Event(time.monotonic(), what, node, detail))

    def later(self, delay: float, kind: str, node: str) -> None:
        self.seq += 1
        heapq.heappush(self.ends, (time.monotonic() + delay, self.seq, kind, node))

    # ------------------------------------------------------------------ faults
    def session_names(self) -> dict[str, str]:
        """BIRD's protocol names (peer1, peer2, ... in neighbor order) -> "node/family"."""
        by_addr = {a: f"{n}/{fam}" for fam, m in self.addr.items() for n, a in m.items()}
        return {f"peer{i}": by_addr[nb.address] for i, nb in enumerate(self.router.neighbors, 1)}

    def start_fault(self, kind: str, node: str) -> None:
        r = self.rng
        key = (kind, node if kind not in ("bird_restart", "bird_freeze") else "router")
        if key in self.busy or (kind.startswith("bird") and self.frozen):
            return
        if kind == "vipgate_stop" and not self.catches_sigterm(node):
            return  # the interpreter's own start-up: no handler can exist yet
        self.res.faults[kind] = self.res.faults.get(kind, 0) + 1
        if kind == "apiserver":
            mode = r.choice(API_FAULTS)
            api = self.c.apiservers[node]
            if mode == "shutdown":
                delay = r.uniform(0.3, 1.5)
                api.shutdown(delay)
                self.event("apiserver:on", node, f"shutdown:{delay:.2f}")
            else:
                delay_ms = int(self.s.timeout * 600) if mode == "slow" else None
                api.set_mode(mode, delay_ms)
                self.event("apiserver:on", node, mode)
            self.busy.add(key)
            self.later(r.uniform(2, 6), kind, node)
        elif kind == "bird_restart":
            self.event("bird_restart:on", "router")
            self.router.restart()
            self.event("bird_restart:off", "router")
        elif kind == "bird_freeze":
            self.router.freeze()
            self.frozen = True
            self.event("bird_freeze:on", "router")
            self.busy.add(key)
            self.later(r.uniform(1, 4), kind, "router")
        elif kind == "link_down":
            self.lab.link_down(self.c.topo.router_ns, self.port(node))
            self.event("link_down:on", node)
            self.busy.add(key)
            self.later(r.uniform(1, 5), kind, node)
        elif kind == "loss":
            pct = r.randint(10, 40)
            self.nft(node, pct)
            self.event("loss:on", node, f"{pct}%")
            self.busy.add(key)
            self.later(r.uniform(3, 8), kind, node)
        elif kind == "vipgate_stop":
            self.expected_exit[node] = True
            self.c.signal(node, signal.SIGTERM)
            self.event("vipgate_stop:on", node)
            self.busy.add(key)
            self.later(r.uniform(0.5, 3), kind, node)
        elif kind == "daemon_restart":
            self.event("daemon_restart:on", node)
            self.daemons[node].restart()
            self.event("daemon_restart:off", node)

    def end_fault(self, kind: str, node: str) -> None:
        if kind == "apiserver":
            self.c.apiservers[node].set_mode("healthy")
        elif kind == "bird_freeze":
            self.router.thaw()
            self.frozen = False
        elif kind == "link_down":
            self.lab.link_up(self.c.topo.router_ns, self.port(node))
        elif kind == "loss":
            self.nft(node, 0)
        elif kind == "vipgate_stop":
            try:
                code = self.c.wait_exit(node, 5.0)
            except AssertionError as e:
                self.res.problems.append(f"{node}: {e}")
                code = None
            if code != 0:
                self.res.problems.append(f"{node}: exit {code} after SIGTERM")
            self.c.start(node)  # the new process first: the monitor must not see the old one
            self.expected_exit[node] = False
        self.busy.discard((kind, node))
        self.event(f"{kind}:off", node)

    def catches_sigterm(self, node: str) -> bool:
        """vipgate on `node` has its SIGTERM handler (``SigCgt`` in /proc/PID/status): before
        that, during the interpreter's start-up (longer than 0.3 s on a loaded machine), the
        signal's default action would kill it whatever vipgate does."""
        vp = self.c.vipgates.get(node)
        if vp is None or vp.proc is None or vp.proc.poll() is not None:
            return False
        try:
            with open(f"/proc/{vp.proc.pid}/status") as f:
                caught = next(x for x in f if x.startswith("SigCgt:")).split()[1]
        except (OSError, StopIteration):
            return False
        return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))

    def port(self, node: str) -> str:
        return f"n{NODES.index(node) + 1}"

    def nft(self, node: str, pct: int) -> None:
        ns = self.c.topo.node(node).ns
        self.lab.run(ns, ["nft", "delete", "table", "inet", "chaos"], check=False)
        if pct:
            rules = (
                "table inet chaos {\n"
                f'  chain o {{ type filter hook output priority 0; oifname "eth0" '
                f"numgen random mod 100 < {pct} drop; }}\n"
                f'  chain i {{ type filter hook input priority 0; iifname "eth0" '
                f"numgen random mod 100 < {pct} drop; }}\n"
                "}\n"
            )
            self.lab.run(ns, ["nft", "-f", "-"], input=rules)

    # ------------------------------------------------------------------ monitor
    def monitor(self) -> None:
        bird = BirdControl(self.router.sock, self.session_names())
        try:
            while not self.stop_monitor.is_set():
                t = time.monotonic()
                self.session_samples.append((t, bird.sessions()))
                for n in NODES:
                    vp = self.c.vipgates.get(n)
                    if vp and vp.proc and vp.proc.poll() is not None and not self.expected_exit[n]:
                        code = vp.proc.returncode
                        self.res.problems.append(f"{n}: vipgate exited {code} unasked")
                        self.expected_exit[n] = True  # report once
                self.stop_monitor.wait(max(0.0, t + self.s.sample - time.monotonic()))
        finally:
            bird.close()

    # ------------------------------------------------------------------ run
    def run(self) -> ChaosResult:
        s = self.s
        for n in NODES:
            if s.routing_table:  # the node's BIRD: kernel table 198 -> the router
                topo = self.c.topo
                self.daemons[n] = node_daemon(
                    topo, topo.node(n), "bird", TABLE, hold_time=s.hold, keepalive=s.keepalive
                )
            self.c.start(n)
        for fam in s.families:
            self.c.wait_nexthops(set(self.addr[fam].values()), timeout=30, prefix=VIPS[fam])
        watches = {fam: self.c.watch_route(VIPS[fam]) for fam in s.families}
        mon = threading.Thread(target=self.monitor, name="chaos-monitor", daemon=True)
        self.t0 = time.monotonic()
        mon.start()
        end = self.t0 + s.seconds
        next_fault = self.t0 + 1.0
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                while self.ends and self.ends[0][0] <= now:
                    _, _, kind, node = heapq.heappop(self.ends)
                    self.end_fault(kind, node)
                if now >= next_fault:
                    kinds = self.kinds
                    kind = self.rng.choices(list(kinds), weights=list(kinds.values()))[0]
                    self.start_fault(kind, self.rng.choice(NODES))
                    next_fault = now + self.rng.uniform(0.5, 2.5)
                wake = min([next_fault, end] + ([self.ends[0][0]] if self.ends else []))
                time.sleep(max(0.0, min(0.05, wake - time.monotonic())))
            # heal everything, then the cluster must come back whole
            while self.ends:
                _, _, kind, node = heapq.heappop(self.ends)
                self.end_fault(kind, node)
            self.event("healed", "all")
            healed = time.monotonic()
            try:
                for fam in s.families:
                    hops = set(self.addr[fam].values())
                    self.c.wait_nexthops(hops, timeout=45, prefix=VIPS[fam])
            except AssertionError as e:
                # the text carries each node's log tail (its last 2000 characters, lab.cluster)
                self.res.problems.append(f"not back whole after healing: {e}")
            time.sleep(self.quiet_tail(healed))
        finally:
            self.stop_monitor.set()
            mon.join(5)
            for w in watches.values():
                w.stop()
            self.res.duration = time.monotonic() - self.t0
        for n in NODES:
            self.expected_exit[n] = True
            if self.c.stop(n) not in (0,):
                self.res.problems.append(f"{n}: final SIGTERM did not exit 0")
            text = self.c.log(n)
            self.res.sessions_established += text.count(": Established (")
            self.res.sessions_via_listener += listener_sessions(text)
            if "Traceback" in text:
                i = text.index("Traceback")
                self.res.problems.append(f"{n}: Traceback in the log:\n{text[i : i + 3000]}")
        self.check(watches)
        return self.res

    def quiet_tail(self, healed: float) -> float:
        """How long the monitor goes on once all is healed and back: until every node's next
        hop is checked *present* at the last samples, whatever the faults left just before
        (the view's bounds after the last fault's end: B_up and the hold time after link
        trouble, vipgate's start-up; its session up 1 s more than the daemon's share), so a
        run that happened to leave no moment to check *present* in still checks it."""
        s = self.s
        start = START_UP if s.routing_table else 0.0
        until = max(healed + s.b_up + s.hold + start, time.monotonic() + 1.0 + s.relay)
        return max(2 * s.sample, until - time.monotonic()) + 0.5

    # ------------------------------------------------------------------ the invariant
    def check(self, watches: dict[int, RouteWatch]) -> None:
        """Each sample, each family's route: every node's next hop of that family against
        the node's view through its session of that family."""
        res = self.res
        hist = History(res.events, self.t0)
        sess_since: dict[str, tuple[str, float]] = {}
        keys = [f"{n}/{fam}" for fam in self.s.families for n in NODES]
        healed = next((e.t for e in res.events if e.what == "healed"), None)
        after_healing: set[str] = set()
        for t, states in self.session_samples:
            res.samples += 1
            for k in keys:
                st = "unknown" if states is None else states.get(k, "down")
                prev = sess_since.get(k)
                if prev is None or prev[0] != st:
                    sess_since[k] = (st, t)
            if states is None or hist.frozen_near(t) or t < self.t0:
                continue
            for fam in self.s.families:
                hops = watches[fam].at(t) or frozenset()
                sess = {n: sess_since[f"{n}/{fam}"] for n in NODES}
                views = {n: self.view(hist, n, t, sess[n]) for n in NODES}
                for n in NODES:
                    present = self.addr[fam][n] in hops
                    self.check_node(n, fam, t, present, views, hist, sess[n])
                    if healed is not None and t >= healed and views[n] == "preferred":
                        after_healing.add(f"{n}/IPv{fam}")
        res.healed_present = sorted(after_healing)

    def view(self, hist: History, n: str, t: float, sess: tuple[str, float]) -> str | None:
        """Node `n` at `t` as the router must see it, within the settings' bounds: "gone"
        (session down), "unhealthy" (its apiserver failing long enough to be withdrawn or
        de-preferred), "preferred" (healthy, running and up long enough to be announced), or
        None (a transition)."""
        s = self.s
        h, h_since = hist.health(n, t)
        sst, s_since = sess
        run = hist.running_since(n, t)
        b_down = s.b_down + (s.hold if hist.link_trouble(n, t - s.b_down - s.hold, t) else 0)
        if sst == "down" and t - s_since >= 1.0:
            return "gone"
        stopped = hist.stopped_since(n, t)  # routing-table mode: the session is the daemon's
        if s.routing_table and stopped is not None and t - stopped >= 1.0 + s.relay:
            return "gone"  # SIGTERM removed the route from the table
        if h == "down" and t - h_since >= b_down:
            return "unhealthy"
        # routing-table mode: vipgate's own start-up (no session of its own waits for it)
        start = s.b_up + (START_UP if s.routing_table else 0.0)
        if (
            h == "up"
            and not hist.link_trouble(n, t - s.b_up - s.hold, t)  # the UPDATE can get through
            and t - h_since >= s.b_up
            and run is not None
            and t - run >= start
            and sst == "up"
            and t - s_since >= 1.0 + s.relay
        ):
            return "preferred"
        return None

    def fallback(
        self, hist: History, n: str, t: float, views: dict[str, str | None], sess: tuple[str, float]
    ) -> bool | None:
        """deprefer mode, node `n` unhealthy: its de-preferred path is at the router iff no
        other node has a plain one (RFC 4271 9.1.2.2: LOCAL_PREF, then AS_PATH length, decide
        before multipath) -- when that is settled and its announcement could get through. After
        an apiserver's announced shutdown it is not checked."""
        fault = hist.last(lambda e: e.node == n and e.what.startswith("apiserver"), t)
        if fault is not None and fault.detail.startswith("shutdown:"):
            return None  # withdrawn while announced (gate state apiserver_shutdown), then
            # de-preferred once the failures count: when exactly is the gate's, not checked
        others = [views[m] for m in NODES if m != n]
        if "preferred" in others:
            return False
        if any(v is None for v in others):
            return None
        _, h_since = hist.health(n, t)
        run = hist.running_since(n, t)
        sst, s_since = sess
        if (
            sst == "up"
            and t - s_since >= 1.0 + self.s.b_down
            and run is not None
            and h_since - run >= self.s.b_up  # it was announced before its apiserver failed
            and not hist.link_trouble(n, t - self.s.b_down - self.s.hold, t)
        ):
            return True
        return None

    def check_node(
        self,
        n: str,
        fam: int,
        t: float,
        present: bool,
        views: dict[str, str | None],
        hist: History,
        sess: tuple[str, float],
    ) -> None:
        """The invariant for node `n` at `t`: its next hop is present when it must be, absent
        when it must not be, either while the bounds leave it open. With deprefer, an unhealthy
        node's path is present (de-preferred) only while no node has a plain one."""
        s, res = self.s, self.res
        v = views[n]
        want: bool | None = {"gone": False, "unhealthy": False, "preferred": True}.get(v or "")
        if v == "unhealthy" and s.unhealthy_action == "deprefer":
            want = self.fallback(hist, n, t, views, sess)
            res.checks_fallback += bool(want)
        if want is None:
            return
        h, h_since = hist.health(n, t)
        sst, s_since = sess
        res.checks += 1
        res.checks_by_family[str(fam)] = res.checks_by_family.get(str(fam), 0) + 1
        if want:
            res.checks_present += 1
        else:
            res.checks_absent += 1
        if present != want:
            res.violations.append(
                f"t={t - self.t0:.2f}s {n}: IPv{fam} next hop {'absent' if want else 'present'}, "
                f"expected {'present' if want else 'absent'} (apiserver {h} for "
                f"{t - h_since:.2f}s, session {sst} for {t - s_since:.2f}s)"
            )

    def timeline(self, around: float | None = None, width: float = 8.0) -> str:
        lines = []
        for e in sorted(self.res.events, key=lambda e: e.t):
            rel = e.t - self.t0
            if around is None or abs(rel - around) <= width:
                lines.append(f"  t={rel:7.2f}s {e.node:6s} {e.what:18s} {e.detail}")
        return "\n".join(lines)


PEER_LINE = re.compile(r"BGP peer (\S+): (.*)$", re.MULTILINE)


def listener_sessions(text: str) -> int:
    """How many of the sessions in vipgate's log (its ``Established (`` lines) were on a
    connection the router opened to vipgate's listener: by the connection each peer's session
    took last before it, from the FSM's lines (``-> OpenSent (TCP connection from the peer``:
    the router's; ``-> OpenSent (TCP connected``: vipgate's own dial) and a collision's
    ``keeping the peer's one`` / ``keeping the our one`` (RFC 4271 6.8)."""
    via: dict[str, bool] = {}  # peer -> its session's connection is the router's
    count = 0
    for peer, what in PEER_LINE.findall(text):
        if "-> OpenSent (TCP connection from the peer" in what or "keeping the peer's one" in what:
            via[peer] = True
        elif "-> OpenSent (TCP connected" in what or "keeping the our one" in what:
            via[peer] = False
        elif what.startswith("Established (") and via.get(peer, False):
            count += 1
    return count


class BirdControl:
    """BIRD's control socket spoken directly (a unix socket: no namespace, no process per
    query): ``show protocols`` -> {"node/family": "up" | "down"} (`names`: protocol name ->
    that key); None when BIRD does not answer within 0.3 s (frozen, restarting)."""

    def __init__(self, path: Path, names: dict[str, str]) -> None:
        self.path = path
        self.names = names
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buf = b""

    def _lines(self) -> list[str] | None:
        """Lines of one reply, up to its 0000 line."""
        assert self.sock is not None
        out: list[str] = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("BIRD closed the control socket")
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            text = line.decode(errors="replace")
            if text.startswith("0000"):
                return out
            if text[:4].isdigit() and text[4:5] == " " and text[0] in "89":
                return None  # an error reply
            out.append(text)

    def sessions(self) -> dict[str, str] | None:
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(0.3)
                self.sock.connect(str(self.path))
                while b"\n" not in self.buf:  # the greeting: 0001 BIRD x.y ready.
                    chunk = self.sock.recv(4096)
                    if not chunk:
                        raise ConnectionError("no greeting")
                    self.buf += chunk
                self.buf = self.buf.partition(b"\n")[2]
            self.sock.sendall(b"show protocols\n")
            lines = self._lines()
        except OSError:
            self.close()
            return None
        if lines is None:
            return None
        names = self.names
        states: dict[str, str] = {}
        for line in lines:
            parts = line[5:].split() if line[:4].isdigit() else line.split()
            if len(parts) >= 4 and parts[0] in names:
                states[names[parts[0]]] = "up" if parts[3] == "up" else "down"
        return states


def run(s: Settings) -> tuple[ChaosResult, str]:
    seed = s.seed if s.seed is not None else random.SystemRandom().randrange(2**32)
    log(f"chaos seed {seed} ({s.seconds:g} s); replay with --seed {seed}")
    with Lab() as lab:
        ch = Chaos(s, lab, seed)
        res = ch.run()
        report = describe(ch)
    return res, report


def describe(ch: Chaos) -> str:
    res = ch.res
    out = [
        f"seed {res.seed}, {res.duration:.0f} s, faults injected: {sum(res.faults.values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(res.faults.items()))}); samples "
        f"{res.samples}; invariant checks {res.checks} (present {res.checks_present}, absent "
        f"{res.checks_absent}, de-preferred fallback present {res.checks_fallback}; by "
        f"family {', '.join(f'IPv{k} {v}' for k, v in sorted(res.checks_by_family.items()))}); "
        f"{res.settings.mode}; sessions established {res.sessions_established} (through the "
        f"listener {res.sessions_via_listener}); checked present after the healing: "
        f"{', '.join(res.healed_present) or 'none'}; "
        f"violations {len(res.violations)}; problems {len(res.problems)}"
    ]
    for v in res.violations[:10]:
        out.append("VIOLATION " + v)
        t = float(v.split("s ", 1)[0][2:])
        out.append(ch.timeline(t))
    out += [f"PROBLEM {p}" for p in res.problems]
    if res.violations or res.problems:
        out.append("full timeline:\n" + ch.timeline())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--out", default="bench/out/chaos")
    ap.add_argument("--unhealthy-action", choices=("withdraw", "deprefer"), default="withdraw")
    ap.add_argument("--dual-stack", action="store_true", help="an IPv4 and an IPv6 VIP")
    ap.add_argument(
        "--router-dials", action="store_true", help="every session the router's (listener)"
    )
    ap.add_argument(
        "--routing-table", action="store_true", help="routing-table mode, a BIRD on each node"
    )
    a = ap.parse_args(argv)
    if a.routing_table and (a.dual_stack or a.router_dials or a.unhealthy_action != "withdraw"):
        ap.error("--routing-table runs alone (vipgate has no BGP session in that mode)")
    s = Settings(
        seconds=a.seconds,
        seed=a.seed,
        out=a.out,
        unhealthy_action=a.unhealthy_action,
        dual_stack=a.dual_stack,
        router_dials=a.router_dials,
        routing_table=a.routing_table,
    )
    res, report = run(s)
    print(report)
    out = Path(s.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = asdict(res)
    data["ok"] = res.ok
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
