"""Every environment name accounted for: read, a kube-vip setting vipgate does not implement
(one warning saying what vipgate does instead), or unknown (one warning with the closest name).
Values are never printed; uppercase names are not looked at."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vipgate.config import SETTINGS
from vipgate.config.names import KNOWN, READ, name_warning, name_warnings
from vipgate.config.table import NOT_IMPLEMENTED

# Every environment name of kube-vip's pkg/kubevip/config_envvar.go (commit bee5cfe4, the
# constants' values, in file order).
KUBE_VIP_ENV = [
    "vip_arp",
    "vip_arpRate",
    "vip_preserve_on_leadership_loss",
    "vip_leaderelection",
    "vip_leasename",
    "vip_leaseduration",
    "vip_renewdeadline",
    "vip_retryperiod",
    "vip_leaseannotations",
    "vip_loglevel",
    "instance_name",
    "vip_interface",
    "vip_loseleadership",
    "vip_loseleadership_timeout_seconds",
    "vip_interfaceloglobal",
    "vip_servicesinterface",
    "vip_allow_interface_not_up",
    "vip_subnet",
    "egress_podcidr",
    "egress_servicecidr",
    "egress_withnftables",
    "per_service_election_on_demand",
    "egress_enableinternalsnat",
    "vip_address",
    "address",
    "port",
    "annotation",
    "vip_ddns",
    "vip_nodename",
    "vip_singlenode",
    "vip_startleader",
    "bgp_enable",
    "bgp_attach_ip_to_interface",
    "bgp_routerid",
    "bgp_routerinterface",
    "bgp_as",
    "bgp_peeraddress",
    "bgp_peers",
    "bgp_peeras",
    "bgp_peerpass",
    "bgp_multihop",
    "bgp_sourceif",
    "bgp_sourceip",
    "bgp_hold_time",
    "bgp_keepalive_interval",
    "control_plane_health_check_address",
    "control_plane_health_check_period_seconds",
    "control_plane_health_check_timeout_seconds",
    "control_plane_health_check_failure_threshold",
    "control_plane_health_check_ca_path",
    "zebra_enable",
    "zebra_url",
    "zebra_version",
    "zebra_software_name",
    "mpbgp_nexthop",
    "mpbgp_ipv4",
    "mpbgp_ipv6",
    "vip_wireguard",
    "vip_routingtable",
    "vip_routingtableid",
    "vip_routingtabletype",
    "vip_routingprotocol",
    "vip_cleanroutingtable",
    "vip_skipdad",
    "cp_namespace",
    "cp_enable",
    "cp_detect",
    "kubernetes_addr",
    "svc_enable",
    "svc_namespace",
    "svc_election",
    "svc_leasename",
    "lb_class_only",
    "lb_class_name",
    "lb_class_legacy_handling",
    "lb_enable",
    "lb_port",
    "lb_fwdmethod",
    "enable_service_security",
    "enable_node_labeling",
    "prometheus_server",
    "dns_mode",
    "dhcp_mode",
    "dhcp_backoff_attempts",
    "disable_service_updates",
    "enable_endpoints",
    "mirror_dest_interface",
    "iptables_backend",
    "backend_health_check_interval",
    "health_check_port",
    "enable_upnp",
    "egress_clean",
    "config_file",
    "debounce_time",
]

SECRET = "Zq7Secret-value"


def test_the_kube_vip_list_is_complete() -> None:
    assert len(KUBE_VIP_ENV) == len(set(KUBE_VIP_ENV)) == 94


@pytest.mark.parametrize("name", KUBE_VIP_ENV)
def test_every_kube_vip_name_is_read_or_not_implemented(name: str) -> None:
    assert (name in READ) != (name in NOT_IMPLEMENTED), name
    w = name_warning(name)
    if name in READ:
        assert w is None
    else:
        assert w is not None and "not implement" in w and NOT_IMPLEMENTED[name] in w
        assert "not a setting" not in w


def test_every_name_vipgate_reads_gets_no_warning() -> None:
    env = {name: SECRET for s in SETTINGS for name in s.env}
    assert name_warnings(env) == []


def test_not_implemented_names_are_not_read() -> None:
    assert not READ & set(NOT_IMPLEMENTED)


def test_mistyped_names_get_the_closest_known_name() -> None:
    w = name_warning("vip_routingtableprotocol")
    assert w is not None and "not a setting of vipgate or kube-vip" in w
    assert w.endswith("did you mean vip_routingprotocol?")
    w = name_warning("control_plane_health_check_periodseconds")
    assert w is not None
    assert w.endswith("did you mean control_plane_health_check_period_seconds?")
    w = name_warning("bgp_peer")
    assert w is not None and w.endswith("did you mean bgp_peers?")
    # names are case-sensitive (as in kube-vip): a mixed-case name is not the setting
    w = name_warning("Bgp_Peers")
    assert w is not None and w.endswith("did you mean bgp_peers?")


@pytest.mark.parametrize(
    "name",
    [
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_PORT_443_TCP_ADDR",
        "VIPGATE_SERVICE_PORT",
        "VIP_ADDRESS",
        "BGP_PEERS",
        "PATH",
        "HOME",
    ],
)
def test_uppercase_names_are_not_looked_at(name: str) -> None:
    assert name_warning(name) is None


@pytest.mark.parametrize("name", ["http_proxy", "no_proxy", "lc_all", "term"])
def test_other_lowercase_names_are_not_looked_at(name: str) -> None:
    assert name_warning(name) is None


def test_an_empty_variable_is_unset() -> None:
    assert name_warnings({"vip_arp": "", "vip_routingtableprotocol": ""}) == []


def test_one_warning_per_name_in_name_order() -> None:
    env = {"vip_wireguard": "1", "vip_arp": "true", "bgp_peers": "x", "PATH": "/bin"}
    got = name_warnings(env)
    assert len(got) == 2
    assert got[0].startswith("environment variable vip_arp ")
    assert got[1].startswith("environment variable vip_wireguard ")
    assert "no WireGuard mode" in got[1]


def test_known_names_are_the_table_and_the_not_implemented_table() -> None:
    assert set(KNOWN) == READ | set(NOT_IMPLEMENTED)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vipgate", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


ENV = {
    "vip_routingtableprotocol": SECRET,
    "control_plane_health_check_periodseconds": SECRET,
    "vip_arp": SECRET,
    "KUBERNETES_SERVICE_HOST": SECRET,
    "bgp_peers": "192.0.2.1:65001::false",
    "bgp_enable": "true",
}


def test_vipgate_config_warns_once_per_name_without_values() -> None:
    r = _run(["config"], ENV)
    assert r.returncode == 2  # no VIP: the manager would not start
    assert SECRET not in r.stdout + r.stderr
    lines = r.stderr.splitlines()
    for name in ("vip_routingtableprotocol", "control_plane_health_check_periodseconds"):
        assert sum(f"environment variable {name} is not a setting" in x for x in lines) == 1
    assert sum("environment variable vip_arp is a kube-vip setting" in x for x in lines) == 1
    assert "KUBERNETES_SERVICE_HOST" not in r.stderr


def test_manager_warns_at_start_before_refusing() -> None:
    r = _run(["manager"], ENV)  # no VIP: exit 2 before touching the host
    assert r.returncode == 2
    assert SECRET not in r.stdout + r.stderr
    assert "did you mean vip_routingprotocol?" in r.stderr
    assert "did you mean control_plane_health_check_period_seconds?" in r.stderr


def test_warnings_come_before_a_refused_value() -> None:
    r = _run(["config"], {**ENV, "bgp_as": "x"})
    assert r.returncode == 2
    err = r.stderr
    assert err.index("did you mean vip_routingprotocol?") < err.index("invalid configuration")


def test_vipgate_config_says_the_health_gate_is_off_first() -> None:
    # A kube-vip manifest without the health check still starts (exit 0), but the warning that
    # it announces unconditionally comes before the names it ignores, and before the table.
    env = {**ENV, "address": "203.0.113.100", "control_plane_health_check_addres": SECRET}
    r = _run(["config"], {**env, "vip_leaderelection": "true"})
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith("warning: health gate OFF: control_plane_health_check_address")
    assert "control_plane_health_check_addres is set: a typo of it?" in lines[0]
    assert "leader election" in lines[1]
    assert all(x.startswith("warning: environment variable ") for x in lines[2:])
    assert any("did you mean control_plane_health_check_address?" in x for x in lines)


def test_manifest_reads_no_environment() -> None:
    r = _run(
        ["manifest", "pod", "--address", "203.0.113.100", "--bgppeers", "192.0.2.1:65001"], ENV
    )
    assert r.returncode == 0, r.stderr
    assert "environment variable" not in r.stderr


def test_unknown_flags_stay_errors() -> None:
    r = _run(["config", "--vipRoutingTableProtocol", SECRET], {})
    assert r.returncode == 2 and SECRET not in r.stderr


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["config", "--controlPlaneHealthCheckAddres", SECRET], "--controlPlaneHealthCheckAddress"),
        (["config", "--peerpass", SECRET], "--peerPass"),  # flags are case-sensitive
        (["manager", f"--bgppeer={SECRET}"], "--bgppeers"),
        (["check", "--vipRoutingTableProtocol", SECRET], "--routingProtocol"),
        (["manifest", "pod", "--imag", SECRET], "--image"),
    ],
)
def test_a_mistyped_flag_gets_the_closest_flag_and_the_command_usage(
    argv: list[str], hint: str
) -> None:
    r = _run(argv, {})
    assert r.returncode == 2 and SECRET not in r.stderr, r.stderr
    command = argv[0]
    assert r.stderr.startswith(f"usage: vipgate {command} "), r.stderr
    flag = argv[-2] if argv[-2].startswith("--") else argv[-1].split("=", 1)[0]
    assert f"vipgate {command}: error: unrecognized arguments: {flag}" in r.stderr, r.stderr
    assert f"{flag}: did you mean {hint}?" in r.stderr, r.stderr


def test_no_suggestion_for_a_flag_like_none() -> None:
    r = _run(["config", "--zzzzzz", SECRET], {})
    assert r.returncode == 2 and "did you mean" not in r.stderr and SECRET not in r.stderr
    assert "unrecognized arguments: --zzzzzz and 1 value(s) (not shown)" in r.stderr
