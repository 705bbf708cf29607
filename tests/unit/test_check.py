"""`vipgate check` against a real TLS server on loopback with kubeadm-shaped certificates.

The serving certificate names kubernetes, kubernetes.default..., node1 and 192.0.2.11 -- not
localhost or 127.0.0.1 -- like kubeadm's, so https://127.0.0.1:PORT/livez without a server name
is the hostname trap of DESIGN.md section 3.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vipgate.check import EXIT_CONFIG, EXIT_HEALTHY, EXIT_UNHEALTHY, run
from vipgate.cli import main
from vipgate.config import Config, load

KUBEADM_DNS = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "node1",
)
NODE_IP = "192.0.2.11"
LIVEZ_500 = (
    b"[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n"
    b"[+]poststarthook/start-apiserver-admission-initializer ok\nlivez check failed\n"
)


# ---------------------------------------------------------------------------- PKI
@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    same_name_ca: Path  # named "kubernetes" like the real CA, another key
    cert: Path
    key: Path
    expired_cert: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _serving(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    not_after: datetime.datetime,
) -> x509.Certificate:
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in KUBEADM_DNS]
    sans.append(x509.IPAddress(ipaddress.ip_address(NODE_IP)))
    return (
        x509.CertificateBuilder()
        .subject_name(_name("kube-apiserver"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - datetime.timedelta(days=3))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _ca("kubernetes")
    _, other_cert = _ca("some-other-ca")
    _, same_name_cert = _ca("kubernetes")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = _serving(ca_key, ca_cert, key, now + datetime.timedelta(days=1))
    expired = _serving(ca_key, ca_cert, key, now - datetime.timedelta(days=1))
    pem = serialization.Encoding.PEM
    out = Pki(d / "ca.crt", d / "other-ca.crt", d / "same-name-ca.crt", d / "apiserver.crt",
              d / "apiserver.key", d / "expired.crt")  # fmt: skip
    out.same_name_ca.write_bytes(same_name_cert.public_bytes(pem))
    out.ca.write_bytes(ca_cert.public_bytes(pem))
    out.other_ca.write_bytes(other_cert.public_bytes(pem))
    out.cert.write_bytes(cert.public_bytes(pem))
    out.expired_cert.write_bytes(expired.public_bytes(pem))
    out.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


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
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
                continue
            if isinstance(ev, h11.ConnectionClosed):
                return
            if not isinstance(ev, h11.EndOfMessage):
                continue
            self.requests += 1
            if self.mode == "hang":
                await asyncio.sleep(60)
                return
            status, body = (self.status, self.body) if self.mode == "status" else (200, b"ok")
            headers = [("Content-Length", str(len(body))), ("Content-Type", "text/plain")]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
            conn.start_next_cycle()


def _ctx(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
def apiserver(pki: Pki) -> Iterator[Apiserver]:
    with Apiserver(_ctx(pki.cert, pki.key)) as srv:
        yield srv


def _config(url: str, **extra: str) -> Config:
    env = {
        "control_plane_health_check_address": url,
        "control_plane_health_check_timeout_seconds": "2",
        **extra,
    }
    return load(env)


def check(config: Config) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(config, out, err)
    return code, out.getvalue(), err.getvalue()


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
    apiserver: Apiserver, pki: Pki
) -> None:
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.ca),
        control_plane_health_check_server_name="kubernetes",
    )
    code, out, _ = check(cfg)
    assert code == EXIT_HEALTHY, out
    assert _line(out, "result").startswith("HEALTHY: HTTP 200 in ")
    assert " ms" in _line(out, "result")
    cert = _line(out, "certificate")
    assert "subject CN=kube-apiserver, issued by CN=kubernetes" in cert
    assert "names: kubernetes, kubernetes.default, " in cert and NODE_IP in cert
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
    apiserver: Apiserver, pki: Pki
) -> None:
    # The kubeadm trap: the URL's host (127.0.0.1) is not in the certificate.
    cfg = _config(apiserver.url(), control_plane_health_check_ca_path=str(pki.ca))
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
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


def test_wrong_server_name(apiserver: Apiserver, pki: Pki) -> None:
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.ca),
        control_plane_health_check_server_name="apiserver.example",
    )
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert "does not name 'apiserver.example'" in _line(out, "cause")
    assert "control_plane_health_check_server_name=apiserver.example" in _line(out, "cause")
    assert "e.g. kubernetes" in _line(out, "fix")


def test_wrong_ca_names_the_ca_path_and_the_issuer(apiserver: Apiserver, pki: Pki) -> None:
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.other_ca),
        control_plane_health_check_server_name="kubernetes",
    )
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert _line(out, "result").startswith("UNHEALTHY: certificate not trusted (tls_verify)")
    cause = _line(out, "cause")
    assert "not trusted" in cause
    assert f"CA file {pki.other_ca} holds: CN=some-other-ca" in cause
    assert "issued by CN=kubernetes" in _line(out, "certificate")
    assert "NOT trusted" in _line(out, "verified")
    fix = _line(out, "fix")
    assert "control_plane_health_check_ca_path" in fix
    assert "(issued by CN=kubernetes)" in fix
    assert "/etc/kubernetes/pki/ca.crt" in fix


def test_same_name_ca_with_another_key(apiserver: Apiserver, pki: Pki) -> None:
    # The nastiest wrong CA: another cluster's "kubernetes" CA. Names match, keys do not.
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.same_name_ca),
        control_plane_health_check_server_name="kubernetes",
    )
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    cause = _line(out, "cause")
    assert f"CA file {pki.same_name_ca} holds: CN=kubernetes" in cause
    assert "like the certificate's issuer, but with another key" in cause
    fix = _line(out, "fix")
    assert "another cluster's CA or an outdated copy" in fix
    assert str(pki.same_name_ca) in fix


def test_missing_ca_uses_system_store_and_says_so(apiserver: Apiserver) -> None:
    cfg = _config(apiserver.url(), control_plane_health_check_server_name="kubernetes")
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert "trust the system trust store" in _line(out, "config")
    fix = _line(out, "fix")
    assert "no CA file is set" in fix
    assert "control_plane_health_check_ca_path=/etc/kubernetes/pki/ca.crt" in fix


def test_expired_certificate(pki: Pki) -> None:
    with Apiserver(_ctx(pki.expired_cert, pki.key)) as srv:
        cfg = _config(
            srv.url(),
            control_plane_health_check_ca_path=str(pki.ca),
            control_plane_health_check_server_name="kubernetes",
        )
        code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert "expired" in _line(out, "cause")
    assert "kubeadm certs renew apiserver" in _line(out, "fix")


def test_https_url_on_plain_http_server(pki: Pki) -> None:
    with Apiserver(None) as srv:
        url = srv.url().replace("http://", "https://")
        code, out, _ = check(_config(url, control_plane_health_check_ca_path=str(pki.ca)))
    assert code == EXIT_UNHEALTHY
    assert "during the TLS handshake" in _line(out, "cause")
    assert "speaks TLS" in _line(out, "fix")


# ---------------------------------------------------------------------------- HTTP failures
@pytest.mark.parametrize("status", [401, 403])
def test_401_403_is_anonymous_access_refused(apiserver: Apiserver, pki: Pki, status: int) -> None:
    apiserver.mode, apiserver.status = "status", status
    apiserver.body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d}' % status
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.ca),
        control_plane_health_check_server_name="kubernetes",
    )
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert _line(out, "result").startswith(f"UNHEALTHY: HTTP {status}")
    cause = _line(out, "cause")
    assert f"anonymous access refused (HTTP {status}" in cause
    assert "not an apiserver failure" in cause
    assert "--anonymous-auth" in _line(out, "fix")


def test_500_shows_first_lines_of_the_body(apiserver: Apiserver, pki: Pki) -> None:
    apiserver.mode, apiserver.status, apiserver.body = "status", 500, LIVEZ_500
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.ca),
        control_plane_health_check_server_name="kubernetes",
    )
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
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


def test_404_and_redirect(apiserver: Apiserver, pki: Pki) -> None:
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.ca),
        control_plane_health_check_server_name="kubernetes",
    )
    apiserver.mode, apiserver.status, apiserver.body = "status", 404, b"404 page not found"
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert "no such path" in _line(out, "cause")
    assert "/livez" in _line(out, "fix")
    apiserver.status, apiserver.body = 302, b""
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert "redirects are not followed" in _line(out, "fix")


# ---------------------------------------------------------------------------- transport failures
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused(pki: Pki) -> None:
    port = _free_port()
    cfg = _config(f"https://127.0.0.1:{port}/livez", control_plane_health_check_ca_path=str(pki.ca))
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert _line(out, "result").startswith("UNHEALTHY: connection refused (refused)")
    assert f"connection refused by 127.0.0.1:{port}" in _line(out, "cause")
    assert "start kube-apiserver" in _line(out, "fix")


def test_timeout(apiserver: Apiserver, pki: Pki) -> None:
    apiserver.mode = "hang"
    cfg = _config(
        apiserver.url(),
        control_plane_health_check_ca_path=str(pki.ca),
        control_plane_health_check_server_name="kubernetes",
        control_plane_health_check_timeout_seconds="0.5",
    )
    code, out, _ = check(cfg)
    assert code == EXIT_UNHEALTHY
    assert _line(out, "result").startswith("UNHEALTHY: timeout (timeout)")
    assert "no answer within 0.5 s" in _line(out, "cause")
    assert "control_plane_health_check_timeout_seconds" in _line(out, "fix")


# ---------------------------------------------------------------------------- configuration
def test_not_configured_is_exit_2_with_a_clear_message() -> None:
    code, out, err = check(load({}))
    assert code == EXIT_CONFIG
    assert out == ""
    assert "no health check is configured" in err
    assert "control_plane_health_check_address" in err


def test_cli_exit_codes(apiserver: Apiserver, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
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
