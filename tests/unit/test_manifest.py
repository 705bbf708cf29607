"""Manifests: Kubernetes schema (offline), env round trip, YAML-special strings, CA volume."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from lab.pki import Pki, make_client_cert
from vipgate import __version__
from vipgate.budget import STOP_BUDGET
from vipgate.cli import build_parser, flags_of, main
from vipgate.config import Config, ConfigError, load
from vipgate.manifest import (
    DEFAULT_IMAGE,
    TERMINATION_GRACE_SECONDS,
    effective_flags,
    load_config,
    render,
    warnings,
)

K8S_VERSION = "1.30"


def cli_flags(*argv: str) -> dict[str, str | None]:
    """Flags exactly as `vipgate manifest pod ARGV...` parses them."""
    return flags_of(build_parser().parse_args(["manifest", "pod", *argv]))


def minimal() -> list[str]:
    return ["--vip", "203.0.113.100", "--bgp", "--bgppeers", "192.0.2.1:65001::false"]


def full(ca: Path) -> list[str]:
    return [
        "--interface",
        "lo",
        "--address",
        "203.0.113.100",
        "--vipSubnet",
        "32",
        "--controlplane",
        "--bgp",
        "--localAS",
        "65000",
        "--bgpRouterID",
        "192.0.2.11",
        "--bgppeers",
        "192.0.2.1:65001::false,"
        "[2001:db8:0:1::1]:65001:pw:true:1179:mpbgp_nexthop=fixed;mpbgp_ipv4=192.0.2.11:false;;;",
        "--peerAddress",
        "198.51.100.1",
        "--peerAS",
        "65002",
        "--peerPass",
        "s3cret",
        "--multihop",
        "--sourceIF",
        "eth0",
        "--bgpHoldTimer",
        "90",
        "--bgpKeepAliveInterval",
        "30",
        "--controlPlaneHealthCheckAddress",
        "https://localhost:6443/livez",
        "--controlPlaneHealthCheckPeriodSeconds",
        "1",
        "--controlPlaneHealthCheckTimeoutSeconds",
        "0.5",
        "--controlPlaneHealthCheckFailureThreshold",
        "2",
        "--controlPlaneHealthCheckCAPath",
        str(ca),
        "--controlPlaneHealthCheckServerName",
        "kubernetes",
        "--prometheusHTTPServer",
        "127.0.0.1:2112",
        "--log",
        "debug",
    ]


def make(kind: str, argv: list[str], **kw: Any) -> tuple[str, dict[str, Any]]:
    flags = cli_flags(*argv)
    config = load_config(flags)
    text = render(kind, config, flags, **kw)
    return text, yaml.safe_load(text)


def pod_spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        spec: dict[str, Any] = obj["spec"]
    else:
        spec = obj["spec"]["template"]["spec"]
    return spec


def container_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    containers = pod_spec_of(obj)["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def config_from_manifest(obj: Mapping[str, Any]) -> Config:
    """What the manager in this container would load: env plus the flags in args."""
    c = container_of(obj)
    assert c["args"][0] == "manager"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert all(isinstance(v, str) for v in env.values())
    flags = flags_of(build_parser().parse_args(c["args"]))
    return load(env, flags)


# --------------------------------------------------------------------------------------------
# Kubernetes schema
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pod", "daemonset"])
@pytest.mark.parametrize("variant", ["minimal", "full", "no-metrics", "no-taint"])
def test_validates_against_kubernetes_schema(kind: str, variant: str, ca_file: Path) -> None:
    argv = {
        "minimal": minimal(),
        "full": full(ca_file),
        "no-metrics": [*minimal(), "--prometheusHTTPServer", ""],
        "no-taint": minimal(),
    }[variant]
    taint = "false" if variant == "no-taint" and kind == "daemonset" else None
    _, obj = make(kind, argv, taint=taint)
    assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION


def test_schema_check_is_not_vacuous() -> None:
    # The validator must reject what Kubernetes rejects, e.g. a non-string env value.
    _, obj = make("pod", minimal())
    container_of(obj)["env"][0]["value"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    _, obj = make("pod", minimal())
    obj["spec"]["hostNetwork"] = "true"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------------------------
# Shape
# --------------------------------------------------------------------------------------------


def test_pod_shape() -> None:
    _, obj = make("pod", minimal())
    assert obj["apiVersion"] == "v1"
    assert obj["kind"] == "Pod"
    assert obj["metadata"] == {"name": "vipgate", "namespace": "kube-system"}
    assert obj["spec"]["hostNetwork"] is True
    c = container_of(obj)
    assert c["name"] == "vipgate"
    assert c["image"] == DEFAULT_IMAGE == f"ghcr.io/vipgate/vipgate:v{__version__}"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["manager"]
    assert c["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
    }
    # Only the settings given, by canonical kube-vip name (--vip is `address`).
    assert c["env"] == [
        {"name": "address", "value": "203.0.113.100"},
        {"name": "cp_enable", "value": "true"},  # what the mode needs, though not given
        {"name": "bgp_enable", "value": "true"},
        {"name": "bgp_peers", "value": "192.0.2.1:65001::false"},
        # glibc's allocator as the image sets it (bench/README.md, "bench_soak --long")
        {"name": "MALLOC_ARENA_MAX", "value": "1"},
        {"name": "MALLOC_MMAP_THRESHOLD_", "value": "131072"},
    ]


@pytest.mark.parametrize("kind", ["pod", "daemonset"])
def test_hardening_in_both_kinds(kind: str) -> None:
    _, obj = make(kind, minimal())
    spec = obj["spec"] if kind == "pod" else obj["spec"]["template"]["spec"]
    c = container_of(obj)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert "privileged" not in sc
    assert set(c["resources"]) == {"requests"}  # no limits: throttling would delay a withdrawal
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["terminationGracePeriodSeconds"] == TERMINATION_GRACE_SECONDS  # default drain


def test_termination_grace_covers_vipgates_stop() -> None:
    # The kubelet's SIGKILL must not cut the stop short: graceful-shutdown phase (3 s by
    # default) + withdraw and Cease (the stop budget's BGP part) + a margin of 2 s at least.
    bgp = STOP_BUDGET.bgp
    assert 3 + bgp + 2 <= TERMINATION_GRACE_SECONDS


@pytest.mark.parametrize(
    ("extra", "grace"),
    [
        ([], 10),  # default drain 3 s + 3 s after it + 2 s = 8: the least we write, 10
        (["--bgpGracefulShutdownSeconds", "0"], 10),
        (["--bgpGracefulShutdownSeconds", "5"], 10),  # 5 + 3 + 2
        (["--bgpGracefulShutdownSeconds", "5.5"], 11),  # one above: rounded up
        (["--bgpGracefulShutdownSeconds", "25"], 30),
    ],
)
@pytest.mark.parametrize("kind", ["pod", "daemonset"])
def test_termination_grace_fits_the_stop(kind: str, extra: list[str], grace: int) -> None:
    """vipgate's worst-case stop (drain + the stop budget after it) fits before the kubelet's
    SIGKILL."""
    _, obj = make(kind, minimal() + extra)
    assert pod_spec_of(obj)["terminationGracePeriodSeconds"] == grace
    drain = float(extra[1]) if extra else 3.0
    assert grace >= drain + STOP_BUDGET.after_drain


def test_image_flag() -> None:
    _, obj = make("daemonset", minimal(), image="registry.example/vg:dev")
    assert container_of(obj)["image"] == "registry.example/vg:dev"


def test_daemonset_targets_control_plane_and_tolerates_taints_by_default() -> None:
    _, obj = make("daemonset", minimal())
    assert obj["apiVersion"] == "apps/v1"
    assert obj["kind"] == "DaemonSet"
    assert obj["metadata"]["namespace"] == "kube-system"
    sel = obj["spec"]["selector"]["matchLabels"]
    assert sel.items() <= obj["spec"]["template"]["metadata"]["labels"].items()
    spec = pod_spec_of(obj)
    assert spec["hostNetwork"] is True
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    exprs = [e for t in terms for e in t["matchExpressions"]]
    assert {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"} in exprs
    tolerations = spec["tolerations"]
    for key in ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"):
        assert {"key": key, "operator": "Exists", "effect": "NoSchedule"} in tolerations
    # Same container as the pod.
    _, pod = make("pod", minimal())
    assert container_of(obj) == container_of(pod)


@pytest.mark.parametrize(("taint", "expected"), [("false", False), ("0", False), ("true", True)])
def test_daemonset_taint_flag(taint: str, expected: bool) -> None:
    _, obj = make("daemonset", minimal(), taint=taint)
    assert ("tolerations" in pod_spec_of(obj)) is expected


def test_bad_taint_and_kind_are_config_errors() -> None:
    flags = cli_flags(*minimal())
    config = load_config(flags)
    with pytest.raises(ConfigError, match="--taint='maybe'"):
        render("daemonset", config, flags, taint="maybe")
    with pytest.raises(ConfigError, match="deployment"):
        render("deployment", config, flags)


# --------------------------------------------------------------------------------------------
# The env gives the same configuration as the flags
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pod", "daemonset"])
@pytest.mark.parametrize(
    "variant",
    ["minimal", "full", "no-metrics", "ipv6", "legacy-vip-flag", "false-bools"],
)
def test_env_round_trip_gives_same_config(kind: str, variant: str, ca_file: Path) -> None:
    argv = {
        "minimal": minimal(),
        "full": full(ca_file),
        "no-metrics": [*minimal(), "--prometheusHTTPServer", "", "--interface", ""],
        "ipv6": [
            "--address",
            "2001:db8:100::100",
            "--bgp",
            "--bgppeers",
            "[2001:db8:0:1::1]:65001::false",
            "--bgpRouterID",
            "192.0.2.11",
        ],
        "legacy-vip-flag": ["--vip", "203.0.113.100", "--bgp", "--peerAddress", "192.0.2.1"],
        "false-bools": [*minimal(), "--controlplane=false", "--multihop", "F", "--services", "0"],
    }[variant]
    flags = cli_flags(*argv)
    expected = load({}, effective_flags(flags))
    _, obj = make(kind, argv)
    got = config_from_manifest(obj)
    assert got == expected
    if variant == "no-metrics":
        assert expected.prometheus_listen is None
        assert container_of(obj)["args"] == ["manager", "--prometheusHTTPServer="]
        assert "vip_interface" not in {e["name"] for e in container_of(obj)["env"]}


def test_round_trip_is_not_vacuous() -> None:
    # Dropping an env entry changes the configuration: the comparison sees it.
    _, obj = make("pod", [*minimal(), "--localAS", "65010"])
    c = container_of(obj)
    c["env"] = [e for e in c["env"] if e["name"] != "bgp_as"]
    assert config_from_manifest(obj) != load(
        {}, effective_flags(cli_flags(*minimal(), "--localAS", "65010"))
    )


# --------------------------------------------------------------------------------------------
# YAML-special values stay strings
# --------------------------------------------------------------------------------------------

SPECIAL = [
    "true",
    "false",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "Y",
    "null",
    "~",
    "",
    "0123",
    "1e3",
    "0x1F",
    "0o17",
    "1_000",
    "12:30",
    ":2112",
    "=",
    ".inf",
    "-.nan",
    "2001-12-14",
    "# not a comment",
    "a: b",
    "- item",
    "{x}",
    "[x]",
    "*alias",
    "&anchor",
    "!tag",
    "'single'",
    '"double"',
    "back\\slash",
    "trailing ",
    "multi\nline",
]


@pytest.mark.parametrize("value", [v for v in SPECIAL if v and v.isprintable()])
def test_yaml_special_values_stay_strings(value: str) -> None:
    # bgp_peerpass is free text: any of these is a valid password (a control character is not:
    # test_control_character_password_is_refused).
    argv = [*minimal(), "--peerAddress", "192.0.2.2", f"--peerPass={value}"]
    text, obj = make("pod", argv)
    env = {e["name"]: e["value"] for e in container_of(obj)["env"]}
    assert env["bgp_peerpass"] == value
    assert type(env["bgp_peerpass"]) is str
    # Quoted in the text too, so YAML 1.1 readers that take y/n as booleans (go-yaml v2, which
    # kubectl uses) read a string as well.
    assert all(
        line.lstrip().startswith('value: "')
        for line in text.splitlines()
        if line.lstrip().startswith("value:")
    )
    assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    # And the manager reads back the same password.
    assert config_from_manifest(obj) == load({}, effective_flags(cli_flags(*argv)))


def test_special_prometheus_and_numeric_values() -> None:
    argv = [*minimal(), "--prometheusHTTPServer", ":2112", "--localAS", "0123", "--vipSubnet", "32"]
    _, obj = make("pod", argv)
    env = {e["name"]: e["value"] for e in container_of(obj)["env"]}
    assert env["prometheus_server"] == ":2112"
    assert env["bgp_as"] == "0123"
    assert env["vip_subnet"] == "32"
    assert env["bgp_enable"] == "true"


# --------------------------------------------------------------------------------------------
# CA volume, no kubeconfig
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pod", "daemonset"])
def test_ca_volume_exactly_when_ca_path_set(kind: str, ca_file: Path) -> None:
    health = ["--controlPlaneHealthCheckAddress", "https://192.0.2.11:6443/livez"]
    _, without = make(kind, [*minimal(), *health])
    assert "volumes" not in pod_spec_of(without)
    assert "volumeMounts" not in container_of(without)

    _, obj = make(kind, [*minimal(), *health, "--controlPlaneHealthCheckCAPath", str(ca_file)])
    assert pod_spec_of(obj)["volumes"] == [
        {"name": "health-ca", "hostPath": {"path": str(ca_file), "type": "File"}}
    ]
    assert container_of(obj)["volumeMounts"] == [
        {"name": "health-ca", "mountPath": str(ca_file), "readOnly": True}
    ]


def test_no_kubeconfig_anywhere(ca_file: Path) -> None:
    for kind in ("pod", "daemonset"):
        text, obj = make(kind, full(ca_file))
        assert "kubeconfig" not in text
        assert "admin.conf" not in text
        assert [v["name"] for v in pod_spec_of(obj).get("volumes", [])] == ["health-ca"]
        assert "serviceAccountName" not in pod_spec_of(obj)


def test_ca_missing_here_still_makes_manifest_with_warning(tmp_path: Path) -> None:
    # Manifests are made before `kubeadm init`: the CA does not exist yet.
    ca = "/etc/kubernetes/pki/vipgate-test-absent-ca.crt"
    flags = cli_flags(
        *minimal(),
        "--controlPlaneHealthCheckAddress",
        "https://192.0.2.11:6443/livez",
        "--controlPlaneHealthCheckCAPath",
        ca,
    )
    config = load_config(flags)
    obj = yaml.safe_load(render("pod", config, flags))
    assert pod_spec_of(obj)["volumes"][0]["hostPath"]["path"] == ca
    assert any("does not exist on this machine" in w for w in warnings("pod", config, flags, None))


def test_relative_or_bad_ca_path_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="absolute"):
        load_config(cli_flags(*minimal(), "--controlPlaneHealthCheckCAPath", "pki/ca.crt"))
    bad = tmp_path / "notpem.crt"
    bad.write_text("hello\n")
    with pytest.raises(ConfigError, match="not PEM"):
        load_config(cli_flags(*minimal(), "--controlPlaneHealthCheckCAPath", str(bad)))


# --------------------------------------------------------------------------------------------
# Warnings and the command line
# --------------------------------------------------------------------------------------------


def test_password_warning_without_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = main(
        [
            "manifest",
            "daemonset",
            *minimal(),
            "--peerAddress",
            "192.0.2.2",
            "--peerPass",
            "Zq9-secret-XY",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0
    assert "Zq9-secret-XY" in out  # it is the user's manifest
    assert "Zq9-secret-XY" not in err
    assert "bgp_peerpass" in err
    assert "secretKeyRef" in err


def test_no_password_warning_without_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest", "pod", *minimal()]) == 0
    _, err = capsys.readouterr()
    assert "password" not in err
    # Passwordless peers in bgp_peers are no secret either.
    assert (
        main(
            [
                "manifest",
                "pod",
                "--vip",
                "203.0.113.100",
                "--bgp",
                "--bgppeers",
                "192.0.2.1:65001:pw:false",
            ]
        )
        == 0
    )
    _, err = capsys.readouterr()
    assert "plain text (bgp_peers)" in err
    assert "pw" not in err.replace("password", "")


def test_localhost_health_url_warns_about_kubeadm_certificate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = ["--controlPlaneHealthCheckAddress", "https://localhost:6443/livez"]
    assert main(["manifest", "pod", *minimal(), *url]) == 0
    _, err = capsys.readouterr()
    assert "--controlPlaneHealthCheckServerName kubernetes" in err
    assert (
        main(
            [
                "manifest",
                "pod",
                *minimal(),
                *url,
                "--controlPlaneHealthCheckServerName",
                "kubernetes",
            ]
        )
        == 0
    )
    _, err = capsys.readouterr()
    assert "ServerName" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["manifest", "pod", "--vip", "not-an-ip"],
        ["manifest", "pod", "--bgp", "--bgppeers", "192.0.2.1:65001::false"],  # no VIP
        ["manifest", "pod", *minimal(), "--bgp=false"],  # vipgate is BGP mode only
        ["manifest", "pod", "--bgp"],  # BGP without peers
        ["manifest", "daemonset", *minimal(), "--taint", "perhaps"],
        ["manifest", "pod", *minimal(), "--controlPlaneHealthCheckCAPath", "ca.crt"],
        ["manifest", "pod", *minimal(), "--controlPlaneHealthCheckPeriodSeconds", "0"],
    ],
)
def test_cli_bad_input_exits_2_without_output(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "invalid configuration" in err


def test_manifest_ignores_shell_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("bgp_peerpass", "from-shell")
    monkeypatch.setenv("address", "192.0.2.99")
    assert main(["manifest", "pod", *minimal()]) == 0
    out, _ = capsys.readouterr()
    assert "from-shell" not in out
    assert "192.0.2.99" not in out


def test_help_names_the_default_image(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["manifest", "--help"])
    out, _ = capsys.readouterr()
    assert DEFAULT_IMAGE in out
    assert "--taint" in out


def test_mode_settings_are_added_when_not_given() -> None:
    # Without --bgp/--controlplane the manager would refuse to start: the manifest adds them.
    argv = ["--vip", "203.0.113.100", "--bgppeers", "192.0.2.1:65001::false"]
    _, obj = make("pod", argv)
    env = {e["name"]: e["value"] for e in container_of(obj)["env"]}
    assert env["bgp_enable"] == "true"
    assert env["cp_enable"] == "true"
    assert config_from_manifest(obj).bgp_enable is True
    # Given explicitly, they are kept as given.
    _, obj = make("pod", [*argv, "--controlplane=false"])
    env = {e["name"]: e["value"] for e in container_of(obj)["env"]}
    assert env["cp_enable"] == "false"


# --------------------------------------------------------------------------------------------
# Client certificate for the health check
# --------------------------------------------------------------------------------------------

CERT_FLAG = "--controlPlaneHealthCheckClientCertPath"
KEY_FLAG = "--controlPlaneHealthCheckClientKeyPath"


@pytest.fixture(scope="module")
def client_pair(lab_pki: Pki) -> tuple[Path, Path]:
    return make_client_cert(lab_pki, "manifest-client")


@pytest.mark.parametrize("kind", ["pod", "daemonset"])
def test_client_certificate_and_key_are_mounted_read_only(
    kind: str, ca_file: Path, client_pair: tuple[Path, Path]
) -> None:
    cert, key = client_pair
    argv = [*full(ca_file), CERT_FLAG, str(cert), KEY_FLAG, str(key)]
    _, obj = make(kind, argv)
    assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION
    # the client certificate's directory (one: the key is beside it), so renewals are seen
    assert cert.parent == key.parent
    assert pod_spec_of(obj)["volumes"] == [
        {"name": "health-ca", "hostPath": {"path": str(ca_file), "type": "File"}},
        {"name": "health-client-cert", "hostPath": {"path": str(cert.parent), "type": "Directory"}},
    ]
    assert container_of(obj)["volumeMounts"] == [
        {"name": "health-ca", "mountPath": str(ca_file), "readOnly": True},
        {"name": "health-client-cert", "mountPath": str(cert.parent), "readOnly": True},
    ]
    c = config_from_manifest(obj)  # what the manager loads in the container
    assert (c.health_client_cert_path, c.health_client_key_path) == (str(cert), str(key))


def test_one_file_holding_both_is_mounted_once() -> None:
    kubelet = "/var/lib/kubelet/pki/kubelet-client-current.pem"  # absent here: a warning
    _, obj = make("pod", [*minimal(), CERT_FLAG, kubelet, KEY_FLAG, kubelet])
    pki = "/var/lib/kubelet/pki"  # the directory: the kubelet moves the symlink on rotation
    assert pod_spec_of(obj)["volumes"] == [
        {"name": "health-client-cert", "hostPath": {"path": pki, "type": "Directory"}}
    ]
    assert [m["mountPath"] for m in container_of(obj)["volumeMounts"]] == [pki]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([CERT_FLAG, "/etc/x/client.crt"], f"without {KEY_FLAG}"),  # absent files: still a pair
        ([KEY_FLAG, "/etc/x/client.key"], f"without {CERT_FLAG}"),
        ([CERT_FLAG, "client.crt", KEY_FLAG, "/etc/x/client.key"], "not an absolute path"),
        ([CERT_FLAG, "/etc/x/client.crt", KEY_FLAG, "client.key"], "not an absolute path"),
    ],
)
def test_client_certificate_flags_are_checked(argv: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config(cli_flags(*minimal(), *argv))


@pytest.mark.parametrize("kind", ["pod", "daemonset"])
def test_a_dual_stack_vip_goes_into_the_manifest_as_given(kind: str) -> None:
    """docs/configuration.md, "Dual stack": the list and both lengths reach the container."""
    argv = [
        *minimal(),
        "--address",
        "203.0.113.100, 2001:db8:100::100",
        "--vipSubnet",
        "32,128",
        "--bgppeers",
        "192.0.2.1:65001::false,[2001:db8:0:1::1]:65001::false",
    ]
    _, obj = make(kind, argv)
    env = {e["name"]: e["value"] for e in container_of(obj)["env"]}
    assert env["address"] == "203.0.113.100, 2001:db8:100::100"
    assert env["vip_subnet"] == "32,128"
    got = config_from_manifest(obj)
    assert [str(p) for p in got.prefixes] == ["203.0.113.100/32", "2001:db8:100::100/128"]
