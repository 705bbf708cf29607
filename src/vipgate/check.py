"""``vipgate check``: one health probe with the manager's configuration, and a verdict to act on.

The probe is the manager's own (:class:`vipgate.health.probe.Probe`, same URL, timeout, CA file
and server name), so what ``check`` sees is what the gate would see. The verdict says:

* the status and the latency;
* for https: the certificate's subject, issuer and names, the name it was verified against (and
  where that name comes from: the URL's host or ``control_plane_health_check_server_name``) and
  the trust it was verified with (CA file or system trust store);
* for a failure, the cause and the fix: a wrong or missing CA (naming the CA path and the
  certificate's issuer), a hostname mismatch (the names the certificate carries and the
  server-name setting), 401/403 (anonymous access refused: a client certificate is the way in
  where anonymous access stays off; with one configured, not accepted or not authorized),
  refused, timeout, a non-200 status with the first lines of the body;
* the subject of the client certificate, when one is configured.

Exit codes: 0 healthy, 1 unhealthy, 2 configuration error (no health check configured, or a
setting the probe cannot use).

The verdict is made by :func:`verdict`, a pure function of the configuration and what was
observed (:class:`Observation`), so every message is testable without a network.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from vipgate.config import EXIT_CONFIG, Config
from vipgate.health.gate import UnhealthyAction
from vipgate.health.probe import (
    ErrorKind,
    PeerCertificate,
    Probe,
    ProbeResult,
    suggest_server_name,
)

EXIT_HEALTHY = 0
EXIT_UNHEALTHY = 1

KUBEADM_CA = "/etc/kubernetes/pki/ca.crt"
_BODY_LINES = 8
_INDENT = 13  # "certificate: "

_KIND_TEXT = {
    ErrorKind.REFUSED: "connection refused",
    ErrorKind.RESET: "connection closed by the server",
    ErrorKind.TIMEOUT: "timeout",
    ErrorKind.TLS_VERIFY: "certificate not trusted",
    ErrorKind.TLS_HOSTNAME: "certificate hostname mismatch",
    ErrorKind.TLS_OTHER: "TLS failure",
    ErrorKind.PROTOCOL: "not HTTP",
    ErrorKind.DNS: "name resolution failed",
    ErrorKind.OTHER: "network error",
}

_ADDRESS = "control_plane_health_check_address (--controlPlaneHealthCheckAddress)"
_CA = "control_plane_health_check_ca_path (--controlPlaneHealthCheckCAPath)"
_SERVER_NAME = "control_plane_health_check_server_name (--controlPlaneHealthCheckServerName)"
_TIMEOUT = "control_plane_health_check_timeout_seconds (--controlPlaneHealthCheckTimeoutSeconds)"
_CLIENT_CERT = (
    "control_plane_health_check_client_cert_path (--controlPlaneHealthCheckClientCertPath)"
)
_CLIENT_KEY = "control_plane_health_check_client_key_path (--controlPlaneHealthCheckClientKeyPath)"
_UNHEALTHY = "control_plane_health_check_unhealthy_action"
KUBELET_CLIENT = "/var/lib/kubelet/pki/kubelet-client-current.pem"


def _set(setting: str, value: str) -> str:
    """'env=value (flag --flag value)' from a 'env (--flag)' constant."""
    env, _, flag = setting.partition(" (")
    return f"{env}={value} (flag {flag.rstrip(')')} {value})"


@dataclass(frozen=True)
class CertInfo:
    """A certificate read without verification (only to explain a verification failure)."""

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_after: str


@dataclass(frozen=True)
class Observation:
    """What one check saw: the probe's result and what is known about the certificate."""

    result: ProbeResult
    certificate: PeerCertificate | None = None  # verified chain (the probe's summary)
    unverified: CertInfo | None = None  # read after a chain verification failure
    ca_subjects: tuple[str, ...] = ()  # the subjects of the certificates in the CA file
    client_subject: str = ""  # the subject of the configured client certificate


@dataclass
class Verdict:
    """The exit code and the lines to print."""

    code: int
    lines: list[str] = field(default_factory=list)

    def add(self, label: str, text: str) -> None:
        first, *rest = text.split("\n")
        self.lines.append(f"{label + ':':<{_INDENT}}{first}")
        self.lines.extend(f"{'':<{_INDENT}}{line}" for line in rest)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# --------------------------------------------------------------------------------------------
# The verdict (pure)
# --------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _url_host_port(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "", u.port or (443 if u.scheme == "https" else 80)


def _name_source(config: Config) -> str:
    if config.health_server_name:
        return f"control_plane_health_check_server_name={config.health_server_name}"
    return "the URL's host"


