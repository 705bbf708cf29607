"""Network namespaces for the vipgate lab: creation, wiring, processes and cleanup.

Rules this module keeps:

- Every namespace a Lab creates is named ``<tag>-<role>``. The tag is ``vg`` + the creating PID in
  base 36 (5 digits, zero padded) + a per-process counter, e.g. ``vg02q3x1``. Before creating any
  namespace a Lab writes a marker ``/run/vglab/<tag>.json`` with that PID and its start time.
- The stale sweep (run by every new Lab) only touches namespaces that belong to a marker whose
  process is gone (dead PID, or a PID reused by another process). Live runs are never touched;
  namespaces without a marker are never touched.
- Interfaces are created inside namespaces (``ip -n NS link add ... netns OTHER``): nothing is ever
  put into the host namespace, and names inside a namespace are short and local (eth0, br0, n1).
- Processes are started with ``ip netns exec`` (which execs the command, so the Popen PID is the
  command's PID) and tracked; cleanup signals exactly the tracked PIDs, then any process still
  inside this Lab's own namespaces (they can only come from this run), then deletes the
  namespaces and the work directory.
- Cleanup runs on ``close()``, at ``with`` exit (success or exception, Ctrl-C included), at
  interpreter exit (atexit) and on SIGTERM (handler installed only if SIGTERM is at its default).
- Every wait is bounded.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any

from lab.wait import LabTimeout, wait_for

log = logging.getLogger("lab.netns")

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER_DIR = Path("/run/vglab")
NETNS_DIR = Path("/run/netns")
TAG_PREFIX = "vg"
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_counter = itertools.count(1)
_live_labs: list[Lab] = []
_live_lock = threading.Lock()
_handlers_installed = False


class LabError(RuntimeError):
    """A lab command failed."""


def _b36(n: int) -> str:
    if n == 0:
        return "0"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = _B36[r] + out
    return out


def make_tag(pid: int | None = None, n: int | None = None) -> str:
    """Return a fresh per-run tag: ``vg`` + pid in base 36 (5 chars) + counter in base 36."""
    pid = os.getpid() if pid is None else pid
    n = next(_counter) if n is None else n
    return f"{TAG_PREFIX}{_b36(pid).rjust(5, '0')}{_b36(n)}"


def tag_pid(tag: str) -> int | None:
    """Inverse of make_tag for the PID part; None if `tag` is not shaped like one of ours."""
    if not tag.startswith(TAG_PREFIX) or len(tag) < 8:
        return None
    try:
        return int(tag[2:7], 36)
    except ValueError:
        return None


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), None if no such PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = stat.rsplit(")", 1)[1].split()
    return rest[19] if len(rest) > 19 else None


def _run(
    args: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 10.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        cp = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(args)}") from exc
    if check and cp.returncode != 0:
        raise LabError(
            f"command failed (rc={cp.returncode}): {' '.join(args)}\n"
            f"stdout: {cp.stdout.strip()}\nstderr: {cp.stderr.strip()}"
        )
    return cp


def python_cmd(module: str, *args: str) -> list[str]:
    """argv running ``python -m MODULE ARGS`` with this interpreter and the repo importable.

    ``env`` execs python, so a Popen of this argv has python's PID.
    """
    return ["env", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m", module, *args]


def list_netns() -> list[str]:
    """Names of all named network namespaces on the machine."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def netns_pids(ns: str) -> list[int]:
    """PIDs of the processes whose network namespace is `ns`."""
    cp = _run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in cp.stdout.split() if x.isdigit()]


