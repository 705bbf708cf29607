"""Router drivers for the lab: BIRD 2, FRR 8.4 bgpd (without zebra) and GoBGP 3.

Each driver writes its own configuration into ``<lab.workdir>/<name>/``, runs the daemon in the
foreground inside a lab namespace (tracked by the Lab, so cleanup stops it), and answers queries
in one shape for all three: ``sessions()`` (neighbor address -> RFC 4271 state name) and
``rib(prefix)`` (a list of RibPath). Timers are lowered for the lab (connect retry 1 s, BIRD's
connect delay 1 s and error wait 1..10 s) unless a Neighbor sets them (``connect_delay``,
``connect_retry``, ``error_wait``, ``idle_hold``: docs/routers.md, router restarts). eBGP
sessions get explicit import/export policies (RFC 8212).

GRACEFUL_SHUTDOWN (RFC 8326, community 65535:0): by default every router is configured as
docs/routers.md recommends, so a path carrying it gets local preference 0 and leaves the
multipath set before it is withdrawn -- BIRD: an import filter (``GSHUT_FILTER``), FRR: its
built-in handling for eBGP plus a route-map for iBGP neighbors, GoBGP: a global import policy.
``graceful_shutdown=False`` leaves it out (a router nobody configured). ``multipath_next_hops``
gives the set traffic is spread over, in one shape for all three.

Passwords are written to the daemon's configuration file only; they never appear in reprs,
logs or exception texts produced here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from lab.netns import Lab, LabError
from lab.wait import LabTimeout, wait_for

__all__ = [
    "BirdRouter",
    "FrrRouter",
    "GobgpRouter",
    "LabTimeout",
    "Neighbor",
    "RibPath",
    "Router",
    "kernel_nexthops",
    "make_router",
    "wait_for",
]

STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")
BFD_STATES = ("AdminDown", "Down", "Init", "Up")


@dataclass(frozen=True)
class Neighbor:
    """One BGP neighbor as the router sees it (our speaker, or another lab router)."""

    address: str
    asn: int
    password: str | None = field(default=None, repr=False)
    multihop: int | None = None  # TTL for eBGP multihop; None = directly connected
    passive: bool = False  # True: the router only listens and never connects itself
    # False: the router does not announce 4-octet AS support (BIRD only); a 4-octet `asn` is
    # then configured as AS_TRANS 23456, as a 2-octet router would have to.
    as4: bool = True
    port: int = 179  # the neighbor's port (where the router connects to)
    local_address: str | None = None  # router-side address (source and, BIRD, listen match)
    # BIRD only: router-side listening port for this neighbor. BIRD locks (address, port), so
    # several neighbors with one address also need distinct `port`s (e.g. port=local_port).
    local_port: int | None = None
    hold_time: int | None = None  # router's proposed hold time (None: router default)
    keepalive: int | None = None
    export: tuple[str, ...] = ()  # prefixes the router exports to this neighbor (originated)
    # FRR only: address families activated for the neighbor (4, 6); strict capability matching
    # (`strict-capability-match`: an OPEN offering another family gets NOTIFICATION 2/7); the
    # RFC 9072 extended optional parameters encoding in its OPEN (`extended-optional-parameters`).
    families: tuple[int, ...] = (4, 6)
    strict_capabilities: bool = False
    extended_open: bool = False
    # BFD for this neighbor (RFC 5880): (min rx ms, min tx ms, multiplier); None: no BFD.
    # BIRD: `protocol bfd` + `bfd on`; FRR: bfdd and zebra beside bgpd, `neighbor X bfd profile`.
    bfd: tuple[int, int, int] | None = None
    # Recovery timers (docs/routers.md, the router's restart); None: the lab's low defaults.
    # BIRD: `connect delay time` (lab 1 s, BIRD 5 s), `connect retry time` (lab 1 s, BIRD 120 s),
    # `error wait time MIN, MAX` (lab 1, 10; BIRD 60, 300); FRR: `timers connect`
    # (connect_retry; lab 1 s, FRR 120 s); GoBGP: `connect-retry` (lab 1 s, GoBGP 120 s),
    # `idle-hold-time-after-reset` (idle_hold; GoBGP 30 s, kept unless given).
    connect_delay: int | None = None
    connect_retry: int | None = None
    error_wait: tuple[int, int] | None = None
    idle_hold: int | None = None

    @property
    def is_ipv6(self) -> bool:
        return ipaddress.ip_address(self.address).version == 6


@dataclass(frozen=True)
class RibPath:
    """One path for a prefix in the router's BGP RIB."""

    prefix: str
    next_hop: str
    as_path: tuple[int, ...]
    best: bool
    peer: str | None = None
    local_pref: int | None = None
    med: int | None = None
    multipath: bool = False  # FRR: the router flags the path as used for multipath


