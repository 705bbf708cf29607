"""kubeadm-shaped PKI for the lab's fake kube-apiservers (generated with `cryptography`).

Layout written by ``make_pki(directory, nodes)``::

    ca.crt ca.key                  the cluster CA, CN "kubernetes" (like /etc/kubernetes/pki/ca.*)
    other-ca.crt other-ca.key      an unrelated CA (wrong-CA tests)
    <node>/apiserver.crt .key      serving certificate, CN "kube-apiserver", SANs like kubeadm's:
                                   DNS node name, kubernetes, kubernetes.default,
                                   kubernetes.default.svc, kubernetes.default.svc.cluster.local;
                                   IP the node's addresses (+ extra, e.g. the VIP).
                                   NOT localhost, NOT 127.0.0.1 / ::1.
    <node>/other-apiserver.crt .key  same SANs, signed by the unrelated CA

Keys are RSA 2048 like kubeadm's default.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KUBEADM_DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class NodeCert:
    name: str
    cert: Path
    key: Path
    other_cert: Path  # same SANs, signed by the unrelated CA
    other_key: Path
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    ca_key: Path
    other_ca_cert: Path
    other_ca_key: Path
    nodes: dict[str, NodeCert] = field(default_factory=dict)

    def node(self, name: str) -> NodeCert:
        return self.nodes[name]


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_usage(ca: bool) -> x509.KeyUsage:
    """kubeadm's key usage: signing and key encipherment, plus certificate signing for a CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _make_ca(cn: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    san: Sequence[x509.GeneralName] = (),
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A key and a leaf certificate for `subject` signed by the CA, for one extended key usage
    (server or client authentication), with the subject alternative names if any."""
    key = _key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _make_serving(
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    dns_names: Sequence[str],
    ips: Sequence[str],
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    san += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
    return _make_leaf(ca_key, ca_cert, subject, ExtendedKeyUsageOID.SERVER_AUTH, san)


def make_pki(
    directory: str | Path,
    nodes: Sequence[tuple[str, Sequence[str]]],
    extra_ips: Sequence[str] = (),
    extra_dns: Sequence[str] = (),
) -> Pki:
    """Write the CA, an unrelated CA and one serving certificate per node into `directory`.

    nodes: (node name, [node IPs]) pairs, e.g. ``[("node1", ["192.0.2.11", "2001:db8:0:1::11"])]``.
    extra_ips: added to every serving certificate (kubeadm adds the controlPlaneEndpoint, e.g.
    the VIP 203.0.113.100). Never add localhost or loopback addresses: the lab's point is that
    kubeadm's certificate does not name them.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca("kubernetes")
    oca_key, oca_cert = _make_ca("kubernetes")  # same name, different key: a real wrong-CA trap
    pki = Pki(
        directory=d,
        ca_cert=d / "ca.crt",
        ca_key=d / "ca.key",
        other_ca_cert=d / "other-ca.crt",
        other_ca_key=d / "other-ca.key",
    )
    _write_cert(pki.ca_cert, ca_cert)
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.other_ca_cert, oca_cert)
    _write_key(pki.other_ca_key, oca_key)
    for name, ips in nodes:
        nd = d / name
        nd.mkdir(exist_ok=True)
        dns = (name, *KUBEADM_DNS_NAMES, *extra_dns)
        all_ips = tuple(dict.fromkeys([*ips, *extra_ips]))
        for ip in all_ips:
            if ipaddress.ip_address(ip).is_loopback:
                raise ValueError("kubeadm-shaped certificates never name loopback addresses")
        if "localhost" in dns:
            raise ValueError("kubeadm-shaped certificates never name localhost")
        k, c = _make_serving(ca_key, ca_cert, dns, all_ips)
        ok, oc = _make_serving(oca_key, oca_cert, dns, all_ips)
        nc = NodeCert(
            name=name,
            cert=nd / "apiserver.crt",
            key=nd / "apiserver.key",
            other_cert=nd / "other-apiserver.crt",
            other_key=nd / "other-apiserver.key",
            dns_names=dns,
            ip_addresses=all_ips,
        )
        _write_cert(nc.cert, c)
        _write_key(nc.key, k)
        _write_cert(nc.other_cert, oc)
        _write_key(nc.other_key, ok)
        pki.nodes[name] = nc
    return pki


def make_client_cert(
    pki: Pki, name: str, cn: str = "vipgate", orgs: Sequence[str] = (), *, other_ca: bool = False
) -> tuple[Path, Path]:
    """A client certificate (CN = user, O = groups, as Kubernetes reads them) signed by the
    cluster CA (or by the unrelated CA with ``other_ca``); returns (cert path, key path),
    ``<directory>/<name>.crt`` and ``.key`` (key 0600, unencrypted like kubelet's)."""
    ca_key_path, ca_cert_path = (
        (pki.other_ca_key, pki.other_ca_cert) if other_ca else (pki.ca_key, pki.ca_cert)
    )
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    key, cert = _make_leaf(ca_key, ca_cert, x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH)
    cert_path, key_path = pki.directory / f"{name}.crt", pki.directory / f"{name}.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return cert_path, key_path
