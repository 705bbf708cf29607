"""Value parsers of vipgate's settings: a raw string in, a typed value or a ConfigError out.

Each parser names the variable (or flag) that gave the value, the value (never a secret) and what
is accepted. Nothing here opens a socket; only the certificate parsers read the named files.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import stat
import urllib.parse
from dataclasses import dataclass, field
from enum import Enum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REDACTED = "***"


class ConfigError(ValueError):
    """An invalid setting: the message names the variable, the value and what is accepted."""


EXIT_CONFIG = 2
"""Every command's exit status for a configuration it refuses: a :class:`ConfigError`, or one
``vipgate manager`` would not run (``Config.not_runnable``, a host fact it needs missing)."""


class Source(Enum):
    DEFAULT = "default"
    FLAG = "flag"
    ENV = "env"


@dataclass(frozen=True)
class Raw:
    value: str = field(repr=False)  # may be a secret
    source: Source
    name: str  # the env var or flag that gave the value (for error messages)


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
BOOL_HELP = "one of 1 t T TRUE true True 0 f F FALSE false False"


def show(raw: Raw, secret: bool = False) -> str:
    return f"{raw.name}={REDACTED if secret else repr(raw.value)}"


def parse_bool(value: str) -> bool | None:
    """Go's strconv.ParseBool: the accepted spellings, else None."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def as_bool(raw: Raw) -> bool:
    b = parse_bool(raw.value)
    if b is None:
        raise ConfigError(f"{show(raw)}: not a boolean; accepted: {BOOL_HELP}")
    return b


def as_int(raw: Raw, lo: int, hi: int, what: str) -> int:
    v = raw.value.strip()
    if not (v.isascii() and (v.isdigit() or (v[:1] == "-" and v[1:].isdigit()))):
        raise ConfigError(f"{show(raw)}: not an integer; accepted: {what}")
    n = int(v)
    if not lo <= n <= hi:
        raise ConfigError(f"{show(raw)}: out of range; accepted: {what}")
    return n


# RFC 6793 section 2: AS_TRANS stands in for a 4-octet AS in 2-octet fields; a router refuses an
# OPEN whose 4-octet AS capability carries it (FRR: Bad Peer AS).
AS_TRANS = 23456
AS_TRANS_WHY = "23456, AS_TRANS (RFC 6793), which no BGP speaker may use as its AS"


def as_asn(raw: Raw) -> int:
    n = as_int(raw, 1, 4294967295, "an AS number 1-4294967295 other than 23456")
    if n == AS_TRANS:
        raise ConfigError(f"{show(raw)}: {AS_TRANS_WHY}; accepted: an AS number 1-4294967295")
    return n


def seconds(raw: Raw) -> float:
    accepted = "a positive number of seconds, without unit (e.g. 5 or 0.5)"
    try:
        v = float(raw.value.strip())
    except ValueError:
        raise ConfigError(f"{show(raw)}: not a number; accepted: {accepted}") from None
    if not (v > 0 and v <= 86400):
        raise ConfigError(f"{show(raw)}: must be > 0 and <= 86400; accepted: {accepted}")
    return v


def seconds0(raw: Raw, below: float | None = None, below_name: str = "") -> float:
    accepted = "0 (off) or a positive number of seconds, without unit (e.g. 0.2)"
    if below is not None:
        accepted += f", below {below_name}={below:g}"
    try:
        v = float(raw.value.strip())
    except ValueError:
        raise ConfigError(f"{show(raw)}: not a number; accepted: {accepted}") from None
    if not (v >= 0 and v <= 3600):
        raise ConfigError(f"{show(raw)}: must be >= 0 and <= 3600; accepted: {accepted}")
    if below is not None and v >= below:
        raise ConfigError(
            f"{show(raw)}: must be below {below_name}={below:g}; accepted: {accepted}"
        )
    return v


def readiness_url(health_url: str, setting: str) -> str:
    """``control_plane_health_check_shutdown_address`` in effect: "" when off."""
    if setting.strip().lower() == "off" or not health_url:
        return ""
    if setting:
        return setting
    parts = urllib.parse.urlsplit(health_url)
    if parts.path.rstrip("/") != "/livez":
        return ""
    return urllib.parse.urlunsplit(parts._replace(path="/readyz"))