# BIRD 2 has no built-in RFC 8326 handling: this import filter gives such paths local preference
# 0, and `merge paths` merges only paths that tie on it (docs/routers.md).
GSHUT_FILTER = """filter gshut_in {
  if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
  accept;
}"""
# A node daemon beside vipgate in routing-table mode (docs/routers.md, "Node daemon"): BIRD
# learns vipgate's routes from kernel table {table} and exports them; the route metric vipgate
# sets for a de-preferred route (1000) and for the drain on stop (65535) becomes our AS
# prepended three times plus GRACEFUL_SHUTDOWN, the de-preference vipgate's BGP mode sends.
# Exact values, not a range: an announced IPv6 route reads metric 1024 (the kernel's default).
NODE_LEARN = """protocol kernel vipgate{v} {{
  kernel table {table};
  learn;
  ipv{v} {{ import all; export none; }};
}}"""
NODE_EXPORT_FILTER = """filter vip_out {{
  if krt_metric = 1000 || krt_metric = 65535 then {{
    bgp_path.prepend({asn}); bgp_path.prepend({asn}); bgp_path.prepend({asn});
    bgp_community.add((65535, 0));
  }}
  accept;
}}"""
# FRR 8.4 honours 65535:0 from eBGP peers by itself; iBGP neighbors need this route-map.
FRR_GSHUT_ROUTE_MAP = """bgp community-list standard GSHUT seq 5 permit 65535:0
route-map GSHUT-IN permit 10
 match community GSHUT
 set local-preference 0
exit
route-map GSHUT-IN permit 20
exit"""
# GoBGP 3: a global import policy (every neighbor's routes pass it). Local preference 1, not 0:
# GoBGP 3 reads `set-local-pref = 0` as "not set" and leaves the path alone (seen here).
GOBGP_GSHUT_POLICY = """[[defined-sets.bgp-defined-sets.community-sets]]
  community-set-name = "gshut"
  community-list = ["65535:0"]

[[policy-definitions]]
  name = "gshut-in"
  [[policy-definitions.statements]]
    name = "gshut-local-pref-1"
    [policy-definitions.statements.conditions.bgp-conditions.match-community-set]
      community-set = "gshut"
      match-set-options = "any"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
    [policy-definitions.statements.actions.bgp-actions]
      set-local-pref = 1

[global.apply-policy.config]
  import-policy-list = ["gshut-in"]
  default-import-policy = "accept-route"
"""


def _norm_prefix(prefix: str) -> str:
    return str(ipaddress.ip_network(prefix, strict=False))


def kernel_nexthops(lab: Lab, ns: str, prefix: str) -> set[str]:
    """Next hops of the kernel route for exactly `prefix` in namespace `ns` (empty if none)."""
    net = ipaddress.ip_network(prefix, strict=False)
    fam = "-6" if net.version == 6 else "-4"
    routes = lab.ip_json(ns, fam, "route", "show", "exact", str(net))
    hops: set[str] = set()
    for r in routes:
        if r.get("type", "unicast") not in ("unicast", None):
            continue
        if "gateway" in r:
            hops.add(str(r["gateway"]))
        for nh in r.get("nexthops", []) or []:
            if "gateway" in nh:
                hops.add(str(nh["gateway"]))
    return hops