def _kill_pids(pids: Sequence[int], grace: float = 2.0) -> None:
    """SIGTERM, wait up to `grace` s, then SIGKILL. Only the given PIDs."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)  # a frozen process cannot act on SIGTERM
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _pid_alive(p)]
        if alive:
            time.sleep(0.02)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    # A zombie still "exists" for kill(0); look at /proc state instead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _remove_frr_crashlog(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/var/tmp/frr/bgpd.{pid}").unlink()
    d = Path(f"/var/tmp/frr/bgpd.{pid}")
    if d.is_dir():
        shutil.rmtree(d, ignore_errors=True)


def sweep_stale(dry_run: bool = False) -> list[str]:
    """Delete namespaces (and their processes and work dirs) left behind by dead lab runs.

    Only namespaces named ``<tag>-*`` whose marker ``/run/vglab/<tag>.json`` names a PID that no
    longer lives (or now belongs to another process) are touched. Returns the deleted names.
    """
    deleted: list[str] = []
    try:
        markers = sorted(MARKER_DIR.glob(f"{TAG_PREFIX}*.json"))
    except OSError:
        return deleted
    all_ns = list_netns()
    for marker in markers:
        tag = marker.stem
        try:
            info = json.loads(marker.read_text())
            pid = int(info["pid"])
            start = str(info.get("start", ""))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if tag_pid(tag) != pid:
            continue
        now_start = _proc_start_time(pid)
        if now_start is not None and (not start or now_start == start):
            continue  # creating process still alive: hands off
        mine = [ns for ns in all_ns if ns.startswith(f"{tag}-")]
        if dry_run:
            deleted.extend(mine)
            continue
        for ns in mine:
            pids = netns_pids(ns)
            if pids:
                log.warning("stale lab %s: killing leftover pids %s in %s", tag, pids, ns)
                _kill_pids(pids, grace=1.0)
                for p in pids:
                    _remove_frr_crashlog(p)
            _run(["ip", "netns", "del", ns], check=False)
            deleted.append(ns)
        wd = info.get("workdir")
        if isinstance(wd, str) and Path(wd).name.startswith(tag):
            shutil.rmtree(wd, ignore_errors=True)
        with contextlib.suppress(OSError):
            marker.unlink()
    if deleted:
        log.info("stale sweep removed %d namespaces: %s", len(deleted), " ".join(deleted))
    return deleted


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _cleanup_all() -> None:
    with _live_lock:
        labs = list(_live_labs)
    for lab in reversed(labs):
        if lab.creator_pid == os.getpid():
            with contextlib.suppress(Exception):
                lab.close()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _cleanup_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _on_sigterm)
    # SIGINT raises KeyboardInterrupt: `with Lab()` unwinds and closes; atexit covers the rest.


class Lab:
    """A set of network namespaces and processes with one owner and one lifetime.

    Use as a context manager::

        with Lab() as lab:
            r = lab.add_netns("r")            # -> "vg02q3x1-r"
            n = lab.add_netns("n1")
            lab.veth(r, "n1", n, "eth0")
            ...
    """

    def __init__(self, *, sweep: bool = True, keep_workdir: bool | None = None) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces)")
        if sweep:
            sweep_stale()
        self.creator_pid = os.getpid()
        self.tag = make_tag()
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self._closed = False
        self._cleaned = False
        self._lock = threading.Lock()
        if keep_workdir is None:
            keep_workdir = os.environ.get("VG_LAB_KEEP", "") not in ("", "0")
        self.keep_workdir = keep_workdir
        MARKER_DIR.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/tmp"))
        os.chmod(self.workdir, 0o755)
        self._marker = MARKER_DIR / f"{self.tag}.json"
        self._marker.write_text(
            json.dumps(
                {
                    "pid": self.creator_pid,
                    "start": _proc_start_time(self.creator_pid) or "",
                    "workdir": str(self.workdir),
                    "created": time.time(),
                }
            )
        )
        with _live_lock:
            _live_labs.append(self)
        _install_handlers()

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab(tag={self.tag!r}, namespaces={self.namespaces!r})"

    # -- namespaces ------------------------------------------------------------------------
    def ns_name(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def add_netns(self, role: str) -> str:
        """Create namespace ``<tag>-<role>`` with lo up and IPv6 DAD off; return its name."""
        self._check_open()
        name = self.ns_name(role)
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.sysctl(
            name,
            {
                "net.ipv6.conf.all.accept_dad": "0",
                "net.ipv6.conf.default.accept_dad": "0",
            },
        )
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ip -n NS ARGS...``."""
        return _run(["ip", "-n", ns, *args], check=check)

    def ip_json(self, ns: str, *args: str) -> Any:
        """Run ``ip -j -n NS ARGS...`` and decode the JSON (``[]`` for empty output)."""
        cp = _run(["ip", "-j", "-n", ns, *args])
        out = cp.stdout.strip()
        return json.loads(out) if out else []

    def run(
        self,
        ns: str,
        args: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 10.0,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside `ns` (``ip netns exec``); capture text output."""
        self._check_ns(ns)
        return _run(["ip", "netns", "exec", ns, *args], check=check, timeout=timeout, input=input)

    def popen(
        self,
        ns: str,
        args: Sequence[str],
        *,
        stdout: int | IO[Any] | None = subprocess.DEVNULL,
        stderr: int | IO[Any] | None = subprocess.STDOUT,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log_name: str | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start a background process inside `ns`; tracked so cleanup stops exactly this PID.

        ``log_name`` sends stdout+stderr to ``<workdir>/<log_name>.log`` (overrides stdout).
        The child gets PR_SET_PDEATHSIG=SIGKILL when started from the main thread, so it dies
        with the test process even if cleanup never runs (kill -9 of the test).
        """
        self._check_ns(ns)
        logf: IO[Any] | None = None
        if log_name is not None:
            logf = open(self.workdir / f"{log_name}.log", "ab")  # noqa: SIM115
            stdout = logf
            stderr = subprocess.STDOUT
        preexec = _set_pdeathsig if threading.current_thread() is threading.main_thread() else None
        try:
            p: subprocess.Popen[Any] = subprocess.Popen(
                ["ip", "netns", "exec", ns, *args],
                stdout=stdout,
                stderr=stderr,
                stdin=stdin,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                preexec_fn=preexec,
                start_new_session=True,
                **kwargs,
            )
        finally:
            if logf is not None:
                logf.close()
        with self._lock:
            self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[Any], grace: float = 3.0) -> int | None:
        """SIGTERM one tracked process, SIGKILL after `grace` s; return its exit status."""
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGCONT)
                p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(grace)
        with self._lock:
            if p in self.procs:
                self.procs.remove(p)
        return p.returncode

    def logfile(self, log_name: str) -> Path:
        return self.workdir / f"{log_name}.log"

    def read_log(self, log_name: str) -> str:
        try:
            return self.logfile(log_name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- links -----------------------------------------------------------------------------
    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, *, up: bool = True) -> None:
        """Create a veth pair with end `if_a` in `ns_a` and `if_b` in `ns_b` (never the host)."""
        self._check_ns(ns_a)
        self._check_ns(ns_b)
        if len(if_a) > 15 or len(if_b) > 15:
            raise LabError(f"interface name too long: {if_a!r} / {if_b!r}")
        self.ip(ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        if up:
            self.ip(ns_a, "link", "set", if_a, "up")
            self.ip(ns_b, "link", "set", if_b, "up")

    def bridge(self, ns: str, name: str) -> None:
        """Create a bridge (no STP, forwarding at once) and set it up."""
        self.ip(ns, "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        self.ip(ns, "link", "set", name, "up")

    def set_master(self, ns: str, ifname: str, bridge: str) -> None:
        self.ip(ns, "link", "set", ifname, "master", bridge)

    def link_up(self, ns: str, ifname: str) -> None:
        self.ip(ns, "link", "set", ifname, "up")

    def link_down(self, ns: str, ifname: str) -> None:
        self.ip(ns, "link", "set", ifname, "down")

    def addr(self, ns: str, ifname: str, cidr: str) -> None:
        """Add an address; IPv6 addresses get ``nodad`` so they can be bound at once."""
        extra = ["nodad"] if ":" in cidr else []
        self.ip(ns, "addr", "add", cidr, "dev", ifname, *extra)

    def route(self, ns: str, *spec: str) -> None:
        """``ip -n NS route replace SPEC`` (``-6`` is added for IPv6 destinations/gateways)."""
        fam = ["-6"] if any(":" in s for s in spec) else []
        self.ip(ns, *fam, "route", "replace", *spec)

    def sysctl(self, ns: str, values: Mapping[str, str], *, check: bool = True) -> None:
        args = [f"{k}={v}" for k, v in values.items()]
        self.run(ns, ["sysctl", "-q", "-w", *args], check=check)

    def operstate(self, ns: str, ifname: str) -> str:
        data = self.ip_json(ns, "link", "show", "dev", ifname)
        return str(data[0].get("operstate", "UNKNOWN")) if data else "MISSING"

    def wait_carrier(self, links: Sequence[tuple[str, str]], timeout: float = 5.0) -> float:
        """Wait until every (ns, ifname) reports operstate UP; return the elapsed seconds."""
        pending = list(links)

        def all_up() -> bool:
            nonlocal pending
            pending = [(ns, i) for ns, i in pending if self.operstate(ns, i) != "UP"]
            return not pending

        try:
            return wait_for(all_up, timeout, 0.02, what="veth carrier")
        except LabTimeout as exc:
            raise LabTimeout(f"{exc}; still down: {pending}") from None

    # -- cleanup ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.tag} is closed")

    def _check_ns(self, ns: str) -> None:
        self._check_open()
        if ns not in self.namespaces:
            raise LabError(f"{ns!r} is not a namespace of lab {self.tag}")

    def _kill_in(self, ns: str) -> None:
        pids = netns_pids(ns)
        if pids:
            _kill_pids(pids)
            for pid in pids:
                _remove_frr_crashlog(pid)
        with self._lock:
            gone = [p for p in self.procs if p.pid in pids]
            self.procs = [p for p in self.procs if p.pid not in pids]
        for p in gone:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(1.0)

    def close(self) -> None:
        """Stop tracked processes, then anything left in our namespaces; delete namespaces."""
        # Re-entrant: a Ctrl-C during close() leaves _cleaned False, so atexit runs it again
        # (every step is idempotent).
        with self._lock:
            if self._cleaned:
                return
            self._closed = True
            procs = list(self.procs)
        # 1. exactly the tracked PIDs
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
        deadline = time.monotonic() + 3.0
        for p in procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2.0)
            _remove_frr_crashlog(p.pid)
        # 2. anything still inside our own namespaces (started by this run, untracked)
        for ns in list(self.namespaces):
            pids = netns_pids(ns)
            if pids:
                log.warning("lab %s: stopping untracked pids %s left in %s", self.tag, pids, ns)
                _kill_pids(pids)
                for pid in pids:
                    _remove_frr_crashlog(pid)
        # 3. namespaces (veths and bridges go with them)
        for ns in reversed(self.namespaces):
            _run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self._marker.unlink()
        self._cleaned = True
        with _live_lock:
            if self in _live_labs:
                _live_labs.remove(self)
