"""``vipgate manifest pod|daemonset``: Kubernetes manifests from kube-vip's flag names.

Rules this module keeps:

* The pod has the shape of kube-vip's reference static pod: a Pod ``vipgate`` in ``kube-system``,
  one container with ``args: [manager]``, ``hostNetwork: true`` and the capabilities NET_ADMIN and
  NET_RAW. The DaemonSet (``apps/v1``) runs the same container on control-plane nodes.
* Both carry the hardening of a large distribution's control-plane pods (:data:`SECURITY_CONTEXT`):
  a read-only root filesystem (vipgate writes no file), every capability dropped but NET_ADMIN
  and NET_RAW, no privilege escalation; ``priorityClassName: system-node-critical``, resource
  requests (:data:`RESOURCES`, no limits: a throttled or OOM-killed vipgate withdraws the VIP) and
  a ``terminationGracePeriodSeconds`` (:data:`TERMINATION_GRACE_SECONDS`) that covers vipgate's
  stop, so the kubelet's SIGKILL never cuts the withdrawal short.
* Only the settings given on the command line go into the container's environment, under their
  canonical kube-vip names (``--vip`` becomes ``address``), plus what the mode needs:
  ``bgp_enable`` and ``cp_enable`` are "true" unless given (vipgate is BGP mode for the control
  plane only); a manifest without a VIP or with ``--bgp=false`` is refused.
* Every value is a string, always double-quoted, so no value can turn into a YAML boolean,
  number or null (``"true"``, ``"0123"``, ``"y"``, ``"null"``, ``":2112"``...) under any YAML 1.1
  or 1.2 reader.
* An empty value cannot be written as an environment variable (vipgate, like kube-vip, treats an
  empty variable as unset). A setting given as empty whose default is not empty (e.g.
  ``--prometheusHTTPServer ""``, which turns metrics off) goes into ``args`` as ``--flag=``; one
  whose default is empty is the default and is left out.
* When a CA path is set, the file is mounted read-only from the host at the same path (hostPath,
  type File). kube-vip's generator forgets this volume, so its health check cannot work. The
  health check's client certificate and key are mounted by their directory (hostPath, type
  Directory, read-only; one volume when both are in one directory): a renewal renames new files
  over the old ones (``kubeadm certs renew``) or moves a symlink (the kubelet's
  ``kubelet-client-current.pem``), and a file mount would keep showing the old file, while
  vipgate loads renewed files without a restart (docs/configuration.md, "Client
  certificates").
* No kubeconfig mount: vipgate never talks to the Kubernetes API.
* Secrets: the manifest holds what the user gave (it is their manifest), but :func:`warnings`
  says when a BGP password is in it in plain text; the password itself is printed nowhere else.

The manifest is made from flags only, never from the environment of the shell that runs the
generator. It is usually generated before ``kubeadm init``, when the CA file does not exist yet,
so :func:`load_config` validates everything but the CA file's content unless the file is present.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from typing import Any

import yaml

from vipgate import __version__
from vipgate.budget import STOP_BUDGET
from vipgate.config import (
    SETTINGS,
    SETTINGS_BY_KEY,
    Config,
    ConfigError,
    check_client_pair,
    collect,
    load,
    parse_bool,
)

DEFAULT_IMAGE = f"ghcr.io/vipgate/vipgate:v{__version__}"
NAME = "vipgate"
NAMESPACE = "kube-system"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
LEGACY_MASTER_LABEL = "node-role.kubernetes.io/master"
CA_VOLUME = "health-ca"
APP_LABELS = {"app.kubernetes.io/name": NAME}
KINDS = ("pod", "daemonset")

# The container's securityContext (the pod runs as root: netlink and TCP MD5 need it).
SECURITY_CONTEXT: dict[str, Any] = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
}
# Measured in the lab: ~30 MB RSS, a few ms of CPU per health check.
RESOURCES: dict[str, Any] = {"requests": {"cpu": "20m", "memory": "64Mi"}}
PRIORITY_CLASS = "system-node-critical"
# vipgate's stop after SIGTERM: the drain (bgp_graceful_shutdown_seconds, default 3 s), then at
# most budget.STOP_BUDGET.after_drain (3 s: withdraw + Cease, the probes, the metrics server, the
# VIP; budget.py's table). The least terminationGracePeriodSeconds we write; a longer drain gets
# more (termination_grace).
TERMINATION_GRACE_SECONDS = 10

_CA_KEY = "control_plane_health_check_ca_path"
_CLIENT_CERT_KEY = "control_plane_health_check_client_cert_path"
_CLIENT_KEY_KEY = "control_plane_health_check_client_key_path"
# The files the container reads from the host: setting -> volume name.
_FILE_VOLUMES = {
    _CA_KEY: CA_VOLUME,
    _CLIENT_CERT_KEY: "health-client-cert",
    _CLIENT_KEY_KEY: "health-client-key",
}
_SECRET_KEYS = tuple(s.key for s in SETTINGS if s.secret)
ALLOCATOR_ENV = (("MALLOC_ARENA_MAX", "1"), ("MALLOC_MMAP_THRESHOLD_", "131072"))
"""glibc malloc settings the image also sets (Dockerfile): one arena, and a fixed mmap threshold
so that large blocks (asyncio's 256 kB SSL buffers) are always mmapped and returned when freed
-- RSS lower and steadier over months (bench/README.md, "bench_soak --long")."""


class _Quoted(str):
    """A string the emitter always writes double-quoted."""


class _Dumper(yaml.SafeDumper):
    pass


def _represent_quoted(dumper: yaml.SafeDumper, data: _Quoted) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style='"')


_Dumper.add_representer(_Quoted, _represent_quoted)


# --------------------------------------------------------------------------------------------
# Configuration for a manifest
# --------------------------------------------------------------------------------------------


def effective_flags(flags: Mapping[str, str | None]) -> dict[str, str | None]:
    """The flags plus what the mode needs: vipgate runs in BGP mode for the control plane only.

    ``bgp_enable`` and ``cp_enable`` are added as "true" when not given (the manager refuses to
    start without ``bgp_enable``); an explicit ``--bgp=false`` and a missing VIP are errors, as
    the pod would only crash-loop.
    """
    out = dict(flags)
    for key in ("bgp_enable", "cp_enable"):
        if out.get(key) is None:
            out[key] = "true"
    if parse_bool(out["bgp_enable"] or "") is False:
        raise ConfigError(
            f"--bgp={out['bgp_enable']!r}: vipgate implements BGP mode only; accepted: --bgp "
            "(or leave it out: the manifest sets bgp_enable=true)"
        )
    if not (out.get("address") or "").strip():
        raise ConfigError(
            "no VIP: --address (or --vip) is required; accepted: an IPv4 or IPv6 address, "
            "or both comma-separated (dual stack), e.g. --address 203.0.113.100 or --address "
            "203.0.113.100,2001:db8:100::100"
        )
    return out


def load_config(flags: Mapping[str, str | None]) -> Config:
    """Validate the flags as the manager will see them on the node. Raises ConfigError.

    The flags are completed by :func:`effective_flags`. The CA, client certificate and key paths
    must be absolute (they become hostPaths and mountPaths). A file's content is checked only if
    it exists here (for the client pair: both files); otherwise the manager checks it on the node
    at start. The client certificate and key go together (both or neither) in any case.
    """
    flags = effective_flags(flags)
    examples = {
        _CA_KEY: "/etc/kubernetes/pki/ca.crt",
        _CLIENT_CERT_KEY: "/var/lib/kubelet/pki/kubelet-client-current.pem",
        _CLIENT_KEY_KEY: "/var/lib/kubelet/pki/kubelet-client-current.pem",
    }
    for key, example in examples.items():
        path = flags.get(key)
        if path and not os.path.isabs(path):
            raise ConfigError(
                f"{SETTINGS_BY_KEY[key].flags[0]}={path!r}: not an absolute path; accepted: "
                f"the absolute path of the file on the node, e.g. {example} (it is mounted from "
                "the host at the same path)"
            )
    raw = collect({}, flags)
    check_client_pair(raw[_CLIENT_CERT_KEY], raw[_CLIENT_KEY_KEY])
    absent = {k: None for k in _FILE_VOLUMES if flags.get(k) and not os.path.exists(flags[k] or "")}
    if _CLIENT_CERT_KEY in absent or _CLIENT_KEY_KEY in absent:
        absent.update({_CLIENT_CERT_KEY: None, _CLIENT_KEY_KEY: None})
    return load({}, {**flags, **absent})


def warnings(
    kind: str, config: Config, flags: Mapping[str, str | None], taint: str | None
) -> list[str]:
    """What the operator should know about this manifest (printed on stderr, never secrets)."""
    out = list(config.warnings)
    what = {_CA_KEY: "CA file", _CLIENT_CERT_KEY: "client certificate", _CLIENT_KEY_KEY: "key"}
    paths = {flags.get(k): k for k in reversed(_FILE_VOLUMES) if flags.get(k)}  # first key
    for path, key in reversed(paths.items()):
        if path and not os.path.exists(path):
            out.append(
                f"{what[key]} {path} does not exist on this machine (fine before kubeadm init): "
                "the manager checks it on the node at start"
            )
    secrets = [
        SETTINGS_BY_KEY[k].env[0]
        for k in _SECRET_KEYS
        if flags.get(k) and (k != "bgp_peers" or any(p.password for p in config.peers))
    ]
    if secrets:
        where = (
            "keep the manifest file readable by root only (a static pod cannot read Secrets)"
            if kind == "pod"
            else "better: put it in a Secret and refer to it with env[].valueFrom.secretKeyRef"
        )
        out.append(
            f"the manifest holds a BGP password in plain text ({', '.join(secrets)}): {where}"
        )
    host = _url_host(config.health_url)
    if (
        config.health_url.startswith("https://")
        and host in ("localhost", "127.0.0.1", "::1")
        and not config.health_server_name
    ):
        out.append(
            f"the health URL's host is {host}: kubeadm's apiserver certificate does not name "
            "localhost or 127.0.0.1, so verification fails and the route is never announced; "
            "add --controlPlaneHealthCheckServerName kubernetes"
        )
    if kind == "pod" and taint is not None:
        out.append("--taint applies to the DaemonSet only; a static pod ignores taints")
    return out


def _url_host(url: str) -> str:
    import urllib.parse

    try:
        return urllib.parse.urlsplit(url).hostname or ""
    except ValueError:
        return ""


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------


def env_and_args(flags: Mapping[str, str | None]) -> tuple[list[dict[str, str]], list[str]]:
    """The container's env (settings given, canonical names) and args (``manager`` + empties)."""
    env: list[dict[str, str]] = []
    args = ["manager"]
    for s in SETTINGS:
        value = flags.get(s.key)
        if value is None:
            continue
        if value == "":
            if s.default != "" and s.flags:
                args.append(f"{s.flags[0]}=")
            continue
        env.append({"name": s.env[0], "value": _Quoted(value)})
    env += [{"name": k, "value": _Quoted(v)} for k, v in ALLOCATOR_ENV]
    return env, args


def container(flags: Mapping[str, str | None], image: str | None = None) -> dict[str, Any]:
    env, args = env_and_args(flags)
    c: dict[str, Any] = {
        "name": NAME,
        "image": image or DEFAULT_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": env,
        "securityContext": copy.deepcopy(SECURITY_CONTEXT),
        "resources": copy.deepcopy(RESOURCES),
    }
    mounts = [
        {"name": _FILE_VOLUMES[key], "mountPath": path, "readOnly": True}
        for key, path, _ in _files(flags)
    ]
    if mounts:
        c["volumeMounts"] = mounts
    return c


def _files(flags: Mapping[str, str | None]) -> list[tuple[str, str, str]]:
    """(setting, path, hostPath type) of each host path the container reads, each once: the CA
    file itself, the client certificate's and key's directories (renewals replace the files)."""
    seen: dict[str, tuple[str, str]] = {}
    for key in _FILE_VOLUMES:
        path = flags.get(key)
        if not path:
            continue
        kind = "File" if key == _CA_KEY else "Directory"
        path = path if kind == "File" else os.path.dirname(path)
        if path not in seen:
            seen[path] = (key, kind)
    return [(key, path, kind) for path, (key, kind) in seen.items()]


def _volumes(flags: Mapping[str, str | None]) -> list[dict[str, Any]]:
    return [
        {"name": _FILE_VOLUMES[key], "hostPath": {"path": path, "type": kind}}
        for key, path, kind in _files(flags)
    ]


def termination_grace(flags: Mapping[str, str | None]) -> int:
    """``terminationGracePeriodSeconds`` that fits vipgate's stop: the drain
    (``bgp_graceful_shutdown_seconds``) plus ``STOP_BUDGET.after_drain`` (``budget.py``), rounded
    up, plus 2 s for a busy node; at least :data:`TERMINATION_GRACE_SECONDS`."""
    key = "bgp_graceful_shutdown_seconds"
    drain = float(flags.get(key) or SETTINGS_BY_KEY[key].default)
    return max(TERMINATION_GRACE_SECONDS, math.ceil(drain + STOP_BUDGET.after_drain) + 2)


def pod_spec(flags: Mapping[str, str | None], image: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container(flags, image)],
        "hostNetwork": True,
        "priorityClassName": PRIORITY_CLASS,
        "terminationGracePeriodSeconds": termination_grace(flags),
    }
    volumes = _volumes(flags)
    if volumes:
        spec["volumes"] = volumes
    return spec