class Router(ABC):
    """A BGP router daemon running in a lab namespace."""

    kind: ClassVar[str] = "?"

    def __init__(
        self,
        lab: Lab,
        ns: str,
        *,
        asn: int,
        router_id: str,
        neighbors: Sequence[Neighbor] = (),
        name: str = "router",
        originate: Sequence[str] = (),
        static_routes: Sequence[tuple[str, str]] = (),
        hold_time: int | None = None,
        listen_port: int = 179,
        graceful_shutdown: bool = True,
        ignore_as_path_length: bool = False,
    ) -> None:
        self.lab = lab
        self.graceful_shutdown = graceful_shutdown
        # best path without comparing AS_PATH length (FRR `bgp bestpath as-path ignore`,
        # GoBGP `ignore-as-path-length`; BIRD has no such option)
        self.ignore_as_path_length = ignore_as_path_length
        self.ns = ns
        self.asn = asn
        self.router_id = router_id
        self.neighbors: list[Neighbor] = list(neighbors)
        self.name = name
        self.originate = [_norm_prefix(p) for p in originate]
        self.static_routes = list(static_routes)
        self.hold_time = hold_time
        self.listen_port = listen_port
        self.dir = lab.workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[Any] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, ns={self.ns!r}, asn={self.asn})"

    # -- lifecycle -------------------------------------------------------------------------
    @abstractmethod
    def write_config(self) -> Path: ...

    @abstractmethod
    def _command(self) -> list[str]: ...

    @abstractmethod
    def _ready(self) -> bool: ...

    def _before_start(self) -> None:
        return None

    def _after_stop(self, pid: int) -> None:
        return None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 10.0) -> float:
        """Write the config, start the daemon, wait until it answers queries; return seconds."""
        if self.running:
            raise LabError(f"{self!r} already running")
        self.write_config()
        self._before_start()
        t0 = time.monotonic()
        self.proc = self.lab.popen(self.ns, self._command(), log_name=self.name)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                rc = self.proc.returncode
                raise LabError(f"{self.kind} {self.name} exited rc={rc}:\n{self.log()[-2000:]}")
            return self._ready()

        wait_for(ready, timeout, 0.02, what=f"{self.kind} {self.name} to answer queries")
        return time.monotonic() - t0

    def stop(self, grace: float = 3.0) -> None:
        """Stop the daemon (SIGTERM, SIGKILL after `grace` s). A frozen daemon is thawed first."""
        if self.proc is None:
            return
        pid = self.proc.pid
        self.lab.stop(self.proc, grace)
        self.proc = None
        self._after_stop(pid)

    def kill(self) -> None:
        """SIGKILL the daemon (no goodbye to its peers)."""
        if self.proc is None:
            return
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self.lab.stop(self.proc, 1.0)
        self.proc = None
        self._after_stop(pid)

    def restart(self, timeout: float = 10.0) -> float:
        self.stop()
        return self.start(timeout)

    def freeze(self) -> None:
        """SIGSTOP: the daemon stops answering (keepalives stop, TCP stays open)."""
        if self.proc is None:
            raise LabError(f"{self!r} not running")
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is None:
            raise LabError(f"{self!r} not running")
        os.kill(self.proc.pid, signal.SIGCONT)

    def log(self) -> str:
        return self.lab.read_log(self.name)

    # -- queries ---------------------------------------------------------------------------
    @abstractmethod
    def sessions(self) -> dict[str, str]:
        """Neighbor address -> RFC 4271 state name (Idle/Connect/Active/OpenSent/...)."""

    @abstractmethod
    def rib(self, prefix: str) -> list[RibPath]:
        """Paths the router holds for exactly `prefix` (empty if none)."""

    def neighbor_states(self) -> list[tuple[Neighbor, str]]:
        """(neighbor, state) in configuration order; exact even when BIRD has several
        neighbors with one address (different local address/port)."""
        st = self.sessions()
        return [
            (nb, st.get(str(ipaddress.ip_address(nb.address)), "Unknown")) for nb in self.neighbors
        ]

    def bfd_sessions(self) -> dict[str, str]:
        """BFD session peer address -> state (Up, Down, Init, AdminDown); BIRD and FRR only."""
        raise LabError(f"{self.kind}: the lab driver has no BFD")

    def session_state(self, address: str) -> str:
        key = str(ipaddress.ip_address(address))
        return self.sessions().get(key, "Unknown")

    def next_hops(self, prefix: str) -> set[str]:
        """Next hops of all paths for `prefix` in the router's BGP RIB."""
        return {p.next_hop for p in self.rib(prefix)}

    def multipath_next_hops(self, prefix: str) -> set[str]:
        """Next hops traffic for `prefix` is spread over (see the subclasses)."""
        return {p.next_hop for p in self.rib(prefix) if p.best or p.multipath}

    def wait_multipath(
        self, prefix: str, expected: set[str], timeout: float = 10.0, interval: float = 0.01
    ) -> float:
        """Wait until :meth:`multipath_next_hops` is exactly `expected`; return seconds."""
        return self._wait_hops(
            lambda: self.multipath_next_hops(prefix),
            expected,
            timeout,
            interval,
            f"{self.kind} {self.name}: multipath next hops of {prefix}",
            lambda: f"RIB: {self.rib(prefix)}\n{self.describe()}",
        )

    @staticmethod
    def _wait_hops(
        read: Callable[[], set[str]],
        expected: set[str],
        timeout: float,
        interval: float,
        what: str,
        describe: Callable[[], str],
    ) -> float:
        """Wait until ``read()`` is exactly `expected` (addresses normalised); return seconds.
        On timeout the error shows the last read and ``describe()``."""
        exp = {str(ipaddress.ip_address(a)) for a in expected}
        last: set[str] = set()

        def check() -> bool:
            nonlocal last
            last = read()
            return last == exp

        return wait_for(
            check,
            timeout,
            interval,
            what=f"{what} == {sorted(exp)}",
            describe=lambda: f"last: {sorted(last)}; {describe()}",
        )

    def kernel_nexthops(self, prefix: str) -> set[str]:
        """Next hops of the kernel route for `prefix` in the router namespace (BIRD exports)."""
        return kernel_nexthops(self.lab, self.ns, prefix)

    def describe(self) -> str:
        try:
            return f"{self.kind} {self.name} sessions: {self.sessions()}"
        except Exception as exc:
            return f"{self.kind} {self.name}: query failed: {exc}"

    def wait_session(
        self, address: str, state: str = "Established", timeout: float = 15.0
    ) -> float:
        """Wait until the session with `address` is in `state`; return elapsed seconds."""
        return wait_for(
            lambda: self.session_state(address) == state,
            timeout,
            0.05,
            what=f"{self.kind} {self.name}: session {address} {state}",
            describe=self.describe,
        )

    def wait_rib(
        self,
        prefix: str,
        predicate: Callable[[list[RibPath]], bool],
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "",
    ) -> float:
        last: list[RibPath] = []

        def check() -> bool:
            nonlocal last
            last = self.rib(prefix)
            return predicate(last)

        return wait_for(
            check,
            timeout,
            interval,
            what=what or f"{self.kind} {self.name}: RIB {prefix}",
            describe=lambda: f"last RIB: {last}\n{self.describe()}",
        )

    def wait_next_hops(
        self, prefix: str, expected: set[str], timeout: float = 10.0, interval: float = 0.02
    ) -> float:
        """Wait until the BGP RIB next hops for `prefix` are exactly `expected`."""
        exp = {str(ipaddress.ip_address(a)) for a in expected}
        return self.wait_rib(
            prefix,
            lambda paths: {p.next_hop for p in paths} == exp,
            timeout,
            interval,
            what=f"{self.kind} {self.name}: next hops of {prefix} == {sorted(exp)}",
        )

    def wait_kernel_nexthops(
        self, prefix: str, expected: set[str], timeout: float = 10.0, interval: float = 0.005
    ) -> float:
        """Wait until the router namespace's kernel route for `prefix` has exactly `expected`."""
        return self._wait_hops(
            lambda: self.kernel_nexthops(prefix),
            expected,
            timeout,
            interval,
            f"kernel route {prefix} in {self.ns} next hops",
            self.describe,
        )


# ---------------------------------------------------------------------------------------------
# BIRD 2
# ---------------------------------------------------------------------------------------------


def _or(value: int | None, lab_default: int) -> int:
    return lab_default if value is None else value


def _bird_str(s: str) -> str:
    if '"' in s or "\\" in s or "\n" in s:
        raise LabError("BIRD string must not contain quotes, backslashes or newlines")
    return f'"{s}"'