def _trust(config: Config) -> str:
    return f"CA file {config.health_ca_path}" if config.health_ca_path else "the system trust store"


def _body_lines(text: str) -> list[str]:
    """The body quoted in the probe's one-line text, split back into lines for /livez output."""
    _, sep, body = text.partition(": ")
    if not sep or not body:
        return []
    for marker in ("[+]", "[-]"):
        body = body.replace(" " + marker, "\n" + marker)
    body = body.replace(" livez check failed", "\nlivez check failed")
    body = body.replace(" readyz check failed", "\nreadyz check failed")
    body = body.replace(" healthz check failed", "\nhealthz check failed")
    return [line for line in body.split("\n") if line][:_BODY_LINES]


def verdict(config: Config, obs: Observation) -> Verdict:
    """Turn one observation into the lines a person reads and the exit code."""
    r = obs.result
    url = config.health_url
    https = url.startswith("https://")
    host, port = _url_host_port(url)
    v = Verdict(EXIT_HEALTHY if r.ok else EXIT_UNHEALTHY)
    v.add("check", f"GET {url}")
    detail = [f"timeout {config.health_timeout:g} s"]
    if https:
        detail.append(f"verify name {r.verified_name or host} ({_name_source(config)})")
        detail.append(f"trust {_trust(config)}")
    v.add("config", ", ".join(detail))
    if config.health_client_cert_path:
        v.add(
            "client",
            f"certificate {obs.client_subject or '(subject not readable)'} from "
            f"{config.health_client_cert_path}",
        )

    if r.ok:
        v.add("result", f"HEALTHY: HTTP 200 in {_ms(r.latency)}")
    else:
        status = (
            f"HTTP {r.status}"
            if r.status is not None
            else f"{_KIND_TEXT.get(r.error, r.error.value)} ({r.error.value})"
        )
        v.add("result", f"UNHEALTHY: {status} after {_ms(r.latency)}")

    cert = obs.certificate
    if not https:
        v.add("certificate", "none (plain http://: nothing is verified)")
    elif cert is not None:
        v.add("certificate", _cert_text(cert.subject, cert.issuer, cert.names, cert.not_after))
        v.add(
            "verified",
            f"chain {'trusted' if cert.verified else 'NOT trusted'} by {cert.trust}; "
            f"name {cert.verified_name!r} "
            f"{'listed' if cert.name_matches else 'NOT listed'} in the certificate",
        )
    elif obs.unverified is not None:
        u = obs.unverified
        v.add("certificate", _cert_text(u.subject, u.issuer, u.names, u.not_after))
        v.add("verified", f"chain NOT trusted by {_trust(config)}")

    if config.prefixes:
        v.add("gates", gated_text(config))
    v.add("if failing", unhealthy_text(config))
    if r.ok:
        return v
    cause, fix = _explain(config, obs, host, port)
    v.add("cause", cause)
    v.add("fix", fix)
    return v


def gated_text(config: Config) -> str:
    """The prefixes the manager announces while this check passes (a dual-stack pair: both)."""
    if len(config.prefixes) == 1:
        return f"the VIP {config.prefixes[0]}"
    both = " and ".join(map(str, config.prefixes))
    return f"the VIPs {both}\n(one check for both: announced and withdrawn together)"


def unhealthy_text(config: Config) -> str:
    """What the manager does with the route when the checks fail, and the trade-off."""
    n = config.health_threshold
    if config.health_unhealthy_action is UnhealthyAction.DEPREFER:
        return (
            f"after {n} failed checks in a row the VIP stays announced, de-preferred\n"
            f"({_UNHEALTHY}=deprefer): routers use this node\n"
            "only while no node announces a plain path, so the VIP fails open when every node\n"
            "fails at once; a router that ignores AS_PATH length (bgp bestpath as-path ignore)\n"
            "and does not honour 65535:0 keeps a failing eBGP node in its ECMP set"
        )
    return (
        f"after {n} failed checks in a row the VIP is withdrawn\n"
        f"({_UNHEALTHY}=withdraw): if every node fails at once\n"
        "(etcd down, anonymous access removed), no route to the VIP is left;\n"
        f"{_UNHEALTHY}=deprefer keeps it reachable then"
    )


