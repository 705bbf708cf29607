"""Certificates and keys that change on disk: when the probe loads its TLS material again.

kubeadm renews the client certificates (``kubeadm certs renew``: new files renamed over the old
ones), RKE2 rotates its own; a probe that read them once would present an expired certificate
one day and fail every check on every node at once. The pure decision is here; the probe's TLS
context builder (:mod:`vipgate.health.probe`) stats and reads the files and builds the context.

Rules:

1. The files (CA bundle, client certificate, client key; a path "" is not looked at) are looked
   at no more than once per ``interval`` (the check period), before a check.
2. A file's stamp is the SHA-256 of its bytes, or ``None`` when it cannot be read; the bytes
   are read and hashed again only when its mtime or size changed since the last look
   (:class:`Stamper`), and a file rewritten with the same bytes is not a change.
3. The material is loaded again when the set of stamps differs from the one it was loaded from
   and from the one that last failed to load: a file that does not load is tried once per
   change, not at every look.
4. A load that fails (a half-written or missing file, a key that does not match the
   certificate, a certificate expired or not yet valid) keeps the loaded material; it is
   reported once per change, with its cause; the next change is tried again, and files back
   to those in use end the failure (nothing to load).
5. A load that succeeds replaces the material; the kept-alive connection is closed so that the
   next check connects with it (the server authenticated the old connection with the old
   certificate). Neither is a failed check: the route does not change.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

Stamp = str | None
"""The SHA-256 (hex) of one file's bytes, or None when it cannot be read (rule 2)."""

Stamps = tuple[Stamp, ...]


class Look(Enum):
    """What a look at the files decided (rules 1, 3)."""

    NOT_DUE = "not_due"  # looked less than an interval ago
    UNCHANGED = "unchanged"  # same as the loaded material, or as the last failed load
    LOAD = "load"  # changed: build the material again
    BACK = "back"  # after a failed load, the files are again those in use: the failure is over


@dataclass
class Reload:
    """The decision of rules 1, 3-5 (no I/O): fed the time and the files' stamps."""

    interval: float
    loaded: Stamps | None = None  # the stamps the material in use was loaded from
    failed: Stamps | None = None  # the stamps of the last load that failed
    next_look: float = float("-inf")
    reloads: int = 0  # successful loads after the first
    errors: int = 0  # failed loads after the first
    last_ok: bool = True  # the last load's outcome (the first load counts)

    def due(self, now: float) -> bool:
        """Rule 1: time to look at the files."""
        return self.loaded is not None and now >= self.next_look

    def look(self, now: float, stamps: Stamps) -> Look:
        """Rules 1, 3: after a look at `now` that found `stamps`."""
        if not self.due(now):
            return Look.NOT_DUE
        self.next_look = now + self.interval
        if stamps == self.loaded and self.failed is not None:
            self.failed, self.last_ok = None, True
            return Look.BACK
        if stamps == self.loaded or stamps == self.failed:
            return Look.UNCHANGED
        return Look.LOAD

    def first(self, stamps: Stamps) -> None:
        """The material was loaded at start from `stamps` (the baseline of rule 3)."""
        self.loaded = stamps

    def succeeded(self, stamps: Stamps) -> None:
        """Rule 5."""
        self.loaded, self.failed = stamps, None
        self.reloads += 1
        self.last_ok = True

    def failed_load(self, stamps: Stamps) -> None:
        """Rule 4: reported once (the caller reports; the same stamps are not tried again)."""
        self.failed = stamps
        self.errors += 1
        self.last_ok = False


@dataclass
class Stamper:
    """Rule 2's I/O: the stamps of the files, the digest only when mtime or size moved."""

    paths: tuple[str, ...]
    read: Callable[[str], bytes] = field(default=lambda p: Path(p).read_bytes())
    _seen: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # mtime, size, digest

    def stamps(self) -> Stamps:
        return tuple(self._stamp(p) if p else None for p in self.paths)

    def _stamp(self, path: str) -> Stamp:
        try:
            st = os.stat(path)
            prev = self._seen.get(path)
            if prev is not None and prev[:2] == (st.st_mtime_ns, st.st_size):
                return prev[2]
            data = self.read(path)
        except OSError:
            return None
        digest = hashlib.sha256(data).hexdigest()
        self._seen[path] = (st.st_mtime_ns, st.st_size, digest)
        return digest
