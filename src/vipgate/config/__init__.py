"""vipgate's configuration: kube-vip's env variables and flags, parsed once, validated, frozen.

Rules this package keeps:

* Names, flags and defaults are kube-vip's (``pkg/kubevip/config_envvar.go`` and the flags of
  ``cmd/kube-vip.go``), so a kube-vip manifest works by changing the image, except for the
  differences docs/configuration.md lists. Environment variables win over flags; an empty
  environment variable counts as unset (as in kube-vip, which tests ``os.Getenv(x) != ""``).
* One table, :data:`SETTINGS` (:mod:`vipgate.config.table`), says for each setting its names,
  flags, default, kind, help, parser and the :class:`Config` attribute it fills. The CLI,
  ``vipgate config``, the manifest generator and :func:`load` read it; checks between settings
  are the named rules of :mod:`vipgate.config.rules`; the ``bgp_peers`` grammar is
  :mod:`vipgate.config.peers`; the VIP list and ``vip_subnet`` are :mod:`vipgate.config.vips`.
* Nothing else in vipgate reads ``os.environ``: :func:`load` takes the environment and the parsed
  flags as arguments and returns one frozen :class:`Config`.
* Every bad value raises :class:`ConfigError` naming the variable (or flag), the value and what is
  accepted. Secrets (BGP passwords) are never part of an error, a warning or a ``repr``.
* Derived values have one home: the announced prefixes (:attr:`Config.prefixes`, host routes),
  the VIPs' prefixes on the interface (:attr:`Config.interface_prefixes`), the keepalive
  interval (:attr:`Config.keepalive`), the router id source (:attr:`Config.router_id_source`).

Loading never opens a socket and never touches the network; things that need the host's
interfaces (the default-route interface, a router id from the interfaces) are resolved by the
manager at start.
"""

from vipgate.config.loading import describe, load
from vipgate.config.model import Config, RouterIdSource
from vipgate.config.peers import (
    BFD_DEFAULT_MS,
    BFD_DEFAULT_MULTIPLIER,
    BFD_INTERVAL_MS,
    BFD_MULTIPLIER,
    PEER_FORM,
    Bfd,
    NextHopMode,
    Peer,
    parse_peers,
)
from vipgate.config.rules import check_client_pair
from vipgate.config.table import SETTINGS, SETTINGS_BY_KEY, Setting, collect, environment
from vipgate.config.values import (
    AS_TRANS,
    EXIT_CONFIG,
    IFNAMSIZ,
    REDACTED,
    TCP_MD5SIG_MAXKEYLEN,
    ConfigError,
    IPAddress,
    IPNetwork,
    Raw,
    Source,
    parse_bool,
    readiness_url,
)

__all__ = [
    "AS_TRANS",
    "BFD_DEFAULT_MS",
    "BFD_DEFAULT_MULTIPLIER",
    "BFD_INTERVAL_MS",
    "BFD_MULTIPLIER",
    "EXIT_CONFIG",
    "IFNAMSIZ",
    "PEER_FORM",
    "REDACTED",
    "SETTINGS",
    "SETTINGS_BY_KEY",
    "TCP_MD5SIG_MAXKEYLEN",
    "Bfd",
    "Config",
    "ConfigError",
    "IPAddress",
    "IPNetwork",
    "NextHopMode",
    "Peer",
    "Raw",
    "RouterIdSource",
    "Setting",
    "Source",
    "check_client_pair",
    "collect",
    "describe",
    "environment",
    "load",
    "parse_bool",
    "parse_peers",
    "readiness_url",
]