def _cert_text(subject: str, issuer: str, names: tuple[str, ...], not_after: str) -> str:
    text = f"subject {subject or '(empty)'}, issued by {issuer or '(unknown)'}"
    text += f"\nnames: {', '.join(names) if names else '(no subjectAltName)'}"
    if not_after:
        text += f"\nvalid until {not_after}"
    return text


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The failures whose cause and fix need nothing but the result and the settings: templates over
# ``text`` (the probe's one line), ``where`` (host:port), ``port``, ``timeout`` and the settings.
_SIMPLE: dict[ErrorKind, tuple[str, str]] = {
    ErrorKind.REFUSED: (
        "connection refused by {where}: nothing listens there ({text})",
        "start kube-apiserver on this node, or correct the host/port in {address}; see "
        "`crictl ps --name kube-apiserver` and `ss -ltn 'sport = :{port}'`",
    ),
    ErrorKind.TIMEOUT: (
        "no answer within {timeout:g} s: {text}",
        "the server hangs or packets are dropped (firewall); check the apiserver's health "
        "and log. The limit is {timeout_setting}",
    ),
    ErrorKind.RESET: (
        "the server closed the connection: {text}",
        "the apiserver may be restarting or overloaded; if it persists, check that "
        "{where} is the apiserver (https) and look at its log",
    ),
    ErrorKind.DNS: (
        "{text}",
        "use an IP address in {address}, or a name this node resolves (/etc/hosts)",
    ),
    ErrorKind.PROTOCOL: (
        "the answer is not HTTP/1.1: {text}",
        "check the scheme in {address} (https:// for kube-apiserver)",
    ),
}
_ANY_OTHER = ("{text}", "check the network path to {where}")

Explanation = tuple[str, str]
_Explainer = Callable[[Config, Observation, str, int], Explanation | None]


def _explain(config: Config, obs: Observation, host: str, port: int) -> Explanation:
    """The cause and the fix of a failed check: a kind's own rules first (None: they have
    nothing specific to say), else its entry in the template table."""
    r = obs.result
    special = _EXPLAINERS.get(r.error)
    found = special(config, obs, host, port) if special is not None else None
    if found is not None:
        return found
    cause, fix = _SIMPLE.get(r.error, _ANY_OTHER)
    fields = {
        "text": r.text,
        "where": _where(host, port),
        "port": port,
        "timeout": config.health_timeout,
        "address": _ADDRESS,
        "timeout_setting": _TIMEOUT,
    }
    return cause.format(**fields), fix.format(**fields)


def _explain_hostname(config: Config, obs: Observation, host: str, port: int) -> Explanation:
    r = obs.result
    names = r.cert_names or (obs.certificate.names if obs.certificate else ())
    listed = ", ".join(names) if names else "(could not be read)"
    name = r.verified_name or host
    cause = (
        f"the certificate does not name {name!r}, the name it was verified against "
        f"({_name_source(config)}).\nThe certificate names: {listed}"
    )
    suggestion = suggest_server_name(names)
    if config.health_server_name:
        return cause, f"set {_SERVER_NAME} to a name the certificate lists, e.g. {suggestion}"
    fix = (
        f"set {_set(_SERVER_NAME, suggestion)}: the TCP connection still goes to "
        f"{_where(host, port)}, only the certificate is checked against {suggestion!r}"
    )
    if host in ("localhost", "127.0.0.1", "::1"):
        fix += (
            ".\nkubeadm's apiserver certificate names kubernetes, the node name and "
            "IPs, but never localhost or 127.0.0.1"
        )
    return cause, fix


def _explain_untrusted(config: Config, obs: Observation, host: str, port: int) -> Explanation:
    r = obs.result
    ca = config.health_ca_path
    cause = f"the server's certificate is not trusted: {r.text}"
    if ca:
        held = ", ".join(obs.ca_subjects) if obs.ca_subjects else "(unreadable)"
        cause += f"\nCA file {ca} holds: {held}"
    if "expired" in r.text or "not yet valid" in r.text:
        return cause, (
            "renew the apiserver certificate (kubeadm: `kubeadm certs renew apiserver`, then "
            "restart kube-apiserver) or fix this machine's clock"
        )
    if ca and obs.unverified is not None and obs.unverified.issuer in obs.ca_subjects:
        cause += (
            f"\nthe CA file holds a CA named {obs.unverified.issuer}, like the certificate's "
            "issuer, but with another key: it did not sign this certificate"
        )
        return cause, (
            f"{ca} is another cluster's CA or an outdated copy (the CA was "
            f"regenerated): point {_CA} at this cluster's CA; on kubeadm clusters that is "
            f"{KUBEADM_CA} on a control-plane node"
        )
    if ca:
        return cause, (
            f"point {_CA} at the CA that signed the apiserver's certificate"
            + (f" (issued by {obs.unverified.issuer})" if obs.unverified else "")
            + f"; on kubeadm clusters that is {KUBEADM_CA}"
        )
    return cause, (
        f"no CA file is set, so the system trust store was used, which does not hold the "
        f"cluster's CA: set {_set(_CA, KUBEADM_CA)}, kubeadm's cluster CA"
    )


