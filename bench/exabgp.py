"""ExaBGP 5.0.15 with its healthcheck as the benchmark reference (bench/README.md,
"Reference figures").

ExaBGP comes from PyPI into a separate benchmark virtualenv (``.venv-bench`` at the repository
root, or ``$VG_BENCH_VENV``), created on first use; it is never a runtime dependency of vipgate.

Per node, one ``exabgp server`` process with one API process, the healthcheck (interval 1,
fall 3, rise 1, timeout 1, withdraw-on-down, curl against the apiserver with the lab CA). The
traps listed in bench/README.md ("Reference figures") are handled:
``exabgp_daemon_user=root exabgp_daemon_drop=false exabgp_api_cli=false`` (no privilege drop, no
CLI pipes), ``--no-ip-setup`` (the bench puts the
VIP on lo itself, like an operator would), ``--no-syslog``, ``--withdraw-on-down`` (else DOWN
re-announces with MED 1000), whole seconds for ``--timeout``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.netns import REPO_ROOT, Lab
from lab.topology import ROUTER_AS, ROUTER_IP4, VIP4, Node

EXABGP_VERSION = "5.0.15"
DEFAULT_VENV = REPO_ROOT / ".venv-bench"


def bench_venv() -> Path:
    return Path(os.environ.get("VG_BENCH_VENV", str(DEFAULT_VENV)))


def _venv_exabgp_version(python: Path) -> str | None:
    if not python.exists():
        return None
    cp = subprocess.run(
        [str(python), "-c", "from exabgp.version import version; print(version)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return cp.stdout.strip() if cp.returncode == 0 else None


def ensure_exabgp(venv: Path | None = None, *, extra: tuple[str, ...] = ()) -> Path:
    """Create the benchmark venv with exabgp==5.0.15 (and `extra` packages) if missing.

    Returns the venv's python.
    """
    venv = venv or bench_venv()
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"bench: creating {venv} (python -m venv)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    if _venv_exabgp_version(python) != EXABGP_VERSION:
        print(f"bench: pip install exabgp=={EXABGP_VERSION} into {venv}", file=sys.stderr)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"exabgp=={EXABGP_VERSION}", *extra],
            check=True,
            timeout=600,
        )
    got = _venv_exabgp_version(python)
    if got != EXABGP_VERSION:
        raise RuntimeError(f"exabgp {EXABGP_VERSION} expected in {venv}, found {got}")
    return python


def healthcheck_args(
    ca: Path, vip: str = VIP4, period: int = 1, timeout: int = 1, fast_interval: int | None = None
) -> list[str]:
    """The healthcheck's options (the reference setup of bench/README.md; `fast_interval`, the
    interval while the state is changing, defaults to `period`)."""
    curl = (
        f"curl -sf --cacert {shlex.quote(str(ca))} --resolve kubernetes:6443:127.0.0.1 "
        "https://kubernetes:6443/livez"
    )
    return [
        "--interval",
        str(period),
        "--fast-interval",
        str(period if fast_interval is None else fast_interval),
        "--fall",
        "3",
        "--rise",
        "1",
        "--timeout",
        str(timeout),
        "--withdraw-on-down",
        "--no-ip-setup",
        "--no-syslog",
        "--ip",
        vip,
        "--cmd",
        curl,
    ]


@dataclass
class ExabgpSpeaker:
    """One ExaBGP server + healthcheck in a node namespace."""

    lab: Lab
    node: Node
    python: Path
    ca: Path
    hold: int = 9
    period: int = 1
    timeout: int = 1
    fast_interval: int | None = None  # None: the period
    proc: subprocess.Popen[Any] | None = None
    dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.dir = self.lab.workdir / f"exabgp-{self.node.name}"
        self.dir.mkdir(exist_ok=True)

    @property
    def log_name(self) -> str:
        return f"exabgp-{self.node.name}"

    def write_config(self) -> Path:
        hc = self.dir / "healthcheck.sh"
        args = healthcheck_args(
            self.ca, period=self.period, timeout=self.timeout, fast_interval=self.fast_interval
        )
        hc.write_text(
            "#!/bin/sh\n"
            + "exec "
            + " ".join(shlex.quote(a) for a in [str(self.python), "-m", "exabgp", "healthcheck"])
            + " "
            + " ".join(shlex.quote(a) for a in args)
            + "\n"
        )
        hc.chmod(0o755)
        conf = self.dir / "exabgp.conf"
        conf.write_text(
            "\n".join(
                [
                    "process healthcheck {",
                    f"    run {hc};",
                    "    encoder text;",
                    "}",
                    f"neighbor {ROUTER_IP4} {{",
                    f"    router-id {self.node.ip4};",
                    f"    local-address {self.node.ip4};",
                    "    local-as 65000;",
                    f"    peer-as {ROUTER_AS};",
                    f"    hold-time {self.hold};",
                    "    family { ipv4 unicast; }",
                    "    api { processes [ healthcheck ]; }",
                    "}",
                    "",
                ]
            )
        )
        return conf

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "exabgp_daemon_user": "root",
            "exabgp_daemon_drop": "false",
            "exabgp_api_cli": "false",
            "exabgp_log_destination": "stdout",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> None:
        conf = self.write_config()
        self.proc = self.lab.popen(
            self.node.ns,
            [str(self.python), "-m", "exabgp", "server", str(conf)],
            env=self.env(),
            log_name=self.log_name,
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def running(self) -> bool:
        return self.pid is not None

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None and self.proc.poll() is None
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float = 5.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Stop ExaBGP and its healthcheck (by PID; the healthcheck is its child)."""
        if self.proc is None:
            return
        kids = descendants(self.proc.pid) if self.proc.poll() is None else []
        self.lab.stop(self.proc, 5.0)
        for pid in kids:  # normally gone with their parent; never leave one behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    def log(self) -> str:
        return self.lab.read_log(self.log_name)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d.name))
    return kids


def descendants(pid: int) -> list[int]:
    """PIDs of every live descendant of `pid` (not `pid` itself)."""
    kids = _children_map()
    out: list[int] = []
    todo = list(kids.get(pid, []))
    while todo and len(out) < 10_000:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out