def as_ip(raw: Raw, what: str = "an IPv4 or IPv6 address") -> IPAddress:
    v = raw.value.strip()
    if "%" in v:
        raise ConfigError(
            f"{show(raw)}: an IPv6 scope id (%zone) is not supported; accepted: {what}"
        )
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        raise ConfigError(f"{show(raw)}: not an IP address; accepted: {what}") from None


# Linux limits (include/uapi/linux/if.h, net/core/dev.c dev_valid_name): an interface name is
# 1 to IFNAMSIZ-1 bytes, not "." or "..", without '/', ':' or whitespace.
IFNAMSIZ = 16
# TCP MD5 key length limit (include/uapi/linux/tcp.h TCP_MD5SIG_MAXKEYLEN).
TCP_MD5SIG_MAXKEYLEN = 80
IFNAME_HELP = (
    f"an interface name of 1-{IFNAMSIZ - 1} bytes (Linux IFNAMSIZ) without '/', ':' or "
    "whitespace, not '.' or '..'"
)


def ifname(raw: Raw, extra: str = "") -> str:
    """An interface name the kernel can hold (or empty). Existence is checked at start."""
    v = raw.value.strip()
    if v == "":
        return v
    try:
        n = len(v.encode())
    except UnicodeEncodeError:
        n = 0
    if (
        not 1 <= n < IFNAMSIZ
        or v in (".", "..")
        or any(c in "/:" or c.isspace() or not c.isprintable() for c in v)
    ):
        raise ConfigError(
            f"{show(raw)}: not a valid interface name; accepted: {IFNAME_HELP}{extra}"
        )
    return v


def password_problem(password: str) -> str | None:
    """Why the kernel or the router cannot use this TCP MD5 password (never echoing it)."""
    try:
        n = len(password.encode())
    except UnicodeEncodeError:
        return "the password is not valid UTF-8"
    if n > TCP_MD5SIG_MAXKEYLEN:
        return (
            f"the password is longer than {TCP_MD5SIG_MAXKEYLEN} bytes (Linux TCP_MD5SIG_MAXKEYLEN)"
        )
    if any(not c.isprintable() and c != " " for c in password):
        return (
            "the password contains a control character or another non-printing character "
            "(a trailing newline from a Secret or file?)"
        )
    return None


PASSWORD_HELP = (
    f"a TCP MD5 password of 1-{TCP_MD5SIG_MAXKEYLEN} bytes of printable UTF-8, or empty for none"
)


def usable_unicast(a: IPAddress) -> str | None:
    """Why ``a`` cannot be a unicast address on the wire (a peer, a source), else None."""
    if a.is_unspecified:
        return "is unspecified"
    if a.is_multicast:
        return "is multicast"
    if a == ipaddress.IPv4Address("255.255.255.255"):
        return "is the broadcast address"
    if isinstance(a, ipaddress.IPv6Address):
        if a.ipv4_mapped is not None:
            return "is IPv4-mapped (write the IPv4 address)"
        if a.is_link_local:
            return "is IPv6 link-local (it needs a %zone, which vipgate does not support)"
    return None