def _explain_tls_other(config: Config, obs: Observation, host: str, port: int) -> Explanation:
    r = obs.result
    if config.health_ca_path and "CA file" in r.text:
        return r.text, f"make {config.health_ca_path} a readable PEM file of the cluster's CA"
    return (
        f"TLS failed: {r.text}",
        f"check that {_where(host, port)} speaks TLS (for a plain HTTP server use an http:// "
        f"URL in {_ADDRESS})",
    )


def _explain_status(config: Config, obs: Observation, host: str, port: int) -> Explanation:
    r = obs.result
    if r.status in (401, 403):
        return _access(config, obs, r.status)
    if r.status is not None and 300 <= r.status < 400:
        return (
            f"the server answered with a redirect: {r.text}",
            f"redirects are not followed: set {_ADDRESS} to the final URL",
        )
    if r.status == 404:
        return (
            f"no such path: {r.text}",
            f"set {_ADDRESS} to the apiserver's liveness endpoint, e.g. "
            f"https://{_where(host, port)}/livez",
        )
    lines = _body_lines(r.text)
    failing = [line for line in lines if line.startswith("[-]")]
    cause = f"the server answered HTTP {r.status}, not 200: it reports itself unhealthy"
    if lines:
        cause += "\nfirst lines of the body:\n" + "\n".join(f"  {line}" for line in lines)
    if failing:
        return cause, (
            "look at the failing checks above (details: kubectl get --raw='/livez?verbose')"
        )
    return cause, "look at the server's log; only HTTP 200 counts as healthy"


def _explain_reset(config: Config, obs: Observation, host: str, port: int) -> Explanation | None:
    r = obs.result
    cert = config.health_client_cert_path
    if cert:
        return (
            f"the server closed the connection: {r.text}. A server that refuses the client "
            f"certificate {obs.client_subject or cert} closes it this way (with TLS 1.3 its alert "
            "comes after the handshake)",
            f"check that {cert} is signed by a CA in the apiserver's --client-ca-file and valid "
            "now; if it is, the apiserver may be restarting or overloaded: look at its log",
        )
    if "TLS handshake" in r.text:
        return (
            f"the server closed the connection during the TLS handshake: {r.text}",
            f"check that {_where(host, port)} speaks TLS (kube-apiserver does); for a plain "
            f"HTTP server use an http:// URL in {_ADDRESS}",
        )
    return None  # the template


_EXPLAINERS: dict[ErrorKind, _Explainer] = {
    ErrorKind.TLS_HOSTNAME: _explain_hostname,
    ErrorKind.TLS_VERIFY: _explain_untrusted,
    ErrorKind.TLS_OTHER: _explain_tls_other,
    ErrorKind.HTTP_STATUS: _explain_status,
    ErrorKind.RESET: _explain_reset,
}


def _access(config: Config, obs: Observation, status: int) -> tuple[str, str]:
    """401/403: an access problem, not an apiserver failure; what to do depends on whether a
    client certificate was presented."""
    word = "Unauthorized" if status == 401 else "Forbidden"
    path = urlsplit(config.health_url).path or "/"
    if config.health_client_cert_path:
        who = f"{obs.client_subject or 'the client certificate'} ({config.health_client_cert_path})"
        if status == 401:
            return (
                f"the apiserver did not accept the client certificate {who} (HTTP 401 "
                "Unauthorized): it is not signed by a CA in the apiserver's --client-ca-file, or "
                "it is not valid now. This is an access problem, not an apiserver failure.",
                f"set {_CLIENT_CERT} and {_CLIENT_KEY} to a certificate and key signed by the "
                f"cluster CA (kubeadm: {KUBEADM_CA}), e.g. the kubelet's {KUBELET_CLIENT} for both",
            )
        return (
            f"the apiserver authenticated {who} but does not authorize it to GET {path} "
            "(HTTP 403 Forbidden). This is an access problem, not an apiserver failure.",
            "grant that user or group GET on the nonResourceURLs /livez, /readyz and /healthz "
            "(RBAC: the system:public-info-viewer ClusterRole, bound to system:authenticated by "
            "default)",
        )
    return (
        f"anonymous access refused (HTTP {status} {word}): vipgate sends no credentials, "
        "and the apiserver "
        + (
            "does not accept anonymous requests (--anonymous-auth=false)"
            if status == 401
            else "does not authorize system:anonymous for this path"
        )
        + ". This is an access problem, not an apiserver failure.",
        "allow anonymous GET of the health endpoints: kube-apiserver --anonymous-auth=true "
        "(the default; RBAC's system:public-info-viewer role allows /livez, /readyz, "
        "/healthz), or on Kubernetes >= 1.32 an AuthenticationConfiguration whose anonymous "
        "section is limited to /livez, /readyz and /healthz; where anonymous access stays off "
        f"(RKE2), let vipgate present a client certificate: set {_CLIENT_CERT} and "
        f"{_CLIENT_KEY} (kubeadm: the kubelet's {KUBELET_CLIENT} for both)",
    )