def pod(flags: Mapping[str, str | None], image: str | None = None) -> dict[str, Any]:
    """The static pod (for /etc/kubernetes/manifests on every control-plane node)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": pod_spec(flags, image),
    }


def daemonset(
    flags: Mapping[str, str | None], image: str | None = None, taint: bool = True
) -> dict[str, Any]:
    """The DaemonSet on control-plane nodes (needs a running cluster, unlike the static pod)."""
    spec = pod_spec(flags, image)
    spec["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                # Terms are ORed: the current label, or the legacy one of older clusters.
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": CONTROL_PLANE_LABEL, "operator": "Exists"}]},
                    {"matchExpressions": [{"key": LEGACY_MASTER_LABEL, "operator": "Exists"}]},
                ]
            }
        }
    }
    if taint:
        spec["tolerations"] = [
            {"key": CONTROL_PLANE_LABEL, "operator": "Exists", "effect": "NoSchedule"},
            {"key": LEGACY_MASTER_LABEL, "operator": "Exists", "effect": "NoSchedule"},
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(APP_LABELS)},
        "spec": {
            "selector": {"matchLabels": dict(APP_LABELS)},
            "template": {"metadata": {"labels": dict(APP_LABELS)}, "spec": spec},
        },
    }


def dump(obj: Mapping[str, Any]) -> str:
    """YAML through PyYAML's safe emitter, keys in the order built."""
    return yaml.dump(obj, Dumper=_Dumper, default_flow_style=False, sort_keys=False)


def render(
    kind: str,
    config: Config,
    flags: Mapping[str, str | None],
    image: str | None = None,
    taint: str | None = None,
) -> str:
    """The manifest text. ``config`` is the validated configuration of ``flags``.

    Raises ConfigError for an unknown kind or a ``taint`` that is not a boolean.
    """
    del config  # validated by the caller; the manifest carries the flags as given
    flags = effective_flags(flags)
    if kind == "pod":
        return dump(pod(flags, image))
    if kind == "daemonset":
        tolerate = True
        if taint is not None:
            parsed = parse_bool(taint)
            if parsed is None:
                raise ConfigError(
                    f"--taint={taint!r}: not a boolean; accepted: one of 1 t T TRUE true True "
                    "0 f F FALSE false False"
                )
            tolerate = parsed
        return dump(daemonset(flags, image, tolerate))
    raise ConfigError(f"manifest kind {kind!r}: accepted: {', '.join(KINDS)}")
