"""`vipgate check` against a real TLS server on loopback with kubeadm-shaped certificates.

The serving certificate (tests/unit/conftest.py, made by lab.pki) names node1, kubernetes,
kubernetes.default... and 192.0.2.11 -- not localhost or 127.0.0.1 -- like kubeadm's, so
https://127.0.0.1:PORT/livez without a server name is the hostname trap that `vipgate check`
teaches (docs/operations.md, "Why a route is not announced: `vipgate check`").
"""

from __future__ import annotations

import asyncio
import io
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest

from lab.pki import Pki, make_client_cert
from tests.unit.conftest import (
    NODE_IP,
    OTHER_CA_NAME,
    SERVING_NAMES,
    ApiserverPki,
    free_port,
    next_request,
)
from vipgate.check import EXIT_HEALTHY, EXIT_UNHEALTHY, gated_text, run
from vipgate.cli import main
from vipgate.config import EXIT_CONFIG, Config, load

LIVEZ_500 = (
    b"[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n"
    b"[+]poststarthook/start-apiserver-admission-initializer ok\nlivez check failed\n"
)


# ---------------------------------------------------------------------------- fake apiserver
class Apiserver:
    """HTTP/1.1 (h11) on 127.0.0.1 in a thread of its own, TLS when given a context.

    ``check.run`` runs its own event loop, so the server needs another one.
    """

    def __init__(self, ssl_ctx: ssl.SSLContext | None) -> None:
        self.ssl_ctx = ssl_ctx
        self.mode = "ok"  # ok | status | hang
        self.status = 200
        self.body = b"ok"
        self.requests = 0
        self.client_auth = False  # 401 to a request without a client certificate
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> Apiserver:
        self._thread.start()
        assert self._started.wait(10), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()

    def url(self, path: str = "/livez") -> str:
        scheme = "https" if self.ssl_ctx else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _main(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._handle(reader, writer)
            except (ConnectionError, h11.RemoteProtocolError, ssl.SSLError):
                pass
            finally:
                writer.close()
                tasks.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        await self._stop.wait()
        server.close()
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while await next_request(conn, reader):
            self.requests += 1
            if self.mode == "hang":
                await asyncio.sleep(60)
                return
            status, body = (self.status, self.body) if self.mode == "status" else (200, b"ok")
            if self.client_auth and not writer.get_extra_info("peercert"):
                status, body = 401, b"Unauthorized"
            headers = [("Content-Length", str(len(body))), ("Content-Type", "text/plain")]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            conn.start_next_cycle()


@pytest.fixture
def apiserver(pki: ApiserverPki) -> Iterator[Apiserver]:
    with Apiserver(pki.server_context()) as srv:
        yield srv


def _config(
    url: str, ca: Path | None = None, server_name: str | None = None, timeout: str = "2"
) -> Config:
    """The check's configuration; the CA file and server name are set only when given."""
    env = {
        "control_plane_health_check_address": url,
        "control_plane_health_check_timeout_seconds": timeout,
    }
    if ca is not None:
        env["control_plane_health_check_ca_path"] = str(ca)
    if server_name is not None:
        env["control_plane_health_check_server_name"] = server_name
    return load(env)


def check(config: Config) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(config, out, err)
    return code, out.getvalue(), err.getvalue()


def unhealthy(config: Config) -> str:
    """Run the check, which must exit EXIT_UNHEALTHY; its report."""
    code, out, _ = check(config)
    assert code == EXIT_UNHEALTHY, out
    return out


def _line(text: str, label: str) -> str:
    """The text after `label:` (continuation lines included)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(label + ":"):
            block = [line[13:]]
            for nxt in lines[i + 1 :]:
                if not nxt.startswith(" " * 13):
                    break
                block.append(nxt[13:])
            return "\n".join(block)
    raise AssertionError(f"no {label!r} line in:\n{text}")


# ---------------------------------------------------------------------------- healthy
def test_healthy_reports_status_latency_certificate_and_name(
    apiserver: Apiserver, pki: ApiserverPki
) -> None:
    code, out, _ = check(_config(apiserver.url(), pki.ca, "kubernetes"))
    assert code == EXIT_HEALTHY, out
    assert _line(out, "result").startswith("HEALTHY: HTTP 200 in ")
    assert " ms" in _line(out, "result")
    cert = _line(out, "certificate")
    assert "subject CN=kube-apiserver, issued by CN=kubernetes" in cert
    assert f"names: {', '.join(SERVING_NAMES)}" in cert and NODE_IP in cert
    verified = _line(out, "verified")
    assert f"trusted by CA file {pki.ca}" in verified
    assert "name 'kubernetes' listed" in verified
    assert "control_plane_health_check_server_name=kubernetes" in _line(out, "config")
    assert "cause:" not in out and "fix:" not in out
    assert apiserver.requests == 1  # exactly one probe


def test_healthy_plain_http() -> None:
    with Apiserver(None) as srv:
        code, out, _ = check(_config(srv.url()))
    assert code == EXIT_HEALTHY
    assert "nothing is verified" in _line(out, "certificate")


# ---------------------------------------------------------------------------- TLS failures
def test_hostname_mismatch_names_the_certificate_names_and_the_server_name_hint(
    apiserver: Apiserver, pki: ApiserverPki
) -> None:
    # The kubeadm trap: the URL's host (127.0.0.1) is not in the certificate.
    out = unhealthy(_config(apiserver.url(), pki.ca))
    assert _line(out, "result").startswith(
        "UNHEALTHY: certificate hostname mismatch (tls_hostname)"
    )
    cause = _line(out, "cause")
    assert "does not name '127.0.0.1'" in cause
    assert "the URL's host" in cause
    assert "kubernetes, kubernetes.default, kubernetes.default.svc" in cause
    assert NODE_IP in cause
    fix = _line(out, "fix")
    assert "control_plane_health_check_server_name" in fix
    assert "--controlPlaneHealthCheckServerName" in fix
    assert "=kubernetes" in fix
    assert "never localhost or 127.0.0.1" in fix
    assert apiserver.requests == 0  # nothing was sent to an unverified server


def test_wrong_ca_names_the_ca_path_and_the_issuer(apiserver: Apiserver, pki: ApiserverPki) -> None:
    out = unhealthy(_config(apiserver.url(), pki.other_ca, "kubernetes"))
    assert _line(out, "result").startswith("UNHEALTHY: certificate not trusted (tls_verify)")
    cause = _line(out, "cause")
    assert "not trusted" in cause
    assert f"CA file {pki.other_ca} holds: CN={OTHER_CA_NAME}" in cause
    assert "issued by CN=kubernetes" in _line(out, "certificate")
    assert "NOT trusted" in _line(out, "verified")
    fix = _line(out, "fix")
    assert "control_plane_health_check_ca_path" in fix
    assert "(issued by CN=kubernetes)" in fix
    assert "/etc/kubernetes/pki/ca.crt" in fix


def test_same_name_ca_with_another_key(apiserver: Apiserver, pki: ApiserverPki) -> None:
    # The nastiest wrong CA: another cluster's "kubernetes" CA. Names match, keys do not.
    out = unhealthy(_config(apiserver.url(), pki.same_name_ca, "kubernetes"))
    cause = _line(out, "cause")
    assert f"CA file {pki.same_name_ca} holds: CN=kubernetes" in cause
    assert "like the certificate's issuer, but with another key" in cause
    fix = _line(out, "fix")
    assert "another cluster's CA or an outdated copy" in fix
    assert str(pki.same_name_ca) in fix


# ---------------------------------------------------------------------------- HTTP failures
def test_500_shows_first_lines_of_the_body(apiserver: Apiserver, pki: ApiserverPki) -> None:
    apiserver.mode, apiserver.status, apiserver.body = "status", 500, LIVEZ_500
    out = unhealthy(_config(apiserver.url(), pki.ca, "kubernetes"))
    cause = _line(out, "cause")
    assert "HTTP 500, not 200" in cause
    body = cause.split("first lines of the body:\n", 1)[1].splitlines()
    assert [line.strip() for line in body[:3]] == [
        "[+]ping ok",
        "[+]log ok",
        "[-]etcd failed: reason withheld",
    ]
    assert "failing checks" in _line(out, "fix")
    # The certificate was fine: it is shown as verified.
    assert "name 'kubernetes' listed" in _line(out, "verified")


# ---------------------------------------------------------------------------- one-line failures
def _status_body(status: int) -> bytes:
    return b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d}' % status


@dataclass(frozen=True)
class Failure:
    """A failing situation and what the report must say about it."""

    says: tuple[tuple[str, str], ...]  # (line label, text that line contains)
    result: str = "UNHEALTHY: "  # the start of the result line
    cert: str = "serving"  # the server's certificate: serving | expired | none (plain HTTP)
    status: int | None = None  # answer this status and body instead of 200 "ok"
    body: bytes = b""
    hang: bool = False  # never answer
    ca: bool = True  # set the CA file (the cluster CA)
    server_name: str | None = "kubernetes"
    timeout: str = "2"


FAILURES = {
    "wrong server name": Failure(
        server_name="apiserver.example",
        says=(
            ("cause", "does not name 'apiserver.example'"),
            ("cause", "control_plane_health_check_server_name=apiserver.example"),
            ("fix", "e.g. kubernetes"),
        ),
    ),
    "no CA file: system store": Failure(
        ca=False,
        says=(
            ("config", "trust the system trust store"),
            ("fix", "no CA file is set"),
            ("fix", "control_plane_health_check_ca_path=/etc/kubernetes/pki/ca.crt"),
        ),
    ),
    "expired certificate": Failure(
        cert="expired",
        says=(("cause", "expired"), ("fix", "kubeadm certs renew apiserver")),
    ),
    "https URL on a plain HTTP server": Failure(
        cert="none",
        server_name=None,
        says=(("cause", "during the TLS handshake"), ("fix", "speaks TLS")),
    ),
    **{
        f"{status} anonymous access refused": Failure(
            status=status,
            body=_status_body(status),
            result=f"UNHEALTHY: HTTP {status}",
            says=(
                ("cause", f"anonymous access refused (HTTP {status}"),
                ("cause", "not an apiserver failure"),
                ("fix", "--anonymous-auth"),
            ),
        )
        for status in (401, 403)
    },
    "404": Failure(
        status=404,
        body=b"404 page not found",
        says=(("cause", "no such path"), ("fix", "/livez")),
    ),
    "302 redirect": Failure(status=302, says=(("fix", "redirects are not followed"),)),
    "timeout": Failure(
        hang=True,
        timeout="0.5",
        result="UNHEALTHY: timeout (timeout)",
        says=(
            ("cause", "no answer within 0.5 s"),
            ("fix", "control_plane_health_check_timeout_seconds"),
        ),
    ),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_failure_says_cause_and_fix(pki: ApiserverPki, failure: Failure) -> None:
    cert = {"serving": pki.cert, "expired": pki.expired_cert}.get(failure.cert)
    with Apiserver(pki.server_context(cert) if cert else None) as srv:
        if failure.status is not None:
            srv.mode, srv.status, srv.body = "status", failure.status, failure.body
        if failure.hang:
            srv.mode = "hang"
        url = f"https://127.0.0.1:{srv.port}/livez"
        ca = pki.ca if failure.ca else None
        out = unhealthy(_config(url, ca, failure.server_name, failure.timeout))
    assert _line(out, "result").startswith(failure.result), out
    for label, text in failure.says:
        assert text in _line(out, label), out


# ---------------------------------------------------------------------------- transport failures
def test_refused(pki: ApiserverPki) -> None:
    port = free_port()
    out = unhealthy(_config(f"https://127.0.0.1:{port}/livez", pki.ca))
    assert _line(out, "result").startswith("UNHEALTHY: connection refused (refused)")
    assert f"connection refused by 127.0.0.1:{port}" in _line(out, "cause")
    assert "start kube-apiserver" in _line(out, "fix")


# ---------------------------------------------------------------------------- configuration
def test_not_configured_is_exit_2_with_a_clear_message() -> None:
    code, out, err = check(load({}))
    assert code == EXIT_CONFIG
    assert out == ""
    assert "no health check is configured" in err
    assert "control_plane_health_check_address" in err


def test_cli_exit_codes(
    apiserver: Apiserver, pki: ApiserverPki, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == EXIT_CONFIG
    with pytest.raises(SystemExit) as exc:
        main(["check", "--controlPlaneHealthCheckPeriodSeconds", "0"])
    assert exc.value.code == EXIT_CONFIG
    base = [
        "check",
        "--controlPlaneHealthCheckAddress",
        apiserver.url(),
        "--controlPlaneHealthCheckCAPath",
        str(pki.ca),
    ]
    assert main(base) == EXIT_UNHEALTHY  # hostname trap
    assert main([*base, "--controlPlaneHealthCheckServerName", "kubernetes"]) == EXIT_HEALTHY
    out, _ = capsys.readouterr()
    assert "HEALTHY: HTTP 200" in out


# ---------------------------------------------------------------------------- client certificate
@pytest.fixture
def client_auth_server(pki: ApiserverPki) -> Iterator[Apiserver]:
    """Asks for a client certificate (verified against the cluster CA); 401 without one."""
    ctx = pki.server_context()
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cafile=pki.ca)
    with Apiserver(ctx) as srv:
        srv.client_auth = True
        yield srv


@pytest.fixture(scope="module")
def client_cert(lab_pki: Pki) -> tuple[Path, Path]:
    return make_client_cert(lab_pki, "check-client", "vipgate", ["system:vipgate"])


def _client_config(srv: Apiserver, pki: ApiserverPki, cert: tuple[Path, Path] | None) -> Config:
    env = {
        "control_plane_health_check_address": srv.url(),
        "control_plane_health_check_ca_path": str(pki.ca),
        "control_plane_health_check_server_name": "kubernetes",
    }
    if cert is not None:
        env["control_plane_health_check_client_cert_path"] = str(cert[0])
        env["control_plane_health_check_client_key_path"] = str(cert[1])
    return load(env)


def test_client_certificate_is_presented_and_shown(
    client_auth_server: Apiserver, pki: ApiserverPki, client_cert: tuple[Path, Path]
) -> None:
    code, out, _ = check(_client_config(client_auth_server, pki, client_cert))
    assert code == EXIT_HEALTHY, out
    assert _line(out, "client") == (
        f"certificate O=system:vipgate, CN=vipgate from {client_cert[0]}"
    ), out


def test_401_without_client_certificate_suggests_one(
    client_auth_server: Apiserver, pki: ApiserverPki
) -> None:
    out = unhealthy(_client_config(client_auth_server, pki, None))
    assert "anonymous access refused (HTTP 401" in _line(out, "cause")
    fix = _line(out, "fix")
    assert "control_plane_health_check_client_cert_path" in fix
    assert "control_plane_health_check_client_key_path" in fix
    assert "client:" not in out


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (401, "the apiserver did not accept the client certificate O=system:vipgate, CN=vipgate"),
        (403, "the apiserver authenticated O=system:vipgate, CN=vipgate"),
    ],
)
def test_401_403_with_client_certificate(
    apiserver: Apiserver,
    pki: ApiserverPki,
    client_cert: tuple[Path, Path],
    status: int,
    cause: str,
) -> None:
    apiserver.mode, apiserver.status, apiserver.body = "status", status, b"{}"
    out = unhealthy(_client_config(apiserver, pki, client_cert))
    assert _line(out, "cause").startswith(cause), out
    assert "anonymous" not in _line(out, "cause")
    assert ("--client-ca-file" if status == 401 else "nonResourceURLs") in _line(
        out, "cause" if status == 401 else "fix"
    )


def test_client_certificate_of_another_ca_is_explained(
    client_auth_server: Apiserver, pki: ApiserverPki, lab_pki: Pki
) -> None:
    # The server refuses the certificate in the TLS handshake: the probe sees a closed
    # connection, and the check points at the certificate's CA rather than at the apiserver.
    stranger = make_client_cert(lab_pki, "check-stranger", "stranger", other_ca=True)
    out = unhealthy(_client_config(client_auth_server, pki, stranger))
    assert "refuses the client certificate CN=stranger" in _line(out, "cause"), out
    assert f"check that {stranger[0]} is signed by a CA in the apiserver's --client-ca-file" in (
        _line(out, "fix")
    ), out
    assert client_auth_server.requests == 0  # refused before any request


@pytest.mark.parametrize(
    ("action", "ok", "says"),
    [
        ("", True, ["the VIP is withdrawn", "unhealthy_action=withdraw", "no route to the VIP"]),
        ("withdraw", False, ["the VIP is withdrawn", "=deprefer keeps it reachable"]),
        ("deprefer", False, ["stays announced, de-preferred", "fails open", "as-path ignore"]),
        ("deprefer", True, ["stays announced, de-preferred", "unhealthy_action=deprefer"]),
    ],
)
def test_verdict_explains_the_unhealthy_action(action: str, ok: bool, says: list[str]) -> None:
    from vipgate.check import Observation, verdict
    from vipgate.health.probe import ErrorKind, ProbeResult

    env = {
        "control_plane_health_check_address": "http://127.0.0.1:6443/livez",
        "control_plane_health_check_failure_threshold": "4",
    }
    if action:
        env["control_plane_health_check_unhealthy_action"] = action
    result = (
        ProbeResult(True, 200, ErrorKind.NONE, "", 0.01)
        if ok
        else ProbeResult(False, 500, ErrorKind.HTTP_STATUS, "HTTP 500: [-]etcd failed", 0.01)
    )
    v = verdict(load(env), Observation(result))
    text = v.text
    assert "if failing:  after 4 failed checks in a row" in text
    for s in says:
        assert s in text.replace("\n" + " " * 13, " "), s
    assert v.code == (EXIT_HEALTHY if ok else EXIT_UNHEALTHY)
    assert all(len(line) <= 100 for line in text.splitlines() if line.startswith(("if", " ")))


def test_the_check_names_the_vips_it_gates() -> None:
    one = load({"address": "203.0.113.100"})
    assert gated_text(one) == "the VIP 203.0.113.100/32"
    both = load({"address": "203.0.113.100, 2001:db8:100::100", "vip_subnet": "32,128"})
    assert gated_text(both).splitlines() == [
        "the VIPs 203.0.113.100/32 and 2001:db8:100::100/128",
        "(one check for both: announced and withdrawn together)",
    ]