# --------------------------------------------------------------------------------------------
# The observation (I/O)
# --------------------------------------------------------------------------------------------


def _format_name(rdns: Any) -> str:
    parts: list[str] = []
    short = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU"}
    for rdn in rdns or ():
        for key, val in rdn:
            parts.append(f"{short.get(key, key)}={val}")
    return ", ".join(parts)


def _decode_der(der: bytes) -> dict[str, Any] | None:
    """Decode a DER certificate with the ssl module (CPython's decoder; None if unavailable)."""
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:
        return None
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ssl.DER_cert_to_PEM_cert(der))
        decoded: dict[str, Any] = decode(path)
        return decoded
    except (ssl.SSLError, OSError, ValueError):
        return None
    finally:
        os.unlink(path)


def cert_file_subject(path: str) -> str:
    """The subject of the first certificate in a PEM file ("" if none or unreadable); a file
    holding the key too is fine (only the certificate block is read)."""
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if not path or decode is None:
        return ""
    try:
        return _format_name(decode(path).get("subject"))
    except (ssl.SSLError, OSError, ValueError):
        return ""


def ca_subjects(path: str) -> tuple[str, ...]:
    """The subjects of the certificates in a CA file ("" path: none)."""
    if not path:
        return ()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError):
        return ()
    return tuple(_format_name(c.get("subject")) for c in ctx.get_ca_certs())


async def peek_certificate(
    host: str, port: int, server_name: str, timeout: float
) -> CertInfo | None:
    """Read the server's certificate without verifying it (diagnosis of a verify failure only).

    Nothing is sent over this connection but the TLS handshake; it is closed at once.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                host, port, ssl=ctx, server_hostname=server_name or host
            )
            obj = writer.get_extra_info("ssl_object")
            der = obj.getpeercert(binary_form=True) if obj is not None else None
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.transport.abort()
    if not der:
        return None
    decoded = _decode_der(der)
    if decoded is None:
        return None
    names = tuple(str(value).strip() for _, value in decoded.get("subjectAltName", ()))
    return CertInfo(
        subject=_format_name(decoded.get("subject")),
        issuer=_format_name(decoded.get("issuer")),
        names=names,
        not_after=str(decoded.get("notAfter", "")),
    )


async def observe(config: Config) -> Observation:
    """One check with the manager's probe and configuration, plus what explains a failure."""
    probe = Probe(
        config.health_url,
        config.health_timeout,
        config.health_ca_path,
        config.health_server_name,
        client_cert=config.health_client_cert_path,
        client_key=config.health_client_key_path,
    )
    try:
        result = await probe.check()
    finally:
        await probe.close()
    unverified: CertInfo | None = None
    subjects: tuple[str, ...] = ()
    if result.error is ErrorKind.TLS_VERIFY:
        host, port = _url_host_port(config.health_url)
        unverified = await peek_certificate(
            host, port, config.health_server_name, config.health_timeout
        )
        subjects = ca_subjects(config.health_ca_path)
    client = cert_file_subject(config.health_client_cert_path)
    return Observation(result, probe.peer_certificate, unverified, subjects, client)


def run(config: Config, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``vipgate check``: print the verdict; 0 healthy, 1 unhealthy, 2 configuration error."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    for w in config.warnings:
        print(f"warning: {w}", file=err)
    if not config.health_enabled:
        print(
            f"vipgate check: no health check is configured: set {_ADDRESS}, e.g. "
            "https://localhost:6443/livez with control_plane_health_check_ca_path="
            f"{KUBEADM_CA} and control_plane_health_check_server_name=kubernetes. "
            "Without it the manager announces the VIP unconditionally.",
            file=err,
        )
        return EXIT_CONFIG
    try:
        obs = asyncio.run(observe(config))
    except ValueError as e:
        print(f"vipgate check: invalid configuration: {e}", file=err)
        return EXIT_CONFIG
    v = verdict(config, obs)
    with contextlib.suppress(BrokenPipeError):
        out.write(v.text)
        out.flush()
    return v.code