def parse_listen(value: str) -> tuple[str, int]:
    """Go's host:port listen syntax: ":2112", "0.0.0.0:2112", "[::1]:2112", "localhost:2112"."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("bad port")
    if "%" in host:
        raise ValueError("scope id")
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])
        host = host[1:-1]
    elif host and host != "localhost":
        # A host name could fail to resolve on the node, long after `vipgate config` said yes.
        ipaddress.IPv4Address(host)
    return host, int(port)


def listen(raw: Raw) -> str:
    v = raw.value.strip()
    try:
        parse_listen(v)
    except ValueError:
        raise ConfigError(
            f"{show(raw)}: not a listen address; accepted: [host]:port with port 1-65535 and "
            "host an IP address (IPv6 in brackets, no %zone), localhost or empty for all, "
            "e.g. :2112, 127.0.0.1:2112, [::1]:2112 (no metrics server: prometheus_enable=false, "
            "or an empty --prometheusHTTPServer flag)"
        ) from None
    return v


def host_problem(host: str) -> str | None:
    """Why ``host`` (an IP literal or DNS name) cannot be connected to or verified, else None."""
    if "%" in host:
        return "an IPv6 scope id (%zone) is not supported"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        encoded = host.encode("idna")  # what the connection and the TLS SNI will send
    except UnicodeError:
        return "not a DNS name (each label 1-63 characters)"
    labels = encoded.decode("ascii").rstrip(".").split(".")
    if len(encoded.rstrip(b".")) > 253 or any(
        not label or not all(c.isalnum() or c in "-_" for c in label) for label in labels
    ):
        return "not a DNS name (letters, digits, '-' and '.', at most 253 characters)"
    return None


def url(raw: Raw) -> str:
    v = raw.value
    accepted = (
        "an http:// or https:// URL with a host and no user:password@, "
        "e.g. https://localhost:6443/livez"
    )
    try:
        netloc = urllib.parse.urlsplit(v).netloc
    except ValueError:
        netloc = v
    # user:password@host would be logged with the URL: refuse it and never echo the value.
    shown = f"{raw.name}=(a URL with user info, not shown)" if "@" in netloc else show(raw)
    if "@" in netloc:
        raise ConfigError(
            f"{shown}: credentials in the URL are not supported; accepted: {accepted}"
        )
    if v != v.strip() or any(c.isspace() for c in v):
        raise ConfigError(f"{shown}: contains whitespace; accepted: {accepted}")
    try:
        u = urllib.parse.urlsplit(v)
        port = u.port  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{shown}: not a valid URL; accepted: {accepted}") from None
    if u.scheme not in ("http", "https"):
        raise ConfigError(f"{shown}: scheme {u.scheme!r} not supported; accepted: {accepted}")
    if not u.hostname:
        raise ConfigError(f"{shown}: no host; accepted: {accepted}")
    if port == 0:
        raise ConfigError(f"{shown}: port 0; accepted: {accepted}")
    problem = host_problem(u.hostname)
    if problem:
        raise ConfigError(f"{shown}: the host is {problem}; accepted: {accepted}")
    if not (u.path + u.query).isascii() or not all(c.isprintable() for c in v):
        raise ConfigError(
            f"{shown}: the path or query has non-ASCII or control characters; accepted: "
            f"{accepted}, other characters %-encoded"
        )
    return v


def ca_path(raw: Raw) -> str:
    path = raw.value
    accepted = (
        "a readable PEM file holding at least one CA certificate, or empty for the system "
        "trust store"
    )
    data = read_pem(raw, accepted)
    if (
        b"-----BEGIN CERTIFICATE-----" not in data
        and b"-----BEGIN TRUSTED CERTIFICATE-----" not in data
    ):
        raise ConfigError(f"{show(raw)}: PEM without a certificate; accepted: {accepted}")
    try:
        ssl.create_default_context(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(
            f"{show(raw)}: certificate does not load ({e}); accepted: {accepted}"
        ) from None
    return path


def _no_password() -> bytes:
    raise ValueError("encrypted private key")  # never prompt: vipgate has no password to give


def read_pem(raw: Raw, accepted: str) -> bytes:
    """The file's bytes (4 MiB at most) if it exists, is readable and holds PEM."""
    try:
        st = os.stat(raw.value)
    except FileNotFoundError:
        raise ConfigError(f"{show(raw)}: no such file; accepted: {accepted}") from None
    except OSError as e:
        raise ConfigError(
            f"{show(raw)}: cannot stat ({e.strerror}); accepted: {accepted}"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{show(raw)}: is a directory; accepted: {accepted}")
    try:
        with open(raw.value, "rb") as f:
            data = f.read(4 * 1024 * 1024)
    except OSError as e:
        raise ConfigError(
            f"{show(raw)}: cannot read ({e.strerror}); accepted: {accepted}"
        ) from None
    if b"-----BEGIN" not in data:
        raise ConfigError(f"{show(raw)}: not PEM; accepted: {accepted}")
    return data


_LOG_LEVELS = {
    "panic": "error",
    "fatal": "error",
    "error": "error",
    "warn": "warning",
    "warning": "warning",
    "info": "info",
    "debug": "debug",
    "trace": "debug",
}
_LOGRUS = ("error", "error", "error", "warning", "info", "debug", "debug")


def log_level(raw: Raw) -> str:
    v = raw.value.strip()
    if v.isdigit() and int(v) < len(_LOGRUS):
        return _LOGRUS[int(v)]
    if v.lower() in _LOG_LEVELS:
        return _LOG_LEVELS[v.lower()]
    raise ConfigError(
        f"{show(raw)}: unknown log level; accepted: debug, info, warning, error, or 0-6 (kube-vip)"
    )
