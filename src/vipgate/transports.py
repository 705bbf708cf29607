"""What the asyncio adapters do with a TCP transport once it has closed.

Python 3.11's selector transport keeps a bound method of itself (``_read_ready_cb``) after it
has closed: a reference cycle, so each closed connection -- its transport, socket object and
address tuples -- waits for the cyclic garbage collector, and once it lived long enough to
reach the oldest generation, for a full collection, which runs only when the objects promoted
since the last one exceed a quarter of the long-lived ones (bench/README.md, soak: the Python
heap's slope). Python 3.12's ``close()`` drops that method; :func:`release_closed` does the
same once the transport is closing: its reader is already removed then, so the method can no
longer be called.
"""

from __future__ import annotations

import asyncio

__all__ = ["release_closed"]


def release_closed(transport: asyncio.BaseTransport | None) -> None:
    """Break a closing TCP transport's reference cycle; any other transport: nothing."""
    closed = transport is not None and transport.is_closing()
    if closed and getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = None  # type: ignore[union-attr]
