"""Every environment name accounted for: what vipgate says about names it does not read.

Rules this module keeps:

* Only names with a lowercase letter are looked at: kube-vip's and vipgate's names are
  lowercase (kube-vip's ``vip_arpRate`` aside), and the uppercase ones a pod always has
  (``KUBERNETES_SERVICE_HOST``, Service links, ``PATH``) are none of vipgate's business.
* A name vipgate reads (an env name of :data:`~vipgate.config.table.SETTINGS`): nothing.
* A kube-vip setting vipgate does not implement (:data:`~vipgate.config.table.NOT_IMPLEMENTED`):
  one warning naming it and what vipgate does instead.
* Any other name that looks like kube-vip's or vipgate's (its lowercase form starts with one of
  :data:`PREFIXES`, taken from kube-vip's ``pkg/kubevip/config_envvar.go``): one warning naming
  it and the closest known name. Names are case-sensitive, as in kube-vip.
* An empty variable counts as unset (as everywhere in vipgate): no warning. A value is never
  part of a warning.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping

from vipgate.config.table import NOT_IMPLEMENTED, SETTINGS

READ: frozenset[str] = frozenset(name for s in SETTINGS for name in s.env)
KNOWN: tuple[str, ...] = tuple(sorted(READ | set(NOT_IMPLEMENTED)))

# The first words of kube-vip's environment names (config_envvar.go) and of vipgate's own.
PREFIXES: tuple[str, ...] = (
    "vip_",
    "bgp_",
    "mpbgp_",
    "cp_",
    "control_plane_",
    "svc_",
    "lb_",
    "egress_",
    "prometheus_",
    "dns_",
    "dhcp_",
    "k8s_",
    "kubernetes_",
    "zebra_",
    "enable_",
    "disable_service",
    "per_service_",
    "instance_",
    "mirror_",
    "iptables_",
    "backend_health",
    "health_check_",
    "config_file",
    "debounce_",
)

_LOWER = {name.lower(): name for name in KNOWN}


def closest(name: str) -> str | None:
    """The known name closest to ``name`` (compared in lowercase), or None. Only names with the
    same prefix are compared when ``name`` has one of :data:`PREFIXES` (a name is looked at
    only then, or when it is a known name in other case)."""
    low = name.lower()
    prefix = next((p for p in PREFIXES if low.startswith(p)), "")
    return _nearest(low, {k: v for k, v in _LOWER.items() if k.startswith(prefix)})


def _nearest(name: str, by_lower: Mapping[str, str]) -> str | None:
    """The value of ``by_lower`` whose lowercase key is closest to ``name`` (difflib), or None."""
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def looks_like_a_setting(name: str) -> bool:
    """An environment name vipgate does not read that looks like kube-vip's or vipgate's (has a
    lowercase letter; starts with one of :data:`PREFIXES`, or is a known name in other case)."""
    if name in READ or name in NOT_IMPLEMENTED or not any(c.islower() for c in name):
        return False
    return name.lower().startswith(PREFIXES) or name.lower() in _LOWER


@functools.lru_cache(maxsize=1024)
def name_warning(name: str) -> str | None:
    """The warning for one environment name (never its value), or None."""
    if name in READ or not any(c.islower() for c in name):
        return None
    if name in NOT_IMPLEMENTED:
        return (
            f"environment variable {name} is a kube-vip setting vipgate does not implement; "
            f"it is ignored: {NOT_IMPLEMENTED[name]}"
        )
    if not looks_like_a_setting(name):
        return None
    near = closest(name)
    hint = f"did you mean {near}?" if near else "see the settings in docs/configuration.md"
    return (
        f"environment variable {name} is not a setting of vipgate or kube-vip; it is "
        f"ignored: {hint}"
    )


def closest_flag(flag: str, known: Iterable[str]) -> str | None:
    """The flag of ``known`` closest to the unknown ``flag`` (compared in lowercase, as
    :func:`closest` compares environment names), or None. Only names are compared: a flag's
    value may be a secret and is never passed here."""
    lower: dict[str, str] = {}
    for k in known:
        lower.setdefault(k.lower(), k)
    return _nearest(flag, lower)


def name_warnings(env: Mapping[str, str]) -> list[str]:
    """One warning per set environment name vipgate does not read (see the module's rules)."""
    return [w for name in sorted(env) if env[name] != "" for w in [name_warning(name)] if w]
