"""The probe's pure response classifier (ResponseClassifier): bytes in, verdict out, no I/O."""

from __future__ import annotations

import pytest

from vipgate.health.probe import BODY_LIMIT, SHUTDOWN_LINE, ErrorKind, ResponseClassifier

HEADERS = [(b"Host", b"192.0.2.11:6443")]


def _answer(raw: bytes, *, limit: int = BODY_LIMIT, split: int = 0) -> ResponseClassifier:
    c = ResponseClassifier(limit)
    assert c.request(b"/livez", HEADERS).startswith(b"GET /livez HTTP/1.1\r\n")
    c.receive(b"")
    step = split or len(raw) or 1
    for i in range(0, len(raw), step):
        c.receive(raw[i : i + step])
    return c


@pytest.mark.parametrize("split", [0, 1, 7])
def test_a_framed_200_is_healthy_and_keeps_the_connection(split: int) -> None:
    c = _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", split=split)
    assert c.verdict is not None and c.verdict.ok and c.verdict.status == 200
    assert c.verdict.text == "" and c.reusable
    assert c.request(b"/readyz", HEADERS)  # the next request on the same connection


def test_a_500_keeps_the_connection_and_quotes_its_body() -> None:
    c = _answer(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n\r\n[-]etcd\nx")
    assert c.verdict is not None and not c.verdict.ok and c.reusable
    assert c.verdict.error is ErrorKind.HTTP_STATUS
    assert c.verdict.text == "HTTP 500 Internal Server Error: [-]etcd x"
    assert not c.verdict.shutdown


def test_the_shutdown_line_in_a_500() -> None:
    body = b"[+]ping ok\n" + SHUTDOWN_LINE + b": reason withheld\nreadyz check failed\n"
    c = _answer(b"HTTP/1.1 500 X\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body), split=5)
    assert c.verdict is not None and c.verdict.shutdown
    assert c.verdict.text == "HTTP 500: [-]shutdown failed"


def test_connection_close_and_an_unended_body_cost_the_reuse_only() -> None:
    c = _answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    assert c.verdict is not None and c.verdict.ok and not c.reusable
    c = _answer(b"HTTP/1.1 200 OK\r\n\r\nok")  # close-delimited: ends only with the close
    assert c.verdict is None and c.status == 200
    c.closed()
    assert c.verdict is not None and c.verdict.ok


def test_the_body_bound() -> None:
    c = _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n0123456789A", limit=10)
    assert c.verdict is not None and c.verdict.ok and not c.reusable
    c = _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", limit=10)
    assert c.verdict is not None and c.reusable


def test_closes_before_the_headers() -> None:
    c = _answer(b"")
    c.closed(ConnectionResetError(104, "Connection reset by peer"))
    v = c.verdict
    assert v is not None and v.error is ErrorKind.RESET and v.stale and v.status is None
    assert v.text == (
        "connection reset by the server before the response ([Errno 104] Connection reset by peer)"
    )
    c = _answer(b"HTTP/1.1 20")
    c.closed()
    v = c.verdict
    assert v is not None and v.error is ErrorKind.RESET and not v.stale
    assert v.text == "connection closed by the server mid-response"


def test_invalid_http_and_the_deadline() -> None:
    c = _answer(b"ICY 200 OK\r\n\r\n")
    v = c.verdict
    assert v is not None and v.error is ErrorKind.PROTOCOL and v.text.startswith("invalid HTTP")
    c = _answer(b"HTTP/1.1 503 Busy\r\nContent-Length: 100\r\n\r\nsome")
    assert c.verdict is None and c.status == 503 and c.deadline_passed() is not None
    v = c.verdict
    assert v is not None and v.text == "HTTP 503" and not c.reusable
    c = _answer(b"HTTP/1.1 200 OK\r\n")
    assert c.deadline_passed() is None  # the probe names the stage it timed out in


def test_a_redirect_is_not_followed_and_the_text_is_one_printable_line() -> None:
    c = _answer(b"HTTP/1.1 302 Found\r\nLocation: /x\x1b[2J\r\nContent-Length: 0\r\n\r\n")
    v = c.verdict
    assert v is not None and v.error is ErrorKind.HTTP_STATUS
    assert v.text == "HTTP 302 Found -> /x\\x1b[2J (redirects are not followed)"
