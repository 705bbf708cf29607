"""The vipgate demo: three control-plane nodes, a BIRD router with ECMP, a client; narrated live.

``python -m demo.run [--short] [--out-dir out]`` as root (``./scripts/demo.sh`` installs what it
needs first). Five phases, then teardown:

1. all healthy: the router has one next hop per node and requests spread over the nodes;
2. node1's kube-apiserver crashes (SIGKILL): its vipgate sees the kept-alive connection closed,
   checks at once, gets connection refused, re-checks at the fast period and after the third
   failure announces the VIP de-preferred (the demo's unhealthy action; ``withdraw``, the default,
   would withdraw it), so the router drops node1's next hop from its ECMP route; the time from
   the kill to the router dropping the next hop is the detection
   time (well under a second at kube-vip's default settings); requests fail only until then;
3. node1's apiserver is started again: the next hop comes back (recovery time);
4. node2's vipgate gets SIGTERM: it re-announces de-preferred with GRACEFUL_SHUTDOWN (RFC 8326)
   and its AS prepended, so the router -- BIRD without any RFC 8326 policy -- moves node2 out of
   its ECMP route in milliseconds; after the drain it withdraws, closes its session with a Cease
   and exits 0; no request fails;
5. every node's /livez answers 401 (anonymous access removed): every running vipgate announces
   the VIP de-preferred instead of withdrawing it, so the router keeps all of them in its ECMP
   route and every request still reaches an apiserver (the VIP fails open); healthy again, the
   routes are announced plainly.

vipgate runs at kube-vip's default settings (period 5 s, timeout 3 s, threshold 3) with its own
defaults for the rest (fast period 0.2 s, readiness reads every 1 s, a 3 s drain on SIGTERM) and
``control_plane_health_check_unhealthy_action=deprefer``.
The VIP is dual-stack, as kube-vip runs it (``address=203.0.113.100,2001:db8:100::100``,
``vip_subnet=32,128``, an IPv4 and an IPv6 session per node): the narration shows both routes;
the client and the measurements use the IPv4 one.

Ends with a summary table, ``<out-dir>/demo-timeline.png`` and ``<out-dir>/demo-summary.json``.
Exit status: 0 when everything expected happened, 1 when something did not (named), 2 when the
demo could not run at all (not root, lab setup failed), 130 on Ctrl-C, 143 on SIGTERM (each
says so in a line). The lab is removed in every case.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, NoReturn

from demo.netns_io import scrape_metrics
from demo.report import (
    Expectation,
    Phase,
    PhaseStats,
    describe_failure,
    fmt_seconds,
    format_table,
    near_route_change,
    phase_stats,
    reached_apiserver,
    request_expectations,
    summary_json,
)
from lab.client import LoadClient, Request
from lab.cluster import HEALTH_URL, Cluster
from lab.netns import Lab, LabError, list_netns
from lab.routemon import RouteSample, RouteWatch
from lab.topology import ROUTER_AS, ROUTER_IP4, ROUTER_IP6, VIP4, VIP4_ADDR, VIP6, VIP6_ADDR
from lab.wait import LabTimeout, wait_for

EVENT_WORDS = {2: "the kill", 3: "the apiserver answered", 4: "SIGTERM", 5: "the 401s"}
N_PHASES = 5
ACTION_ENV = "control_plane_health_check_unhealthy_action"
ROUTE_STATES = ("announced", "depreferred", "withdrawn")
EXIT_OK, EXIT_FAILED, EXIT_CANNOT_RUN, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
N_NODES = 3


@dataclass(frozen=True)
class Settings:
    short: bool = False
    rate: float = 50.0  # new TLS connections per second
    period: float = 5.0  # kube-vip's defaults: period 5 s, timeout 3 s, threshold 3
    timeout: float = 3.0
    threshold: int = 3
    fast_period: float = 0.2  # vipgate's default fast period
    graceful_shutdown: float = 3.0  # vipgate's default bgp_graceful_shutdown_seconds
    hold: int = 9
    unhealthy_action: str = "deprefer"
    healthy_s: float = 8.0  # phase 1 dwell
    down_s: float = 6.0  # phase 2 dwell after the router dropped node1's next hop
    back_s: float = 6.0  # phase 3 dwell after the recovery
    drain_s: float = 5.0  # phase 4 dwell after the route is gone
    fleet_hold_s: float = 3.0  # phase 5 dwell once every running node is de-preferred
    fleet_timeout: float = 25.0  # threshold x period (+ a period) for the 401s to de-prefer
    start_timeout: float = 30.0
    detect_timeout: float = 20.0
    recover_timeout: float = 15.0
    sigterm_timeout: float = 8.0

    @classmethod
    def for_mode(cls, short: bool) -> Settings:
        if short:
            return cls(
                short=True, healthy_s=4.0, down_s=3.0, back_s=4.0, drain_s=4.0, fleet_hold_s=2.0
            )
        return cls()


def log_message(line: str) -> str:
    """The message of a vipgate log line, without date, time and logger name."""
    m = re.match(r"^\S+ \S+ ([A-Z]+) [\w.]+: (.*)$", line.strip())
    return f"{m.group(1)} {m.group(2)}" if m else line.strip()


class DemoFailure(Exception):
    """Something the demo expected did not happen; the message says what."""


# ---------------------------------------------------------------------------------------------
# Narration
# ---------------------------------------------------------------------------------------------


class Narrator:
    """Timestamped lines on stdout, flushed at once; a little colour only on a terminal."""

    STYLES = {
        "bold": "1",
        "dim": "2",
        "green": "32",
        "red": "1;31",
        "yellow": "33",
        "cyan": "36",
    }

    def __init__(self, t0: float, out: IO[str] | None = None, color: bool | None = None) -> None:
        self.t0 = t0
        self.out = out if out is not None else sys.stdout
        if color is None:
            color = self.out.isatty() and not os.environ.get("NO_COLOR")
        self.color = color

    def paint(self, text: str, style: str) -> str:
        if not self.color or not style:
            return text
        codes = ";".join(self.STYLES[s] for s in style.split())
        return f"\033[{codes}m{text}\033[0m"

    def stamp(self, t: float | None = None) -> str:
        t = time.monotonic() if t is None else t
        return self.paint(f"[{t - self.t0:6.1f}s]", "dim")

    def say(self, text: str, style: str = "", t: float | None = None) -> None:
        print(f"{self.stamp(t)} {self.paint(text, style)}", file=self.out, flush=True)

    def detail(self, text: str) -> None:
        print(f"{' ' * 9}   {self.paint(text, 'dim')}", file=self.out, flush=True)

    def plain(self, text: str = "", style: str = "") -> None:
        print(self.paint(text, style), file=self.out, flush=True)

    def phase(self, number: int, title: str, what: str) -> None:
        self.plain()
        self.plain(f"== Phase {number}/{N_PHASES}: {title}", "bold cyan")
        self.plain(f"   {what}")


# ---------------------------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------------------------


class Demo:
    def __init__(self, settings: Settings, narrator: Narrator, out_dir: Path) -> None:
        self.s = settings
        self.n = narrator
        self.out_dir = out_dir
        self.t0 = narrator.t0
        self.phases: list[Phase] = []
        self.expectations: list[Expectation] = []
        self.requests: list[Request] = []
        self.changes: list[RouteSample] = []
        self.nodes: dict[str, str] = {}  # name -> IPv4 (the router's next hop)
        self.by_ip: dict[str, str] = {}
        self.tag = ""
        self.failure: str | None = None
        self.end = 0.0
        self.client_start = 0.0
        self._seen: set[int] = set()
        self._request_checks: list[tuple[Phase, Expectation]] = []
        self._lab: Lab | None = None
        self._cluster: Cluster | None = None
        self._watcher: RouteWatch | None = None
        self._client: LoadClient | None = None
        self.states: dict[str, str] = {}  # node -> route state (vipgate_prefix_route_state)
        self.route_log: list[tuple[float, str, str]] = []  # (t, node, state) at each change

    # ------------------------------------------------------------------ helpers
    def names(self, hops: frozenset[str] | set[str]) -> tuple[str, ...]:
        return tuple(sorted(self.by_ip.get(h, h) for h in hops))

    def hops_text(self, hops: frozenset[str]) -> str:
        if not hops:
            return "no route"
        return ", ".join(f"{h} ({self.by_ip.get(h, '?')})" for h in sorted(hops))

    def expect(self, what: str, ok: bool, detail: str = "") -> bool:
        return self.show_expectation(Expectation(what, ok, detail))

    def show_expectation(self, e: Expectation, prefix: str = "") -> bool:
        self.expectations.append(e)
        mark = self.n.paint("[ok]  ", "green") if e.ok else self.n.paint("[FAIL]", "red")
        self.n.plain(
            f"{' ' * 9}   {mark} {prefix}{e.what}" + (f" ({e.detail})" if e.detail else "")
        )
        return e.ok

    def expect_requests(self, p: Phase) -> None:
        """The phase's request checks on the requests completed so far (redone at the end)."""
        st = phase_stats(p, self._client.records() if self._client else [])
        for e in request_expectations(p, st, list(self.nodes)):
            self.show_expectation(e)
            self._request_checks.append((p, e))

    def show_route(self) -> None:
        """The router's kernel routes of both VIPs, as ``ip route`` prints them."""
        assert self._lab is not None and self._cluster is not None
        for fam, vip, addr in (("-4", VIP4, VIP4_ADDR), ("-6", VIP6, VIP6_ADDR)):
            cp = self._lab.ip(self._cluster.topo.router_ns, fam, "route", "show", vip, check=False)
            text = cp.stdout.strip() or f"(no route: {addr} is unreachable from the client)"
            self.n.detail(f"$ ip {fam} route show {vip}   # in the router namespace")
            for line in text.splitlines():
                self.n.detail(f"  {line.strip()}")

    def traffic(self) -> None:
        """One line: requests answered since the last line, per node, and the next hops."""
        assert self._client is not None and self._watcher is not None
        new = [r for r in self._client.records() if r.i not in self._seen]
        self._seen.update(r.i for r in new)
        per_node = {n: 0 for n in self.nodes}
        failed: dict[str, int] = {}
        for r in new:
            if r.ok and r.node in per_node:
                per_node[r.node] += 1
            elif not r.ok:
                failed[r.outcome] = failed.get(r.outcome, 0) + 1
        answered = {k: v for k, v in failed.items() if k.startswith("http_")}
        for k in answered:
            del failed[k]
        self.poll_states()
        nodes = "  ".join(f"{n} {c:3d}" for n, c in per_node.items())
        nf = sum(failed.values())
        why = f" ({', '.join(f'{k} {v}' for k, v in sorted(failed.items()))})" if nf else ""
        ftxt = self.n.paint(f"failed {nf:3d}{why}", "red" if nf else "")
        hops = " ".join(self.names(self._watcher.current())) or "none"
        http = "".join(f" (+{v} answered {k[5:]})" for k, v in sorted(answered.items()))
        self.n.say(f"  answered: {nodes}{http}   {ftxt}   | next hops: {hops}")

    def poll_states(self) -> None:
        """Each node's route state from its vipgate's metrics (``stopped`` when it is not
        running); a change is narrated and kept for the summary and the picture."""
        c = self._cluster
        if c is None:
            return
        for name in self.nodes:
            vp = c.vipgates.get(name)
            state = "stopped"
            if vp is not None and vp.proc is not None and vp.proc.poll() is None:
                try:
                    m = scrape_metrics(c.topo.node(name).ns)
                except OSError:
                    continue
                for st in ROUTE_STATES:
                    key = f'vipgate_prefix_route_state{{prefix="{VIP4}",state="{st}"}}'
                    if m.get(key) == 1.0:
                        state = st
            if self.states.get(name) != state:
                if name in self.states:
                    style = "yellow" if state in ("depreferred", "withdrawn") else "green"
                    self.n.say(f"  {name}'s vipgate: route {state}", style)
                self.states[name] = state
                self.route_log.append((time.monotonic(), name, state))

    def watch(
        self,
        seconds: float,
        until: Callable[[frozenset[str]], bool] | None = None,
        on_tick: Callable[[], None] | None = None,
        tick: float = 0.2,
    ) -> RouteSample | None:
        """Print traffic once a second for `seconds` (or until `until(next hops)` holds).

        With `until`, returns the route change that made it hold (None on timeout).
        `on_tick` runs every `tick` seconds (e.g. to read a node's metrics).
        """
        assert self._watcher is not None
        deadline = time.monotonic() + seconds
        next_line = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            step = min(tick, deadline - now, max(next_line - now, 0.001))
            if until is not None:
                change = self._watcher.reached(until, step)
                if change is not None:
                    return change
            else:
                time.sleep(step)
            if on_tick is not None:
                on_tick()
            if time.monotonic() >= next_line:
                self.traffic()
                next_line += 1.0

    def start_phase(self, number: int, title: str, what: str) -> Phase:
        self.poll_states()
        now = time.monotonic()
        if self.phases:
            self.phases[-1].end = now
            self.phases[-1].route_states_end = dict(self.states)
        p = Phase(number, title, start=now)
        self.phases.append(p)
        self.n.phase(number, title, what)
        return p

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        s = self.s
        n = self.n
        n.plain(
            "vipgate demo: 3 control-plane nodes run `vipgate manager`, each announcing the "
            "dual-stack API VIP",
            "bold",
        )
        n.plain(
            f"{VIP4_ADDR} and {VIP6_ADDR} over BGP to a BIRD router that spreads traffic over "
            "them with ECMP, while a client opens"
        )
        n.plain(
            f"{s.rate:g} new TLS connections a second to https://{VIP4_ADDR}:6443/livez."
            + ("  (--short mode)" if s.short else "")
        )
        n.plain(
            f"vipgate settings (kube-vip's defaults): health check {HEALTH_URL} every "
            f"{s.period:g} s, timeout {s.timeout:g} s, failure threshold {s.threshold}; "
            f"fast period {s.fast_period:g} s after a refused or closed connection; "
            f"{s.graceful_shutdown:g} s GRACEFUL_SHUTDOWN drain on SIGTERM; "
            f"BGP hold time {s.hold} s; {ACTION_ENV}={s.unhealthy_action} (after "
            f"{s.threshold} failed checks "
            + (
                "the VIP is announced de-preferred, not withdrawn); "
                if s.unhealthy_action == "deprefer"
                else "the VIP is withdrawn); "
            )
            + "the router has no GRACEFUL_SHUTDOWN policy."
        )
        n.plain()
        if os.geteuid() != 0:
            n.say("the demo needs root (it creates network namespaces)", "red")
            return EXIT_CANNOT_RUN
        tracked: list[int] = []
        lab_ok = False
        try:
            with Lab() as lab:
                self._lab = lab
                self.tag = lab.tag
                lab_ok = True
                try:
                    self.scenario(lab)
                except DemoFailure as exc:
                    self.failure = str(exc)
                    n.say(f"stopping early: {exc}", "red")
                finally:
                    self.collect()
                    tracked = [p.pid for p in lab.procs]
                n.plain()
                n.say(
                    f"tearing down the lab: stopping {len(tracked)} processes, deleting "
                    f"{len(lab.namespaces)} namespaces ({lab.tag}-*)"
                )
            procs = list(lab.procs)
        except LabError as exc:
            if lab_ok:
                raise
            n.say(f"could not build the lab: {exc}", "red")
            return EXIT_CANNOT_RUN
        self.verify_teardown(procs, tracked)
        return self.finish()

    def scenario(self, lab: Lab) -> None:
        s = self.s
        n = self.n
        n.say(
            f"building the lab (namespaces {lab.tag}-*): BIRD router (ECMP, no GRACEFUL_SHUTDOWN "
            "policy), node1..node3, client; "
            "kubeadm-shaped PKI; a fake kube-apiserver on each node's :6443"
        )
        t = time.monotonic()
        cluster = Cluster.create(
            lab,
            N_NODES,
            period=s.period,
            timeout=s.timeout,
            threshold=s.threshold,
            hold=s.hold,
            metrics=True,
            ipv6_sessions=True,
            extra_env={
                "control_plane_health_check_fast_period_seconds": f"{s.fast_period:g}",
                "bgp_graceful_shutdown_seconds": f"{s.graceful_shutdown:g}",
                ACTION_ENV: s.unhealthy_action,
                # kube-vip's dual-stack form: one IPv4 and one IPv6 VIP, a session per family
                "address": f"{VIP4_ADDR},{VIP6_ADDR}",
                "vip_subnet": "32,128",
                "bgp_peers": f"{ROUTER_IP4}:{ROUTER_AS}::false,[{ROUTER_IP6}]:{ROUTER_AS}::false",
            },
            router_kwargs={"graceful_shutdown": False},  # BIRD as installed: no RFC 8326 filter
        )
        self._cluster = cluster
        self.nodes = {nd.name: nd.ip4 for nd in cluster.topo.nodes}
        self.by_ip = {ip: name for name, ip in self.nodes.items()}
        self.by_ip.update({nd.ip6: nd.name for nd in cluster.topo.nodes})
        n.say(
            f"lab ready in {time.monotonic() - t:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in self.nodes.items())
            + "; router 192.0.2.1 (AS 65001); client"
            " 198.51.100.10"
        )
        watcher = cluster.watch_route(VIP4)
        self._watcher = watcher
        n.say(
            "starting `vipgate manager` on node1, node2, node3 (kube-vip environment, "
            f"AS 65000, peers {ROUTER_IP4} and [{ROUTER_IP6}] AS {ROUTER_AS}, VIPs "
            f"{VIP4_ADDR},{VIP6_ADDR} with vip_subnet 32,128)"
        )
        t = time.monotonic()
        cluster.start_all()
        everyone = frozenset(self.nodes.values())
        ch = watcher.reached(lambda h: h == everyone, s.start_timeout)
        if ch is None:
            raise DemoFailure(
                f"the router did not get 3 next hops within {s.start_timeout:g} s "
                f"(has {self.hops_text(watcher.current())}); vipgate logs:\n"
                + "\n".join(cluster.log(x)[-1500:] for x in self.nodes)
            )
        everyone6 = {nd.ip6 for nd in cluster.topo.nodes}
        try:
            wait_for(lambda: cluster.nexthops(VIP6) == everyone6, s.start_timeout, 0.02)
        except LabTimeout:
            raise DemoFailure(
                f"the router did not get 3 next hops for {VIP6} within {s.start_timeout:g} s "
                f"(has {self.hops_text(frozenset(cluster.nexthops(VIP6)))})"
            ) from None
        n.say(
            f"all three nodes announced {VIP4} and {VIP6} after {time.monotonic() - t:.1f} s "
            f"(first check, BGP sessions, UPDATEs, BIRD, kernel)",
            "green",
        )
        self._client = LoadClient(
            lab,
            cluster.topo.client_ns,
            cluster.pki.ca_cert,
            rate=s.rate,
            duration=300.0,
            timeout=1.0,
        )
        self.client_start = self._client.start()
        n.say(
            f"client started: {s.rate:g} new TLS connections/s to {VIP4_ADDR}:6443 "
            "(server name kubernetes, verified against the cluster CA), one GET /livez each"
        )

        self.phase_healthy()
        self.phase_apiserver_down()
        self.phase_apiserver_back()
        self.phase_sigterm()
        self.phase_every_node_401()

    # ------------------------------------------------------------------ phases
    def phase_healthy(self) -> None:
        assert self._watcher is not None
        p = self.start_phase(
            1,
            "all healthy",
            "Every apiserver answers /livez; every vipgate announces; the router spreads "
            "new connections over 3 next hops.",
        )
        hops = self._watcher.current()
        assert self._cluster is not None
        self.n.say(f"router: {VIP4} via {self.hops_text(hops)}")
        self.n.say(f"router: {VIP6} via {self.hops_text(frozenset(self._cluster.nexthops(VIP6)))}")
        self.show_route()
        self.watch(self.s.healthy_s)
        p.nexthops_end = self.names(self._watcher.current())
        p.end = time.monotonic()
        self.expect(
            "the router has 3 next hops, one per node", len(hops) == 3, " ".join(self.names(hops))
        )
        self.expect_requests(p)

    def phase_apiserver_down(self) -> None:
        assert self._cluster is not None and self._watcher is not None
        c, w, s = self._cluster, self._watcher, self.s
        node1 = self.nodes["node1"]
        p = self.start_phase(
            2,
            "node1's kube-apiserver killed",
            "The process dies (SIGKILL): the kernel closes node1's vipgate's kept-alive "
            "connection, vipgate checks at once, gets connection refused, re-checks every "
            f"{s.fast_period:g} s (fast period) and after {s.threshold} failures "
            + (
                "announces the VIP de-preferred (AS prepended): BIRD prefers node2's and node3's "
                "shorter paths and drops node1 from the ECMP route"
                if s.unhealthy_action == "deprefer"
                else "withdraws the VIP"
            )
            + "; until then the router still sends node1 its share and those requests fail.",
        )
        api = c.apiservers["node1"]
        pid = api.pid
        p.event = "killed node1's kube-apiserver"
        p.measure = "detection"
        p.event_t = api.kill()
        self.n.say(
            f"killed node1's kube-apiserver (SIGKILL, pid {pid}): nothing listens on node1:6443 "
            "any more",
            "yellow",
            t=p.event_t,
        )
        last: dict[str, float] = {"fails": 0.0}
        outcomes: dict[str, float] = {}

        def read_metrics() -> None:
            try:
                m = scrape_metrics(c.topo.node("node1").ns)
            except OSError:
                return
            fails = m.get("vipgate_probe_consecutive_failures", 0.0)
            now_out = {k: v for k, v in m.items() if k.startswith("vipgate_probe_results")}
            if fails != last["fails"]:
                kinds = [
                    k.split('outcome="', 1)[1].split('"', 1)[0]
                    for k, v in now_out.items()
                    if v > outcomes.get(k, v) and 'outcome="ok"' not in k
                ]
                why = f" ({', '.join(kinds)})" if kinds else ""
                act = "de-prefer" if s.unhealthy_action == "deprefer" else "withdraw"
                verdict = f"-> {act}" if fails >= s.threshold else ""
                self.n.say(
                    f"  node1 vipgate: failed health checks {fails:.0f}/{s.threshold}{why} "
                    f"{verdict}".rstrip(),
                    "yellow",
                )
                last["fails"] = fails
            outcomes.update(now_out)

        read_metrics()
        ch = self.watch(s.detect_timeout, until=lambda h: node1 not in h, on_tick=read_metrics)
        if ch is None:
            p.nexthops_end = self.names(w.current())
            raise DemoFailure(
                f"the router still has node1's next hop {s.detect_timeout:g} s after its "
                f"apiserver was killed ({self.hops_text(w.current())}); node1's vipgate log:\n"
                + c.log("node1")[-2000:]
            )
        p.route_t, p.route_prev = ch.t, ch.prev
        read_metrics()
        self.n.say(
            f"router dropped node1's next hop: detection {fmt_seconds(p.measured)} after the kill"
            " (kernel route watched with `ip monitor`)",
            "green bold",
            t=p.route_t,
        )
        self.show_route()
        for line in c.log("node1").splitlines():
            if "withdrawing the VIP" in line or "announcing the VIP de-preferred" in line:
                self.n.detail(f"node1's vipgate log: {log_message(line)}")
                break
        self.watch(s.down_s)
        p.nexthops_end = self.names(w.current())
        p.end = time.monotonic()
        acting = "de-preferring" if s.unhealthy_action == "deprefer" else "withdrawing"
        self.expect("router dropped node1's next hop", True, f"detection {fmt_seconds(p.measured)}")
        self.expect(
            f"node1's vipgate counted {s.threshold} failed checks before {acting} the VIP",
            last["fails"] >= s.threshold,
            f"metrics: vipgate_probe_consecutive_failures {last['fails']:.0f}",
        )
        self.expect_requests(p)
        self.expect(
            "node2 and node3 kept their next hops",
            p.nexthops_end == ("node2", "node3"),
            " ".join(p.nexthops_end),
        )

    def phase_apiserver_back(self) -> None:
        assert self._cluster is not None and self._watcher is not None
        c, w, s = self._cluster, self._watcher, self.s
        node1 = self.nodes["node1"]
        p = self.start_phase(
            3,
            "node1's apiserver restarted",
            f"vipgate kept checking every {s.fast_period:g} s while the port refused; the first "
            "good check announces again; the router adds node1 back.",
        )
        p.event = "started node1's kube-apiserver again"
        p.measure = "recovery"
        t = time.monotonic()
        api = c.apiservers["node1"]
        api.start()
        p.event_t = time.monotonic()
        self.n.say(
            f"started node1's kube-apiserver again (pid {api.pid}, answering after "
            f"{p.event_t - t:.2f} s)",
            "yellow",
            t=p.event_t,
        )
        ch = self.watch(s.recover_timeout, until=lambda h: node1 in h)
        if ch is None:
            p.nexthops_end = self.names(w.current())
            raise DemoFailure(
                f"node1's next hop did not come back within {s.recover_timeout:g} s of the "
                f"apiserver restart; node1's vipgate log:\n" + c.log("node1")[-2000:]
            )
        p.route_t, p.route_prev = ch.t, ch.prev
        self.n.say(
            f"router has node1's next hop again: recovery {fmt_seconds(p.measured)} after "
            "the restart",
            "green bold",
            t=p.route_t,
        )
        self.show_route()
        self.watch(s.back_s)
        p.nexthops_end = self.names(w.current())
        p.end = time.monotonic()
        self.expect("node1's next hop is back", True, f"recovery {fmt_seconds(p.measured)}")
        self.expect_requests(p)

    def phase_sigterm(self) -> None:
        assert self._cluster is not None and self._watcher is not None
        c, w, s = self._cluster, self._watcher, self.s
        node2 = self.nodes["node2"]
        p = self.start_phase(
            4,
            "node2's vipgate stopped (SIGTERM)",
            "A graceful stop (a rolling update): vipgate re-announces the VIP de-preferred, "
            "GRACEFUL_SHUTDOWN 65535:0 and its AS prepended; BIRD (no import filter) prefers the "
            "shorter paths and drops node2 from the ECMP route; after the "
            f"{s.graceful_shutdown:g} s drain vipgate withdraws, closes its BGP session with a "
            "Cease, removes the VIP and exits 0.",
        )
        p.event = "SIGTERM to node2's vipgate"
        p.measure = "route gone"
        vp = c.vipgates["node2"]
        pid = vp.proc.pid if vp.proc is not None else None
        p.event_t = c.signal("node2", signal.SIGTERM)
        self.n.say(f"sent SIGTERM to node2's vipgate (pid {pid})", "yellow", t=p.event_t)
        ch = w.reached(lambda h: node2 not in h, s.sigterm_timeout)
        try:
            p.exit_code = c.wait_exit("node2", s.sigterm_timeout)
        except AssertionError:
            p.exit_code = None
        t_exit = time.monotonic()
        if ch is None:
            p.nexthops_end = self.names(w.current())
            raise DemoFailure(
                f"node2's next hop was still there {s.sigterm_timeout:g} s after SIGTERM; "
                "node2's vipgate log:\n" + c.log("node2")[-2000:]
            )
        p.route_t, p.route_prev = ch.t, ch.prev
        self.n.say(
            f"router dropped node2's next hop {fmt_seconds(p.measured)} after SIGTERM "
            "(de-preferred GRACEFUL_SHUTDOWN re-announcement; the path stays until the "
            "withdrawal)",
            "green bold",
            t=p.route_t,
        )
        self.n.say(
            f"node2's vipgate exited with status {p.exit_code} "
            f"(within {fmt_seconds(t_exit - p.event_t)})",
            "green" if p.exit_code == 0 else "red",
        )
        for line in c.log("node2").splitlines():
            if "SIGTERM" in line or "sessions closed" in line or "GRACEFUL_SHUTDOWN" in line:
                self.n.detail(f"node2's vipgate log: {log_message(line)}")
        self.show_route()
        self.watch(s.drain_s)
        p.nexthops_end = self.names(w.current())
        p.end = time.monotonic()
        self.expect(
            "node2's next hop gone within 1 s of SIGTERM",
            p.measured is not None and p.measured < 1.0,
            fmt_seconds(p.measured),
        )
        self.expect(
            "node2's vipgate exited with status 0", p.exit_code == 0, f"exit status {p.exit_code}"
        )
        self.expect_requests(p)

    def phase_every_node_401(self) -> None:
        assert self._cluster is not None and self._watcher is not None
        c, w, s = self._cluster, self._watcher, self.s
        p = self.start_phase(
            5,
            "every node's /livez answers 401",
            "Anonymous access is turned off everywhere (a config rollout, RBAC): every /livez "
            f"answers 401, checks fail on every node at the grid ({s.period:g} s; HTTP answers "
            f"get no fast re-check). After {s.threshold} failures each vipgate "
            + (
                "announces the VIP de-preferred: with no plain path left, BIRD keeps every "
                "de-preferred node in its ECMP route and every request still reaches an "
                "apiserver (here it answers 401: the client is anonymous too)."
                if s.unhealthy_action == "deprefer"
                else "withdraws the VIP, and the router has no route to it at all."
            ),
        )
        running = [x for x in self.nodes if self.states.get(x) not in (None, "stopped")]
        p.event = "every kube-apiserver answers 401"
        p.event_t = time.monotonic()
        for api in c.apiservers.values():
            api.set_mode("unauthorized")
        self.n.say("every node's kube-apiserver now answers 401 to anonymous requests", "yellow")

        def all_depreferred() -> bool:
            return all(self.states.get(x) == "depreferred" for x in running)

        deadline = time.monotonic() + s.fleet_timeout
        while not all_depreferred() and time.monotonic() < deadline:
            self.watch(1.0)
        p.fault_states = dict(self.states)
        p.fault_nexthops = self.names(w.current())
        if all_depreferred():
            self.n.say(
                f"{' and '.join(running)} de-preferred; router next hops: "
                f"{' '.join(p.fault_nexthops) or 'none'} -- the VIP fails open",
                "green bold",
            )
        self.show_route()
        self.watch(s.fleet_hold_s)
        p.fault_states = dict(self.states)
        p.fault_nexthops = self.names(w.current())
        for api in c.apiservers.values():
            api.set_mode("healthy")
        self.n.say("every kube-apiserver answers /livez with 200 again", "yellow")

        def all_announced() -> bool:
            return all(self.states.get(x) == "announced" for x in running)

        deadline = time.monotonic() + 2 * s.period + 2.0
        while not all_announced() and time.monotonic() < deadline:
            self.watch(1.0)
        self.poll_states()
        p.route_states_end = dict(self.states)
        p.nexthops_end = self.names(w.current())
        p.end = time.monotonic()
        p.route_changes = [x.t for x in w.samples if p.start <= x.t <= p.end]
        self.expect_requests(p)

    # ------------------------------------------------------------------ the end
    def collect(self) -> None:
        """Stop the client and the watcher; keep their data (the lab's files go with it)."""
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.stop()
            with contextlib.suppress(Exception):
                self.requests = self._client.records()
        self.end = time.monotonic()
        if self.phases and not self.phases[-1].end:
            self.phases[-1].end = self.end
        if self.phases and not self.phases[-1].route_states_end:
            self.phases[-1].route_states_end = dict(self.states)
        if self._watcher is not None:
            self._watcher.stop()
            self.changes = self._watcher.samples

    def verify_teardown(self, procs: Sequence[object], tracked: Sequence[int]) -> None:
        left_ns = [x for x in list_netns() if self.tag and x.startswith(f"{self.tag}-")]
        running = [p for p in procs if getattr(p, "poll", lambda: 0)() is None]
        self.n.say(
            f"torn down: {len(left_ns)} namespaces of {self.tag} left, "
            f"{len(running)} of the {len(tracked)} processes still running",
            "green" if not left_ns and not running else "red",
        )
        self.expect(
            "nothing left behind (namespaces, processes)",
            not left_ns and not running,
            f"namespaces {left_ns}, running {len(running)}" if left_ns or running else "",
        )

    def recheck_requests(self, stats: Sequence[PhaseStats]) -> None:
        """Redo the request checks with every request (those in flight at a phase's end too)."""
        for p, live in self._request_checks:
            st = stats[self.phases.index(p)]
            for e in request_expectations(p, st, list(self.nodes)):
                if e.what != live.what:
                    continue
                i = self.expectations.index(live)
                self.expectations[i] = e
                if e.ok != live.ok:
                    self.n.plain(
                        f"{' ' * 9}   phase {p.number}, with the requests that were in flight: "
                        f"{'ok' if e.ok else 'FAIL'} {e.what} ({e.detail})"
                    )

    def finish(self) -> int:
        n = self.n
        stats: list[PhaseStats] = [phase_stats(p, self.requests) for p in self.phases]
        self.recheck_requests(stats)
        png: Path | None = None
        if self.phases:
            n.plain()
            n.plain("Summary", "bold")
            n.plain(format_table(self.phases, stats))
            n.plain(
                f"({len(self.requests)} requests at {self.s.rate:g}/s, each counted in the phase "
                "in which it ended; other answers: HTTP answers other than 200, which reached an "
                "apiserver; "
                "detection: apiserver killed -> router dropped node1's next hop; "
                "recovery: apiserver answering -> next hop back; route states: ann announced, "
                "DEPREF de-preferred, wdr withdrawn, off vipgate stopped)"
            )
            rehash = False
            for p, st in zip(self.phases, stats, strict=True):
                if st.failed:
                    n.plain(
                        f"  phase {p.number} failures by kind: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(st.outcomes.items()))
                    )
                if st.failed and p.number in (3, 4, 5):  # unexpected: show each one
                    fails = [
                        r
                        for r in self.requests
                        if not reached_apiserver(r.outcome) and p.start <= r.t + r.latency < p.end
                    ]
                    for r in fails[:5]:
                        near = near_route_change(r, p)
                        rehash = rehash or near
                        n.plain(
                            f"    {describe_failure(r, p, EVENT_WORDS[p.number])}"
                            + (" -- in flight at the route change" if near else "")
                        )
            if rehash:
                n.plain(
                    "  A connection in flight while the router changes its ECMP next-hop set can "
                    "be hashed to another node,\n  which has no such connection and resets it "
                    "(stateless per-flow ECMP; the router does not keep flows where they were)."
                )
            try:
                from demo.timeline import plot_timeline

                png = plot_timeline(
                    self.out_dir / "demo-timeline.png",
                    t0=self.t0,
                    end=self.end,
                    nodes=self.nodes,
                    requests=self.requests,
                    changes=self.changes,
                    phases=self.phases,
                    route_log=self.route_log,
                    title=(
                        f"vipgate demo: {len(self.nodes)} nodes, BIRD ECMP, {self.s.rate:g} "
                        f"TLS connections/s to {VIP4_ADDR} (period {self.s.period:g} s, "
                        f"fast {self.s.fast_period:g} s, threshold {self.s.threshold})"
                    ),
                ).resolve()
                n.plain(f"timeline picture: {png}")
            except Exception as exc:
                self.expect("timeline picture written", False, f"{type(exc).__name__}: {exc}")
        failed = [e for e in self.expectations if not e.ok]
        summary = summary_json(
            self.phases,
            stats,
            self.expectations,
            self.t0,
            tag=self.tag,
            short=self.s.short,
            rate=self.s.rate,
            settings={
                "period": self.s.period,
                "timeout": self.s.timeout,
                "threshold": self.s.threshold,
                "fast_period": self.s.fast_period,
                "graceful_shutdown": self.s.graceful_shutdown,
                "hold": self.s.hold,
                "unhealthy_action": self.s.unhealthy_action,
            },
            route_states=[
                {"t": round(t - self.t0, 4), "node": name, "state": state}
                for t, name, state in self.route_log
            ],
            requests_total=len(self.requests),
            route_changes=[
                {"t": round(c.t - self.t0, 4), "nexthops": list(self.names(c.hops))}
                for c in self.changes
            ],
            png=str(png) if png else None,
            failure=self.failure,
            runtime_s=round(time.monotonic() - self.t0, 2),
        )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        n.plain(f"summary data: {(self.out_dir / 'demo-summary.json').resolve()}")
        n.plain()
        runtime = time.monotonic() - self.t0
        if self.failure is None and not failed:
            n.say(f"demo finished in {runtime:.0f} s: everything expected happened", "green bold")
            return EXIT_OK
        what = [e.what + (f" ({e.detail})" if e.detail else "") for e in failed]
        if self.failure is not None:
            what.insert(0, self.failure.splitlines()[0])
        n.say(f"demo FAILED after {runtime:.0f} s: " + "; ".join(what), "red")
        if self.failure is not None and "\n" in self.failure:
            n.plain(self.failure.split("\n", 1)[1])
        return EXIT_FAILED


