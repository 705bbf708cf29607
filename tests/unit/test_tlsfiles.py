"""TLS files that change on disk (vipgate.health.tlsfiles): the pure decision, the stamps, and
the probe loading them again (a CA file replaced by rename, a half-written certificate, a key
that does not match, an expired certificate) against a TLS server on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.unit.conftest import ApiserverPki
from tests.unit.test_probe import FakeApiserver, run
from vipgate.health.probe import ErrorKind, Probe
from vipgate.health.tlsfiles import Look, Reload, Stamper

A, B, C = ("a",), ("b",), ("c",)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        # (time, stamps, outcome of the load if one is made) -> the looks' results
        ([(0.0, A, None)], [Look.UNCHANGED]),
        (
            [(0.0, B, True), (0.5, C, None), (1.0, B, None)],
            [Look.LOAD, Look.NOT_DUE, Look.UNCHANGED],
        ),
        ([(0.0, B, False), (1.0, B, None), (2.0, C, True)], [Look.LOAD, Look.UNCHANGED, Look.LOAD]),
        ([(0.0, B, False), (1.0, A, None)], [Look.LOAD, Look.BACK]),  # back to the loaded
        ([(0.0, B, False), (1.0, C, False), (2.0, B, True)], [Look.LOAD, Look.LOAD, Look.LOAD]),
    ],
)
def test_reload_decisions(
    events: list[tuple[float, tuple[str], bool | None]], expected: list[Look]
) -> None:
    r = Reload(interval=1.0)
    assert not r.due(0.0)  # nothing loaded yet: the first load is the probe's
    r.first(A)
    got = []
    for now, stamps, ok in events:
        look = r.look(now, stamps)
        got.append(look)
        if look is Look.LOAD:
            assert ok is not None
            (r.succeeded if ok else r.failed_load)(stamps)
    assert got == expected


def test_reload_counts_and_last_outcome() -> None:
    r = Reload(interval=0.0)
    r.first(A)
    assert r.look(0.0, B) is Look.LOAD
    r.failed_load(B)
    assert (r.reloads, r.errors, r.last_ok) == (0, 1, False)
    assert r.look(1.0, B) is Look.UNCHANGED  # the same broken files: not tried, not reported
    assert r.look(2.0, C) is Look.LOAD
    r.succeeded(C)
    assert (r.reloads, r.errors, r.last_ok, r.failed) == (1, 1, True, None)


def test_stamps_follow_the_bytes_and_read_only_after_a_stat_change(tmp_path: Path) -> None:
    f = tmp_path / "ca.crt"
    f.write_bytes(b"one")
    reads: list[str] = []

    def read(p: str) -> bytes:
        reads.append(p)
        return Path(p).read_bytes()

    s = Stamper((str(f), "", str(tmp_path / "missing")), read=read)
    first = s.stamps()
    assert first[0] is not None and first[1:] == (None, None)
    assert s.stamps() == first and len(reads) == 1  # stat unchanged: not read again
    os.utime(f, ns=(1, 1))  # touched: read again, same bytes, same stamp
    assert s.stamps() == first and len(reads) == 2
    f.write_bytes(b"two")
    assert s.stamps()[0] != first[0]


def _replace(src: Path, dst: Path) -> None:
    """As ``kubeadm certs renew``: write beside, then rename over the file."""
    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def test_probe_loads_a_ca_file_replaced_by_rename(pki: ApiserverPki, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    shutil.copyfile(pki.other_ca, ca)
    told: list[tuple[bool, str]] = []

    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(srv.url(), 2.0, str(ca), "kubernetes", reload_interval=0.05)
            probe.on_tls_reload = lambda ok, text: told.append((ok, text))
            assert (await probe.check()).error is ErrorKind.TLS_VERIFY
            _replace(pki.ca, ca)
            await asyncio.sleep(0.06)
            assert (await probe.check()).ok  # the next check after the period uses it
            assert told == [(True, f"loaded again: CA file {ca}")]
            await probe.close()

    run(main)


@pytest.mark.parametrize("broken", ["half-written", "wrong key", "expired"])
def test_probe_keeps_the_loaded_client_certificate_when_the_new_one_does_not_load(
    pki: ApiserverPki, tmp_path: Path, broken: str
) -> None:
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    shutil.copyfile(pki.cert, cert)
    shutil.copyfile(pki.key, key)
    told: list[tuple[bool, str]] = []

    async def main() -> None:
        async with FakeApiserver(pki.server_context()) as srv:
            probe = Probe(
                srv.url(), 2.0, str(pki.ca), "kubernetes", str(cert), str(key), reload_interval=0.01
            )
            probe.on_tls_reload = lambda ok, text: told.append((ok, text))
            assert (await probe.check()).ok
            if broken == "half-written":
                cert.write_bytes(pki.cert.read_bytes()[:300])
            elif broken == "wrong key":
                _replace(pki.other_ca, cert)  # a certificate of another key
            else:
                _replace(pki.expired_cert, cert)
            for _ in range(3):  # reported once, checks unaffected
                await asyncio.sleep(0.02)
                assert (await probe.check()).ok
            assert len(told) == 1 and not told[0][0], told
            assert "the previous certificates stay in use" in told[0][1]
            assert probe.tls_reload.errors == 1 and not probe.tls_reload.last_ok
            if broken == "expired":
                assert "expired" in told[0][1]
            _replace(pki.cert, cert)  # put back: the failure is over, nothing to load
            await asyncio.sleep(0.02)
            assert (await probe.check()).ok
            assert told[-1][0] and "back to the files in use" in told[-1][1]
            assert probe.tls_reload.last_ok and probe.tls_reload.reloads == 0
            await probe.close()

    run(main)