class BirdRouter(Router):
    """BIRD 2: kernel export with ``merge paths on`` (ECMP), low error-wait/connect timers."""

    kind = "bird"

    def __init__(
        self,
        *args: Any,
        kernel_export: bool = True,
        learn_table: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.kernel_export = kernel_export
        self.learn_table = learn_table  # a node daemon: export the routes of this kernel table
        self.conf = self.dir / "bird.conf"
        self.sock = self.dir / "bird.ctl"
        self._proto: dict[str, str] = {}  # protocol name -> neighbor address

    def write_config(self) -> Path:
        if self.ignore_as_path_length:
            raise LabError("BIRD has no option to ignore AS_PATH length; use FRR or GoBGP")
        lines = [
            f'log "{self.dir / "bird.log"}" all;',
            f"router id {self.router_id};",
            "protocol device { scan time 10; }",
        ]
        if self.graceful_shutdown:
            lines.append(GSHUT_FILTER)
        imp = "import filter gshut_in" if self.graceful_shutdown else "import all"
        if self.learn_table is not None:
            imp = "import none"
            lines += [NODE_LEARN.format(v=v, table=self.learn_table) for v in (4, 6)]
            lines.append(NODE_EXPORT_FILTER.format(asn=self.asn))
        if self.kernel_export:
            for v in (4, 6):
                lines += [
                    f"protocol kernel kernel{v} {{",
                    f"  ipv{v} {{ import none; export where source = RTS_BGP; }};",
                    "  merge paths on;",
                    "}",
                ]
        lines += self._static_lines()
        lines += self._bfd_lines()
        self._proto = {}
        for i, nb in enumerate(self.neighbors, 1):
            pname = f"peer{i}"
            self._proto[pname] = str(ipaddress.ip_address(nb.address))
            lines += self._protocol_lines(pname, nb, imp)
        self.conf.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o600)
        return self.conf

    def _static_lines(self) -> list[str]:
        """Static protocols: the originated prefixes and the routes to multihop neighbors."""
        lines: list[str] = []
        v4 = [p for p in self.originate if ":" not in p]
        v6 = [p for p in self.originate if ":" in p]
        s4 = [(n, via) for n, via in self.static_routes if ":" not in n]
        s6 = [(n, via) for n, via in self.static_routes if ":" in n]
        for v, orig, static in ((4, v4, s4), (6, v6, s6)):
            if orig:
                routes = " ".join(f"route {p} blackhole;" for p in orig)
                lines.append(f"protocol static orig{v} {{ ipv{v}; {routes} }}")
            if static:
                # igp_metric 0: a BGP path resolved through this route (multihop) then ties with
                # the directly connected ones and merges into the ECMP route (else "unknown").
                routes = " ".join(
                    f"route {n} via {via} {{ igp_metric = 0; }};" for n, via in static
                )
                lines.append(f"protocol static igp{v} {{ ipv{v}; {routes} }}")
        return lines

    def _bfd_lines(self) -> list[str]:
        """The BFD protocol, when a neighbor has BFD (one setting for all)."""
        lines: list[str] = []
        bfd = [nb.bfd for nb in self.neighbors if nb.bfd is not None]
        if bfd:
            if len(set(bfd)) != 1:
                raise LabError("BIRD driver: one BFD setting (rx, tx, mult) for all neighbors")
            rx, tx, mult = bfd[0]
            opts = (
                f"min rx interval {rx} ms; min tx interval {tx} ms; "
                f"idle tx interval 1000 ms; multiplier {mult};"
            )
            lines.append(f'protocol bfd {{ interface "*" {{ {opts} }}; multihop {{ {opts} }}; }}')
        return lines

    def _protocol_lines(self, pname: str, nb: Neighbor, imp: str) -> list[str]:
        """One `protocol bgp` for neighbor `nb`, importing with `imp`."""
        ebgp = nb.asn != self.asn
        local = f"{nb.local_address} " if nb.local_address else ""
        if nb.local_port:
            local += f"port {nb.local_port} "
        # BIRD refuses a 4-octet neighbor AS with as4 off, and would still read the peer's
        # AS from its AS4 capability: accept any external AS there instead.
        peer_as = f"as {nb.asn}" if nb.as4 or nb.asn <= 0xFFFF else "external"
        body = [
            f"  local {local}as {self.asn};",
            f"  neighbor {nb.address} port {nb.port} {peer_as};",
            f"  connect delay time {_or(nb.connect_delay, 1)};",
            f"  connect retry time {_or(nb.connect_retry, 1)};",
            "  error wait time {}, {};".format(*(nb.error_wait or (1, 10))),
            "  error forget time 10;",
        ]

        hold = nb.hold_time or self.hold_time
        if hold:
            body.append(f"  hold time {hold};")
        if nb.keepalive:
            body.append(f"  keepalive time {nb.keepalive};")
        if nb.multihop:
            body.append(f"  multihop {nb.multihop};")
        if nb.password:
            body.append(f"  password {_bird_str(nb.password)};")
        if nb.passive:
            body.append("  passive on;")
        if nb.bfd is not None:
            body.append("  bfd on;")
        if not nb.as4:
            body.append("  enable as4 off;")
        if not ebgp:
            body.append("  direct;" if not nb.multihop else "")
        # Originated prefixes go to neighbors of their own address family only (an IPv6
        # route over an IPv4 session would need an IPv6 next hop BIRD cannot pick here).
        exp = [*self.originate, *nb.export]
        exp4 = [p for p in exp if ":" not in p] if not nb.is_ipv6 else []
        exp6 = [p for p in exp if ":" in p] if nb.is_ipv6 else []
        for v, exp in ((4, exp4), (6, exp6)):
            ef = f"export where net ~ [ {', '.join(exp)} ]" if exp else "export none"
            if self.learn_table is not None and (v == 6) == nb.is_ipv6:
                ef = "export filter vip_out"  # a node daemon: its session's own family
            extra = " next hop self;" if not ebgp else ""

            # eBGP needs explicit policies (RFC 8212); iBGP the same for clarity.
            body.append(f"  ipv{v} {{ {imp}; {ef};{extra} }};")
        return [f"protocol bgp {pname} {{", *[b for b in body if b], "}"]

    def _command(self) -> list[str]:
        return [
            "bird",
            "-f",
            "-c",
            str(self.conf),
            "-s",
            str(self.sock),
            "-P",
            str(self.dir / "pid"),
        ]

    def birdc(self, *cmd: str, timeout: float = 5.0) -> str:
        cp = self.lab.run(
            self.ns, ["birdc", "-s", str(self.sock), *cmd], check=False, timeout=timeout
        )
        if cp.returncode != 0:
            raise LabError(f"birdc {' '.join(cmd)} failed: {cp.stdout.strip()} {cp.stderr.strip()}")
        return cp.stdout

    def _ready(self) -> bool:
        if not self.sock.exists():
            return False
        return "ready" in self.birdc("show", "status")

    def protocol_states(self) -> dict[str, str]:
        """BIRD protocol name (peer1.. in neighbor order) -> RFC 4271 state name."""
        out = self.birdc("show", "protocols")
        res: dict[str, str] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 4 or parts[0] not in self._proto or parts[1] != "BGP":
                continue
            state = parts[3]
            info = parts[5] if len(parts) > 5 else ""
            if state == "up":
                res[parts[0]] = "Established"
            elif info in STATES:
                res[parts[0]] = info
            elif info == "Passive":
                res[parts[0]] = "Active"
            else:
                res[parts[0]] = "Idle"
        return res

    def bfd_sessions(self) -> dict[str, str]:
        """BFD session peer address -> state (Up, Down, Init, AdminDown): ``show bfd sessions``."""
        res: dict[str, str] = {}
        for line in self.birdc("show", "bfd", "sessions").splitlines():
            parts = line.split()
            if not parts:
                continue
            try:
                addr = str(ipaddress.ip_address(parts[0]))
            except ValueError:
                continue
            state = next((p for p in parts[1:] if p in BFD_STATES), "Unknown")
            res[addr] = state
        return res

    def sessions(self) -> dict[str, str]:
        """Neighbor address -> state (with several protocols per address: the best state)."""
        res: dict[str, str] = {}
        for pname, state in self.protocol_states().items():
            addr = self._proto[pname]
            if addr not in res or STATES.index(state) > STATES.index(res[addr]):
                res[addr] = state
        return res

    def neighbor_states(self) -> list[tuple[Neighbor, str]]:
        st = self.protocol_states()
        return [(nb, st.get(f"peer{i}", "Unknown")) for i, nb in enumerate(self.neighbors, 1)]

    def multipath_next_hops(self, prefix: str) -> set[str]:
        """BIRD: the kernel route's next hops (``merge paths on``: the real ECMP set)."""
        return self.kernel_nexthops(prefix)

    def rib(self, prefix: str) -> list[RibPath]:
        """BGP paths for `prefix`; next_hop is the BGP NEXT_HOP the peer sent (not resolved)."""
        pfx = _norm_prefix(prefix)
        try:
            out = self.birdc("show", "route", pfx, "table", "all", "all")
        except LabError as exc:
            if "Network not found" in str(exc):
                return []
            raise
        paths: list[RibPath] = []
        cur: dict[str, Any] | None = None

        def flush() -> None:
            if cur is not None and cur.get("bgp"):
                paths.append(
                    RibPath(
                        prefix=pfx,
                        next_hop=cur.get("nh", cur.get("via", "")),
                        as_path=tuple(cur.get("as_path", ())),
                        best=cur["best"],
                        peer=self._proto.get(cur["proto"]),
                        local_pref=cur.get("lp"),
                        med=cur.get("med"),
                    )
                )

        head = re.compile(r"^(?:(\S+)\s+)?\s*\w+\s+\[(\S+)\s[^\]]*\]\s*(\*)?")
        for raw in out.splitlines():
            if not raw.strip() or raw.startswith(("Table", "BIRD")):
                continue
            if not raw.startswith(("\t", "  \t")) and "[" in raw and "]" in raw:
                m = head.match(raw.strip() if not raw[0].isspace() else "x " + raw.strip())
                if m:
                    flush()
                    cur = {"proto": m.group(2), "best": bool(m.group(3)), "bgp": False}
                    continue
            if cur is None:
                continue
            _bird_path_line(cur, raw.strip())
        flush()
        return paths