class Terminated(BaseException):
    """SIGTERM, raised where the demo is so that it unwinds as on Ctrl-C: the lab closed on the
    way out (a BaseException, as KeyboardInterrupt: no ``except Exception`` takes it)."""


def _terminate(signum: int, frame: FrameType | None) -> NoReturn:
    # A second SIGTERM waits for the teardown under way (a Python handler: no child inherits it).
    signal.signal(signal.SIGTERM, _teardown_under_way)
    raise Terminated


def _teardown_under_way(signum: int, frame: FrameType | None) -> None:
    return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m demo.run", description="vipgate demo (needs root: network namespaces)"
    )
    ap.add_argument("--short", action="store_true", help="same phases, shorter dwell (for CI)")
    ap.add_argument("--out-dir", default="out", help="where the PNG and the JSON go (out/)")
    ap.add_argument("--no-color", action="store_true", help="no colour even on a terminal")
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    narrator = Narrator(t0, color=False if a.no_color else None)
    demo = Demo(Settings.for_mode(a.short), narrator, Path(a.out_dir))
    # Before the lab exists: the lab's own SIGTERM handler (only installed while SIGTERM is at
    # its default) tears down and dies by the signal without a word.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return demo.run()
    except (KeyboardInterrupt, Terminated) as stop:
        narrator.plain()
        left = [x for x in list_netns() if demo.tag and x.startswith(f"{demo.tag}-")]
        sigterm = isinstance(stop, Terminated)
        narrator.say(
            f"{'stopped by SIGTERM' if sigterm else 'interrupted'}: lab torn down "
            f"({len(left)} namespaces of {demo.tag or 'this run'} left)",
            "red",
        )
        return EXIT_TERMINATED if sigterm else EXIT_INTERRUPTED
    except Exception:
        narrator.say("the demo crashed (the lab was torn down):", "red")
        traceback.print_exc()
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
