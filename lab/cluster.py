"""A control-plane cluster in the lab: topology, fake apiservers, one vipgate per node.

Shared by the e2e tests, the benchmarks and the demo::

    with Lab() as lab:
        c = Cluster.create(lab, n_nodes=3, period=1, timeout=1, threshold=3, hold=9)
        c.start_all()
        c.wait_nexthops({"192.0.2.11", "192.0.2.12", "192.0.2.13"})
        c.apiservers["node1"].set_mode("refuse")
        ...

Every vipgate runs in its node namespace as ``python -m vipgate manager`` with kube-vip's
environment variables (the same a static pod gets), logs to ``<workdir>/vipgate-<node>.log`` and
is stopped by PID (SIGTERM, then SIGKILL after a bound).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.apiserver import Apiserver, start_apiservers
from lab.netns import Lab
from lab.pki import Pki
from lab.routemon import RouteWatch
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4, VIP4_ADDR, Node, Topology, build_topology
from lab.wait import wait_for

HEALTH_URL = "https://localhost:6443/livez"


@dataclass
class VipgateProcess:
    node: Node
    env: dict[str, str]
    proc: subprocess.Popen[Any] | None = None
    log_name: str = ""
    exit_code: int | None = None


@dataclass
class Cluster:
    lab: Lab
    topo: Topology
    pki: Pki
    apiservers: dict[str, Apiserver]
    base_env: dict[str, str]
    vipgates: dict[str, VipgateProcess] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        lab: Lab,
        n_nodes: int = 3,
        *,
        router_kind: str = "bird",
        ipv6_sessions: bool = False,
        period: float = 1.0,
        timeout: float = 1.0,
        threshold: int = 3,
        hold: int = 9,
        keepalive: int = 3,
        server_name: str = "kubernetes",
        metrics: bool = False,
        graceful_shutdown: float = 0.0,
        extra_env: Mapping[str, str] | None = None,
        apiserver_kwargs: Mapping[str, Any] | None = None,
        router_kwargs: Mapping[str, Any] | None = None,
    ) -> Cluster:
        topo = build_topology(
            lab,
            n_nodes=n_nodes,
            router_kind=router_kind,
            ipv6_sessions=ipv6_sessions,
            router_kwargs=dict(router_kwargs) if router_kwargs is not None else None,
        )
        pki, servers = start_apiservers(topo, **dict(apiserver_kwargs or {}))
        env = {
            "vip_interface": "lo",
            "cp_enable": "true",
            "bgp_enable": "true",
            "bgp_as": "65000",
            "bgp_peers": f"{ROUTER_IP4}:{ROUTER_AS}::false",
            "address": VIP4_ADDR,
            "bgp_hold_time": str(hold),
            "bgp_keepalive_interval": str(keepalive),
            "control_plane_health_check_address": HEALTH_URL,
            "control_plane_health_check_period_seconds": f"{period:g}",
            "control_plane_health_check_timeout_seconds": f"{timeout:g}",
            "control_plane_health_check_failure_threshold": str(threshold),
            "control_plane_health_check_ca_path": str(pki.ca_cert),
            "control_plane_health_check_server_name": server_name,
            "prometheus_server": ":2112" if metrics else "",
            # lab clusters stop at once unless a test asks for the drain (RFC 8326)
            "bgp_graceful_shutdown_seconds": f"{graceful_shutdown:g}",
            "vip_loglevel": "info",
        }
        env.update(extra_env or {})
        return cls(lab, topo, pki, servers, env)

    # ------------------------------------------------------------------ vipgate processes
    def node_env(self, node: Node, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(self.base_env, bgp_routerid=node.ip4)
        env.update(overrides or {})
        return {k: v for k, v in env.items() if v is not None}

    def start(
        self,
        name: str,
        overrides: Mapping[str, str] | None = None,
        module: str = "vipgate",
    ) -> VipgateProcess:
        """Start ``vipgate manager`` on node `name` (returns at once); `module` is a module run
        in its place that runs it (a benchmark's instrumented launcher)."""
        node = self.topo.node(name)
        env = self.node_env(node, overrides)
        proc_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONUNBUFFERED": "1"}
        proc_env.update(env)
        log_name = f"vipgate-{node.name}"
        proc = self.lab.popen(
            node.ns,
            [sys.executable, "-m", module, "manager"],
            env=proc_env,
            log_name=log_name,
        )
        vp = VipgateProcess(node, env, proc, log_name)
        self.vipgates[node.name] = vp
        return vp

    def start_all(self, overrides: Mapping[str, str] | None = None) -> None:
        for n in self.topo.nodes:
            self.start(n.name, overrides)

    def signal(self, name: str, sig: int = signal.SIGTERM) -> float:
        """Send `sig` to node `name`'s vipgate; returns time.monotonic() just before sending."""
        vp = self.vipgates[name]
        assert vp.proc is not None and vp.proc.poll() is None, f"vipgate on {name} is not running"
        t = time.monotonic()
        os.kill(vp.proc.pid, sig)
        return t

    def wait_exit(self, name: str, timeout: float = 5.0) -> int:
        vp = self.vipgates[name]
        assert vp.proc is not None
        try:
            vp.exit_code = vp.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"vipgate on {name} did not exit within {timeout}s") from None
        return vp.exit_code

    def stop(self, name: str, timeout: float = 5.0) -> int | None:
        vp = self.vipgates.get(name)
        if vp is None or vp.proc is None or vp.proc.poll() is not None:
            return None if vp is None or vp.proc is None else vp.proc.returncode
        self.signal(name, signal.SIGTERM)
        try:
            return self.wait_exit(name, timeout)
        except AssertionError:
            self.lab.stop(vp.proc)
            return None

    def log(self, name: str) -> str:
        return self.lab.read_log(self.vipgates[name].log_name)

    def running(self, name: str) -> bool:
        vp = self.vipgates.get(name)
        return vp is not None and vp.proc is not None and vp.proc.poll() is None

    # ------------------------------------------------------------------ the router's view
    def nexthops(self, prefix: str = VIP4) -> set[str]:
        return self.topo.kernel_nexthops(prefix)

    def wait_nexthops(
        self, expected: set[str], timeout: float = 15.0, prefix: str = VIP4, interval: float = 0.005
    ) -> float:
        """Wait until the router's kernel route for `prefix` has exactly `expected` next hops."""
        return wait_for(
            lambda: self.nexthops(prefix) == expected,
            timeout,
            interval,
            what=f"next hops of {prefix} == {sorted(expected)}",
            describe=lambda: (
                f"now {sorted(self.nexthops(prefix))}; logs:\n"
                + "\n".join(f"--- {n}\n{self.log(n)[-2000:]}" for n in self.vipgates)
            ),
        )

    def ip(self, name: str) -> str:
        return self.topo.node(name).ip4

    def watch_route(self, prefix: str = VIP4, poll: float = 0.05) -> RouteWatch:
        """Start recording the router's kernel next hops for `prefix` (see
        :class:`lab.routemon.RouteWatch`); stop it (or let the lab's cleanup do so)."""
        return RouteWatch(self.lab, self.topo.router_ns, prefix, poll).start()

    def watch_exit(self, name: str) -> ExitWatch:
        """Record the moment node `name`'s vipgate exits (call before signalling it)."""
        vp = self.vipgates[name]
        assert vp.proc is not None, f"vipgate on {name} was never started"
        return ExitWatch(vp.proc)

    def scrape(self, name: str, port: int = 2112, timeout: float = 5.0) -> str:
        """The Prometheus text node `name`'s vipgate serves (needs metrics=True)."""
        cp = self.lab.run(
            self.topo.node(name).ns,
            ["curl", "-sS", "--max-time", f"{timeout:g}", f"http://127.0.0.1:{port}/metrics"],
            timeout=timeout + 5,
        )
        return cp.stdout

    def metric(self, name: str, sample: str, port: int = 2112, **labels: str) -> float | None:
        """One sample's value from node `name`'s metrics (None if absent), e.g.
        ``metric("node1", "vipgate_probe_results_total", outcome="ok")``."""
        want = {k: str(v) for k, v in labels.items()}
        for line in self.scrape(name, port).splitlines():
            if not line.startswith(sample) or line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            mname, _, rest = head.partition("{")
            if mname != sample:
                continue
            got: dict[str, str] = {}
            for part in rest.rstrip("}").split(","):
                if "=" in part:
                    k, _, v = part.partition("=")
                    got[k.strip()] = v.strip().strip('"')
            if all(got.get(k) == v for k, v in want.items()):
                return float(value)
        return None


def vip_on_lo(lab: Lab, node: Node, address: str = VIP4_ADDR) -> bool:
    out = lab.ip_json(node.ns, "addr", "show", "dev", "lo")
    return any(a.get("local") == address for link in out for a in link.get("addr_info", []))


# ---------------------------------------------------------------------------------------------
# Observing the router and the processes over time
# ---------------------------------------------------------------------------------------------


class ExitWatch:
    """Records when a process exits (a thread blocked in wait(): no polling delay)."""

    def __init__(self, proc: subprocess.Popen[Any]) -> None:
        self.proc = proc
        self.t: float | None = None
        self.code: int | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exit-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        code = self.proc.wait()
        self.t = time.monotonic()
        self.code = code
        self._done.set()

    def wait(self, timeout: float) -> tuple[int, float]:
        """(exit status, monotonic time of the exit); AssertionError if still running."""
        if not self._done.wait(timeout):
            raise AssertionError(f"process {self.proc.pid} did not exit within {timeout}s")
        assert self.code is not None and self.t is not None
        return self.code, self.t