def _bird_path_line(cur: dict[str, Any], line: str) -> None:
    """One attribute line of a path in `birdc show route ... all` into `cur`."""
    if line.startswith("via "):
        cur.setdefault("via", line.split()[1])
    elif line.startswith("Type: BGP"):
        cur["bgp"] = True
    elif line.startswith("BGP.as_path:"):
        cur["as_path"] = [int(x) for x in line.split(":", 1)[1].split() if x.isdigit()]
    elif line.startswith("BGP.next_hop:"):
        nhs = line.split(":", 1)[1].split()
        if nhs:
            cur["nh"] = nhs[0]
    elif line.startswith("BGP.local_pref:"):
        cur["lp"] = int(line.split(":", 1)[1])
    elif line.startswith("BGP.med:"):
        cur["med"] = int(line.split(":", 1)[1])


# ---------------------------------------------------------------------------------------------
# FRR bgpd (no zebra)
# ---------------------------------------------------------------------------------------------


class FrrRouter(Router):
    """FRR 8.4 bgpd alone (``-Z``); queried with ``vtysh --vty_socket DIR``.

    With BFD on a neighbor, zebra and bfdd run beside bgpd (bgpd reaches bfdd through zebra,
    so ``-Z`` is dropped; zebra then also installs the BGP routes in the router namespace).
    """

    kind = "frr"

    def __init__(
        self,
        *args: Any,
        import_table: int | None = None,
        export_connected: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # A node daemon beside vipgate in routing-table mode (docs/routers.md, "Node daemon"):
        # zebra's `ip import-table N` with bgpd's `redistribute table N`, and `redistribute
        # connected` for `export_connected` only (FRR 8.4 prefers the VIP's connected route).
        self.import_table = import_table
        self.export_connected = tuple(export_connected)
        self.conf = self.dir / "bgpd.conf"
        self.vty_dir = self.dir / "vty"
        self.vty_dir.mkdir(exist_ok=True)
        self.helpers: list[subprocess.Popen[Any]] = []  # zebra, bfdd (BFD only)

    @property
    def bfd(self) -> tuple[int, int, int] | None:
        bfd = {nb.bfd for nb in self.neighbors if nb.bfd is not None}
        if len(bfd) > 1:
            raise LabError("FRR driver: one BFD setting (rx, tx, mult) for all neighbors")
        return next(iter(bfd), None)

    def _daemon(self, name: str, *extra: str) -> list[str]:
        return [
            f"/usr/lib/frr/{name}",
            "-f",
            str(self.dir / f"{name}.conf"),
            "-i",
            str(self.dir / f"{name}.pid"),
            "-z",
            str(self.dir / "zserv.api"),
            "--vty_socket",
            str(self.vty_dir),
            "-P",
            "0",
            # zebra and bfdd have no -S (skip run-as) and refuse a user outside the frrvty
            # group: they run as frr, in a router directory frr may write to.
            "-u",
            "frr",
            "-g",
            "frr",
            *extra,
        ]

    @property
    def zebra(self) -> bool:
        """zebra runs beside bgpd: for BFD, or for a node daemon's table import."""
        return self.bfd is not None or self.import_table is not None

    def _before_start(self) -> None:
        bfd = self.bfd
        if not self.zebra:
            return
        for d in (self.dir, self.vty_dir):
            shutil.chown(d, "frr", "frr")
        zebra = f"hostname {self.name}\nlog stdout informational\n"
        if self.import_table is not None:
            zebra += f"ip import-table {self.import_table}\n"
        (self.dir / "zebra.conf").write_text(zebra)
        daemons: list[tuple[str, tuple[str, ...]]] = [("zebra", ())]
        if bfd is not None:
            rx, tx, mult = bfd
            (self.dir / "bfdd.conf").write_text(
                f"hostname {self.name}\nlog stdout informational\n!\nbfd\n profile lab\n"
                f"  receive-interval {rx}\n  transmit-interval {tx}\n  detect-multiplier {mult}\n"
                " !\n!\n"
            )
            daemons.append(("bfdd", ("--bfdctl", str(self.dir / "bfdd.sock"))))
        for name, extra in daemons:
            log_name = f"{self.name}-{name}"
            proc = self.lab.popen(self.ns, self._daemon(name, *extra), log_name=log_name)
            self.helpers.append(proc)
            vty = self.vty_dir / f"{name}.vty"
            wait_for(
                lambda p=proc, v=vty: p.poll() is None and v.exists(),  # type: ignore[misc]
                10.0,
                0.02,
                what=f"FRR {name} in {self.ns}",
            )

    def write_config(self) -> Path:
        for nb in self.neighbors:
            if not nb.as4:
                raise LabError("FRR cannot disable 4-octet AS per neighbor; use BIRD")
            if nb.local_port:
                raise LabError("FRR listens on one port (listen_port); local_port is BIRD only")
        lines = [
            "frr defaults traditional",
            f"hostname {self.name}",
            "log stdout informational",
            "!",
            f"router bgp {self.asn}",
            f" bgp router-id {self.router_id}",
            " no bgp ebgp-requires-policy",
            " no bgp default ipv4-unicast",
            " no bgp network import-check",
            " bgp bestpath as-path multipath-relax",
        ]
        if self.ignore_as_path_length:
            lines.append(" bgp bestpath as-path ignore")
        if self.graceful_shutdown:
            lines[4:4] = [*FRR_GSHUT_ROUTE_MAP.splitlines(), "!"]
        if self.export_connected:
            plist = [
                f"ip{'v6' if ':' in p else ''} prefix-list NODE-VIP{6 if ':' in p else 4} "
                f"seq {5 * i} permit {p}"
                for i, p in enumerate(self.export_connected, 1)
            ]
            lines[4:4] = [*plist, "route-map NODE-VIP4 permit 10",
                          " match ip address prefix-list NODE-VIP4", "exit",
                          "route-map NODE-VIP6 permit 10",
                          " match ipv6 address prefix-list NODE-VIP6", "exit", "!"]  # fmt: skip
        if self.hold_time:
            lines.append(f" timers bgp {max(self.hold_time // 3, 1)} {self.hold_time}")
        for nb in self.neighbors:
            lines += self._neighbor_lines(nb)
        for v in (4, 6):
            lines += self._family_lines(v)
        lines += ["!", "line vty", "!"]
        self.conf.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o600)
        return self.conf

    def _neighbor_lines(self, nb: Neighbor) -> list[str]:
        """The `router bgp` lines of neighbor `nb`."""
        lines: list[str] = []
        a = nb.address
        lines.append(f" neighbor {a} remote-as {nb.asn}")
        if nb.port != 179:
            lines.append(f" neighbor {a} port {nb.port}")
        lines.append(f" neighbor {a} timers connect {_or(nb.connect_retry, 1)}")
        if nb.hold_time:
            ka = nb.keepalive or max(nb.hold_time // 3, 1)
            lines.append(f" neighbor {a} timers {ka} {nb.hold_time}")
        if nb.password:
            lines.append(f" neighbor {a} password {nb.password}")
        if nb.multihop:
            lines.append(f" neighbor {a} ebgp-multihop {nb.multihop}")
        if nb.passive:
            lines.append(f" neighbor {a} passive")
        if nb.local_address:
            lines.append(f" neighbor {a} update-source {nb.local_address}")
        if nb.strict_capabilities:
            lines.append(f" neighbor {a} strict-capability-match")
        if nb.extended_open:
            lines.append(f" neighbor {a} extended-optional-parameters")
        if nb.bfd is not None:
            lines.append(f" neighbor {a} bfd profile lab")
        return lines

    def _family_lines(self, v: int) -> list[str]:
        """The `address-family ipv{v} unicast` block: multipath, networks, activated neighbors."""
        lines: list[str] = []
        lines.append(f" address-family ipv{v} unicast")
        lines.append("  maximum-paths 16")
        lines.append("  maximum-paths ibgp 16")
        for p in self.originate:
            if (":" in p) == (v == 6):
                lines.append(f"  network {p}")
        if self.import_table is not None and v == 4:  # FRR 8.4 imports IPv4 tables only
            lines.append(f"  redistribute table {self.import_table}")
        if self.export_connected:
            lines.append(f"  redistribute connected route-map NODE-VIP{v}")
        for nb in self.neighbors:
            if v not in nb.families:
                continue
            lines.append(f"  neighbor {nb.address} activate")
            if nb.asn == self.asn:
                lines.append(f"  neighbor {nb.address} next-hop-self")
                if self.graceful_shutdown:
                    lines.append(f"  neighbor {nb.address} route-map GSHUT-IN in")
        lines.append(" exit-address-family")
        return lines

    def _command(self) -> list[str]:
        return [
            "/usr/lib/frr/bgpd",
            *(["-Z"] if not self.zebra else []),
            "-S",
            "-f",
            str(self.conf),
            "-i",
            str(self.dir / "bgpd.pid"),
            "-z",
            str(self.dir / "zserv.api"),
            "--vty_socket",
            str(self.vty_dir),
            "-P",
            "0",
            "-p",
            str(self.listen_port),
            "-u",
            "root",
            "-g",
            "root",
        ]

    def _after_stop(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            Path(f"/var/tmp/frr/bgpd.{pid}").unlink()
        for proc in reversed(self.helpers):
            self.lab.stop(proc)
        self.helpers.clear()

    def bfd_sessions(self) -> dict[str, str]:
        """BFD session peer address -> state (Up, Down, Init, AdminDown): bfdd's view."""
        res: dict[str, str] = {}
        for sess in self.vtysh_json("show bfd peers json") or []:
            state = str(sess.get("status", "unknown"))
            res[str(ipaddress.ip_address(sess["peer"]))] = {
                "up": "Up",
                "down": "Down",
                "init": "Init",
                "shutdown": "AdminDown",
            }.get(state, state)
        return res

    def vtysh(self, command: str, timeout: float = 5.0) -> str:
        cp = self.lab.run(
            self.ns,
            ["vtysh", "--vty_socket", str(self.vty_dir), "-c", command],
            check=False,
            timeout=timeout,
        )
        if cp.returncode != 0:
            raise LabError(f"vtysh -c {command!r} failed: {cp.stdout.strip()} {cp.stderr.strip()}")
        return cp.stdout

    def vtysh_json(self, command: str) -> Any:
        out = self.vtysh(command)
        return json.loads(out) if out.strip() else {}

    def _ready(self) -> bool:
        if not (self.vty_dir / "bgpd.vty").exists():
            return False
        self.vtysh_json("show bgp summary json")
        return True

    def sessions(self) -> dict[str, str]:
        data = self.vtysh_json("show bgp neighbors json")
        res: dict[str, str] = {}
        for addr, info in data.items():
            with contextlib.suppress(ValueError):
                res[str(ipaddress.ip_address(addr))] = str(info.get("bgpState", "Unknown"))
        return res

    def rib(self, prefix: str) -> list[RibPath]:
        pfx = _norm_prefix(prefix)
        afi = "ipv6" if ":" in pfx else "ipv4"
        data = self.vtysh_json(f"show bgp {afi} unicast {pfx} json")
        paths: list[RibPath] = []
        if data.get("prefix") not in (pfx, None):
            return paths
        for p in data.get("paths", []):
            asns: list[int] = []
            for seg in p.get("aspath", {}).get("segments", []):
                asns += [int(x) for x in seg.get("list", [])]
            nhs = p.get("nexthops", [])
            nh = ""
            for n in nhs:
                if n.get("scope", "global") == "global" and n.get("ip"):
                    nh = str(n["ip"])
                    break
            best = bool(p.get("bestpath", {}).get("overall", False))
            peer = p.get("peer", {}).get("peerId")
            paths.append(
                RibPath(
                    prefix=pfx,
                    next_hop=nh,
                    as_path=tuple(asns),
                    best=best,
                    peer=str(peer) if peer else None,
                    local_pref=p.get("locPrf"),
                    med=p.get("metric"),
                    multipath=bool(p.get("multipath", False)),
                )
            )
        return paths


# ---------------------------------------------------------------------------------------------
# GoBGP 3
# ---------------------------------------------------------------------------------------------

_GOBGP_STATES = {
    "idle": "Idle",
    "connect": "Connect",
    "active": "Active",
    "opensent": "OpenSent",
    "openconfirm": "OpenConfirm",
    "established": "Established",
    "1": "Idle",
    "2": "Connect",
    "3": "Active",
    "4": "OpenSent",
    "5": "OpenConfirm",
    "6": "Established",
}


def _toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string


class GobgpRouter(Router):
    """GoBGP 3 gobgpd; gRPC API on 127.0.0.1:api_port inside the router namespace."""

    kind = "gobgp"

    def __init__(self, *args: Any, api_port: int = 50051, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api_port = api_port
        self.conf = self.dir / "gobgpd.toml"

    def write_config(self) -> Path:
        for nb in self.neighbors:
            if not nb.as4:
                raise LabError("GoBGP cannot disable 4-octet AS per neighbor; use BIRD")
            if nb.local_port:
                raise LabError("GoBGP listens on one port (listen_port); local_port is BIRD only")
        lines = [
            "[global.config]",
            f"  as = {self.asn}",
            f"  router-id = {_toml_str(self.router_id)}",
            f"  port = {self.listen_port}",
            "",
        ]
        if self.ignore_as_path_length:
            lines += [
                "[global.route-selection-options.config]",
                "  ignore-as-path-length = true",
                "",
            ]
        if self.graceful_shutdown:
            lines += [*GOBGP_GSHUT_POLICY.splitlines(), ""]
        for nb in self.neighbors:
            lines += [
                "[[neighbors]]",
                "  [neighbors.config]",
                f"    neighbor-address = {_toml_str(nb.address)}",
                f"    peer-as = {nb.asn}",
            ]
            if nb.password:
                lines.append(f"    auth-password = {_toml_str(nb.password)}")
            hold = nb.hold_time or self.hold_time
            lines += [
                "  [neighbors.timers.config]",
                f"    connect-retry = {_or(nb.connect_retry, 1)}",
            ]
            if nb.idle_hold is not None:
                lines.append(f"    idle-hold-time-after-reset = {nb.idle_hold}")
            if hold:
                lines.append(f"    hold-time = {hold}")
                lines.append(f"    keepalive-interval = {nb.keepalive or max(hold // 3, 1)}")
            lines += ["  [neighbors.transport.config]", f"    remote-port = {nb.port}"]
            if nb.passive:
                lines.append("    passive-mode = true")
            if nb.local_address:
                lines.append(f"    local-address = {_toml_str(nb.local_address)}")
            if nb.multihop:
                lines += [
                    "  [neighbors.ebgp-multihop.config]",
                    "    enabled = true",
                    f"    multihop-ttl = {nb.multihop}",
                ]
            for afi in ("ipv4-unicast", "ipv6-unicast"):
                lines += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f"      afi-safi-name = {_toml_str(afi)}",
                ]
            lines.append("")
        self.conf.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o600)
        return self.conf

    def _command(self) -> list[str]:
        return [
            "gobgpd",
            "-f",
            str(self.conf),
            "-t",
            "toml",
            "--api-hosts",
            f"127.0.0.1:{self.api_port}",
            "--pprof-disable",
            "-p",
            "-l",
            "info",
        ]

    def gobgp(self, *args: str, timeout: float = 5.0) -> str:
        cp = self.lab.run(
            self.ns,
            ["gobgp", "-u", "127.0.0.1", "-p", str(self.api_port), *args],
            check=False,
            timeout=timeout,
        )
        if cp.returncode != 0:
            raise LabError(
                f"gobgp {' '.join(args)} failed: {cp.stdout.strip()} {cp.stderr.strip()}"
            )
        return cp.stdout

    def gobgp_json(self, *args: str) -> Any:
        out = self.gobgp(*args, "-j")
        return json.loads(out) if out.strip() else None

    def start(self, timeout: float = 10.0) -> float:
        t = super().start(timeout)
        for p in self.originate:
            self.announce(p)
        return t

    def _ready(self) -> bool:
        self.gobgp("global")
        return True

    def announce(self, prefix: str, next_hop: str | None = None) -> None:
        """Add `prefix` to gobgpd's global RIB (exported to every neighbor)."""
        pfx = _norm_prefix(prefix)
        afi = "ipv6" if ":" in pfx else "ipv4"
        nh = next_hop or ("::" if afi == "ipv6" else "0.0.0.0")
        self.gobgp("global", "rib", "add", "-a", afi, pfx, "nexthop", nh)

    def withdraw(self, prefix: str) -> None:
        pfx = _norm_prefix(prefix)
        afi = "ipv6" if ":" in pfx else "ipv4"
        self.gobgp("global", "rib", "del", "-a", afi, pfx)

    def multipath_next_hops(self, prefix: str) -> set[str]:
        """GoBGP's RIB flags only the best path: the paths that tie with it on local preference
        and AS_PATH length (what BGP multipath would use beside it; local preference alone with
        ``ignore_as_path_length``)."""
        paths = self.rib(prefix)
        best = [p for p in paths if p.best]
        if not best:
            return set()

        def key(p: RibPath) -> tuple[int, int]:
            length = 0 if self.ignore_as_path_length else len(p.as_path)
            return (100 if p.local_pref is None else p.local_pref, -length)

        return {p.next_hop for p in paths if key(p) == key(best[0])}

    def sessions(self) -> dict[str, str]:
        data = self.gobgp_json("neighbor") or []
        res: dict[str, str] = {}
        for n in data:
            addr = n.get("conf", {}).get("neighbor_address") or n.get("state", {}).get(
                "neighbor_address"
            )
            st = n.get("state", {}).get("session_state", "")
            if addr:
                res[str(ipaddress.ip_address(addr))] = _GOBGP_STATES.get(
                    str(st).lower(), str(st) or "Idle"
                )
        return res

    def rib(self, prefix: str) -> list[RibPath]:
        pfx = _norm_prefix(prefix)
        afi = "ipv6" if ":" in pfx else "ipv4"
        try:
            data = self.gobgp_json("global", "rib", "-a", afi, pfx)
        except LabError as exc:
            if "not found" in str(exc).lower() or "network not in table" in str(exc).lower():
                return []
            raise
        paths: list[RibPath] = []
        if not data:
            return paths
        for key, plist in data.items():
            if _norm_prefix(key) != pfx:
                continue
            for p in plist:
                asns: list[int] = []
                nh = ""
                lp = med = None
                for attr in p.get("attrs", []):
                    t = attr.get("type")
                    if t == 2:
                        for seg in attr.get("as_paths", []):
                            asns += [int(x) for x in seg.get("asns", [])]
                    elif t == 3:
                        nh = str(attr.get("nexthop", ""))
                    elif t == 14:
                        nh = nh or str(attr.get("nexthop", ""))
                    elif t == 5:
                        lp = attr.get("value")
                    elif t == 4:
                        med = attr.get("metric")
                paths.append(
                    RibPath(
                        prefix=pfx,
                        next_hop=nh,
                        as_path=tuple(asns),
                        best=bool(p.get("best", False)),
                        peer=p.get("neighbor-ip") or p.get("source-id"),
                        local_pref=lp,
                        med=med,
                    )
                )
        return paths


ROUTER_KINDS: dict[str, type[Router]] = {
    "bird": BirdRouter,
    "frr": FrrRouter,
    "gobgp": GobgpRouter,
}


def make_router(kind: str, lab: Lab, ns: str, **kwargs: Any) -> Router:
    """Build a router driver by kind name ("bird", "frr", "gobgp")."""
    try:
        cls = ROUTER_KINDS[kind]
    except KeyError:
        raise LabError(
            f"unknown router kind {kind!r}; choose from {sorted(ROUTER_KINDS)}"
        ) from None
    return cls(lab, ns, **kwargs)
