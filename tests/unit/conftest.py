"""The unit tests' PKI: one kubeadm-shaped PKI (lab.pki) per session, shared by every module.

``lab_pki``  lab.pki's layout for node1 (192.0.2.11): CA "kubernetes", an unrelated CA also named
             "kubernetes" (another key), and node1's serving certificate. Like kubeadm's, the
             certificate names kubernetes, kubernetes.default... and the node -- not localhost or
             127.0.0.1.
``pki``      the files the TLS tests use, including two shapes lab.pki does not make: a CA with
             another name and an expired copy of the serving certificate.
``ca_file``  a valid CA file (lab_pki's cluster CA), for tests that only need one to exist.

``free_port()``: a loopback TCP port nothing listens on (for "connection refused").
``next_request()``: the request loop of the tests' fake apiservers (h11).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from lab.pki import Pki, make_pki

NODE = "node1"
NODE_IP = "192.0.2.11"
# node1's certificate names, in the order the certificate lists them (DNS names, then IPs).
SERVING_NAMES = (
    NODE,
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    NODE_IP,
)
OTHER_CA_NAME = "some-other-ca"


@dataclass(frozen=True)
class ApiserverPki:
    ca: Path  # CA "kubernetes", signed cert
    same_name_ca: Path  # also named "kubernetes", another key: the nastiest wrong CA
    other_ca: Path  # an unrelated CA named OTHER_CA_NAME, another key
    cert: Path  # node1's serving certificate (SERVING_NAMES)
    key: Path
    expired_cert: Path  # cert with the same key, names and issuer, expired a day ago

    def server_context(self, cert: Path | None = None) -> ssl.SSLContext:
        """A TLS server context serving `cert` (default: the serving certificate) with its key."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert or self.cert, self.key)
        return ctx


def free_port() -> int:
    """A 127.0.0.1 TCP port that was free a moment ago (nothing listens on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reissue(
    cert_file: Path,
    signer_key_file: Path,
    out: Path,
    *,
    subject: x509.Name | None = None,
    not_after: dt.datetime | None = None,
) -> Path:
    """Write a copy of a certificate (same key and extensions) with another subject -- for a
    self-signed CA, issuer too -- and/or validity, signed with `signer_key_file`."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    signer = serialization.load_pem_private_key(signer_key_file.read_bytes(), password=None)
    assert isinstance(signer, rsa.RSAPrivateKey)
    self_signed = cert.issuer == cert.subject
    new_subject = subject or cert.subject
    end = not_after or cert.not_valid_after_utc
    start = min(cert.not_valid_before_utc, end - dt.timedelta(days=2))
    new = x509.CertificateBuilder(
        issuer_name=new_subject if self_signed else cert.issuer,
        subject_name=new_subject,
        public_key=cert.public_key(),
        serial_number=x509.random_serial_number(),
        not_valid_before=start,
        not_valid_after=end,
        extensions=list(cert.extensions),
    ).sign(signer, hashes.SHA256())
    out.write_bytes(new.public_bytes(serialization.Encoding.PEM))
    return out


@pytest.fixture(scope="session")
def lab_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = make_pki(tmp_path_factory.mktemp("pki"), [(NODE, [NODE_IP])])
    node = pki.node(NODE)
    assert (*node.dns_names, *node.ip_addresses) == SERVING_NAMES
    return pki


@pytest.fixture(scope="session")
def pki(lab_pki: Pki) -> ApiserverPki:
    d = lab_pki.directory
    node = lab_pki.node(NODE)
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, OTHER_CA_NAME)])
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return ApiserverPki(
        ca=lab_pki.ca_cert,
        same_name_ca=lab_pki.other_ca_cert,
        other_ca=_reissue(
            lab_pki.other_ca_cert, lab_pki.other_ca_key, d / "renamed-ca.crt", subject=other_name
        ),
        cert=node.cert,
        key=node.key,
        expired_cert=_reissue(
            node.cert, lab_pki.ca_key, d / NODE / "expired.crt", not_after=yesterday
        ),
    )


@pytest.fixture(scope="session")
def ca_file(lab_pki: Pki) -> Path:
    """A valid CA file (PEM, loads) for tests that only need one to exist."""
    return lab_pki.ca_cert


async def next_request(
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    on_request: Callable[[h11.Request], None] | None = None,
) -> bool:
    """Read from `reader` until the end of the client's next request (True) or its close (False).
    ``on_request`` sees the request line and headers."""
    while True:
        ev = conn.next_event()
        if ev is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(ev, h11.Request) and on_request is not None:
            on_request(ev)
        elif isinstance(ev, h11.ConnectionClosed):
            return False
        elif isinstance(ev, h11.EndOfMessage):
            return True
