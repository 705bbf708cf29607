"""Reach into a lab namespace from the demo process without starting a process per look.

``setns(2)`` with ``CLONE_NEWNET`` moves only the calling *thread* into another network
namespace, and a socket stays in the namespace it was created in. So a short-lived thread can
enter a node's namespace, create a socket and hand it back; the rest of the demo uses it from the
main thread. Nothing here touches the host namespace's network.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lab.netns import NETNS_DIR

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


class NetnsError(OSError):
    """Could not enter a namespace."""


def enter_netns(ns: str) -> None:
    """Move the calling thread into network namespace `ns` (``/run/netns/<ns>``).

    Only ever call this from a thread of its own: the thread cannot come back.
    """
    if threading.current_thread() is threading.main_thread():
        raise NetnsError(0, "enter_netns() must not run in the main thread")
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(Path(NETNS_DIR) / ns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in_netns(ns: str, fn: Callable[[], T], timeout: float = 5.0) -> T:
    """Run `fn` in a fresh thread inside namespace `ns`; return its result (bounded)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            enter_netns(ns)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    th = threading.Thread(target=target, name=f"netns-{ns}", daemon=True)
    th.start()
    th.join(timeout)
    if th.is_alive():
        raise TimeoutError(f"no answer from namespace {ns} within {timeout:g}s")
    if "error" in box:
        err = box["error"]
        assert isinstance(err, BaseException)
        raise err
    return box["value"]  # type: ignore[return-value]


def connect_in_netns(ns: str, host: str, port: int, timeout: float = 1.0) -> socket.socket:
    """A TCP connection from inside namespace `ns` (e.g. to a node's 127.0.0.1:2112)."""

    def make() -> socket.socket:
        s = socket.create_connection((host, port), timeout=timeout)
        return s

    return run_in_netns(ns, make, timeout + 2.0)


def http_get_in_netns(ns: str, host: str, port: int, path: str, timeout: float = 1.0) -> str:
    """Body of ``GET path`` over plain HTTP from inside `ns` (small bodies; bounded)."""
    with connect_in_netns(ns, host, port, timeout) as s:
        s.settimeout(timeout)
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        chunks: list[bytes] = []
        total = 0
        while total < 4 << 20:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
            total += len(data)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        raise OSError(f"GET {path}: {status.decode('latin-1', 'replace')}")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return body.decode("utf-8", "replace")


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {"name{labels}": value} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def scrape_metrics(ns: str, port: int = 2112, timeout: float = 1.0) -> dict[str, float]:
    """vipgate's metrics on 127.0.0.1:`port` inside node namespace `ns`."""
    return parse_metrics(http_get_in_netns(ns, "127.0.0.1", port, "/metrics", timeout))
