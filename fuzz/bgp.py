"""Fuzz the BGP decoder (vipgate.bgp.wire): whole streams, split streams, framed bodies.

Input: byte 0 chooses the mode -- bit 0: the session has 4-octet AS numbers; bit 1: the rest is
one message *body* framed here with a valid header, its type from byte 1 (every type, and an
unknown one, are reachable); otherwise the rest is a raw stream. Byte 1 (stream mode) seeds the
split points.
"""

from __future__ import annotations

import random

from vipgate.bgp.wire import (
    HEADER_LEN,
    MARKER,
    MAX_MESSAGE_LEN,
    SUBCODE_NAMES,
    BgpError,
    Decoder,
    ErrorCode,
    Keepalive,
    Message,
    Notification,
    Open,
    OpenError,
    RouteRefresh,
    SessionContext,
    Update,
    encode,
)

# (code, subcode) a receiver may send about a received message (RFC 4271 6.1-6.3: header,
# OPEN -- 0 "Unspecific" for a malformed optional parameter -- and UPDATE errors; RFC 7313 5).
_RECEIVED: set[int] = {
    ErrorCode.MESSAGE_HEADER_ERROR,
    ErrorCode.OPEN_MESSAGE_ERROR,
    ErrorCode.UPDATE_MESSAGE_ERROR,
    ErrorCode.ROUTE_REFRESH_MESSAGE_ERROR,
}
ALLOWED = {k for k in SUBCODE_NAMES if k[0] in _RECEIVED} | {
    (ErrorCode.OPEN_MESSAGE_ERROR, OpenError.UNSPECIFIC)
}
TYPES = (1, 2, 3, 4, 5)


class Crash(AssertionError):
    """A property of the decoder did not hold (the fuzzer reports it as a crash)."""


Outcome = tuple[str, object]  # ("message", Message) or ("error", (code, subcode, data, handling))


def _run(chunks: list[bytes], ctx: SessionContext) -> list[Outcome]:
    """Feed `chunks` one after another; the messages and errors in order (stops at a fatal)."""
    d = Decoder(ctx)
    out: list[Outcome] = []
    for chunk in chunks:
        d.feed(chunk)
        while True:
            try:
                m = d.next_message()
            except BgpError as e:
                _check_error(e)
                out.append(("error", (e.code, e.subcode, e.data, e.handling)))
                if e.fatal:
                    _check_broken(d, e)
                    return out
                assert e.update is not None
                out.append(("message", e.update))
                continue
            if m is None:
                break
            out.append(("message", m))
    return out


def _check_error(e: BgpError) -> None:
    if (e.code, e.subcode) not in ALLOWED:
        raise Crash(f"NOTIFICATION code {e.code}/{e.subcode} is not for a received message: {e}")
    if e.code != ErrorCode.UPDATE_MESSAGE_ERROR and not e.fatal:
        raise Crash(f"a non-UPDATE error must reset the session: {e}")
    if not e.fatal and not isinstance(e.update, Update):
        raise Crash(f"{e.handling} without the UPDATE that stands: {e}")
    if len(e.data) > MAX_MESSAGE_LEN:
        raise Crash(f"NOTIFICATION data of {len(e.data)} octets")


def _check_broken(d: Decoder, e: BgpError) -> None:
    try:
        d.next_message()
    except BgpError as again:
        if again is not e:
            raise Crash("a broken decoder raised another error") from again
    else:
        raise Crash("a session-reset error left the decoder usable")


def _roundtrip(m: Message, ctx: SessionContext) -> None:
    """A decoded message encodes to bytes that decode to an equal message."""
    try:
        data = encode(m, ctx)
    except Exception as e:
        raise Crash(f"cannot encode a decoded {type(m).__name__}: {e!r}\n{m!r}") from e
    d = Decoder(ctx)
    d.feed(data)
    try:
        again = d.next_message()
    except BgpError as e:
        raise Crash(f"a decoded {type(m).__name__} re-encodes to an invalid message: {e}") from e
    if again != m or d.buffered:
        raise Crash(f"round trip changed the message:\n{m!r}\n{again!r}")


def frame(msg_type: int, body: bytes) -> bytes:
    body = body[: MAX_MESSAGE_LEN - HEADER_LEN]
    return MARKER + (HEADER_LEN + len(body)).to_bytes(2, "big") + bytes([msg_type]) + body


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    ctx = SessionContext(as4=bool(data[0] & 1))
    if data[0] & 2:
        t = data[1] % 7  # 0 and 6: unknown types
        stream = frame(t if t in TYPES else (0 if t == 0 else 200), data[2:])
    else:
        stream = data[2:]
    whole = _run([stream], ctx)
    rng = random.Random(data[1])
    cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, 1 + data[1] % 8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    split = _run(chunks, ctx)
    if split != whole:
        raise Crash(f"split stream decoded differently:\n{whole!r}\n{split!r}")
    for i, (kind, value) in enumerate(whole):
        # an UPDATE that came after a treat-as-withdraw/discard error is not its bytes any more
        if kind == "message" and not (i > 0 and whole[i - 1][0] == "error"):
            assert isinstance(value, Open | Update | Notification | Keepalive | RouteRefresh)
            _roundtrip(value, ctx)
