"""A vipgate BGP speaker process in a lab namespace, driven over stdin (interop tests, bench).

It runs ``python -m lab.speaker_driver`` inside a node namespace; commands go to its stdin, JSON
events come back on stdout, its log (stderr) goes to a file in the lab's work directory.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.netns import Lab, python_cmd
from lab.topology import NODE_AS, Node


def unanswered_probes(lab: Lab, node: Node) -> int | None:
    """TCP keepalive probes of the node's BGP connection left unanswered (`ss`), None
    without such a connection or timer."""
    out = lab.run(node.ns, ["ss", "-tnoH", "state", "established", "( dport = :179 )"]).stdout
    m = re.search(r"timer:\(keepalive,[^,]+,(\d+)\)", out)
    return int(m.group(1)) if m else None


class SpeakerProc:
    """A vipgate speaker process in a lab namespace (stdin commands, JSON events on stdout)."""

    _n = 0

    def __init__(
        self,
        lab: Lab,
        node: Node,
        peers: Sequence[str],
        *,
        local_as: int = NODE_AS,
        announce: Sequence[str] = (),
        announce_range: str | None = None,
        hold: int = 30,
        keepalive: int = 10,
        connect_timeout: float = 2.0,
        extra: Sequence[str] = (),
    ) -> None:
        SpeakerProc._n += 1
        self.log_path: Path = lab.workdir / f"vipgate-{node.name}-{SpeakerProc._n}.log"
        args = [
            "--router-id",
            node.ip4,
            "--local-as",
            str(local_as),
            "--hold",
            str(hold),
            "--keepalive",
            str(keepalive),
            "--connect-timeout",
            str(connect_timeout),
            "--log-level",
            "DEBUG",
            *extra,
        ]
        for p in peers:
            args += ["--peer", p]
        for a in announce:
            args += ["--announce", a]
        if announce_range:
            args += ["--announce-range", announce_range]
        self.lab = lab
        with open(self.log_path, "ab") as logf:
            self.proc = lab.popen(
                node.ns,
                python_cmd("lab.speaker_driver", *args),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=logf,
            )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_event("started", 10.0)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def wait_event(self, ev: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self.events.empty()):
                raise AssertionError(f"no {ev!r} event from the speaker\n{self.log()[-3000:]}")
            try:
                e = self.events.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if e.get("ev") == ev:
                return e

    def graceful(self, on: bool = True, timeout: float = 5.0) -> float:
        """Re-announce with (on) / without (off) GRACEFUL_SHUTDOWN 65535:0 (RFC 8326); returns
        the monotonic time just before the speaker wrote the UPDATEs."""
        self.send(f"graceful {'on' if on else 'off'}")
        return float(self.wait_event("graceful", timeout)["t0"])

    def deprefer(self, prefix: str, on: bool = True, timeout: float = 5.0) -> float:
        """Announce `prefix` de-preferred (on) or plainly again (off); returns the monotonic
        time just before the speaker wrote the UPDATEs."""
        self.send(f"deprefer {prefix} {'on' if on else 'off'}")
        return float(self.wait_event("deprefer", timeout)["t0"])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self, message: str = "vipgate test done", timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.send(f"close {message}")
            self.wait_event("closed", timeout)
            self.proc.wait(timeout)
        self.lab.stop(self.proc)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.lab.stop(self.proc)
