"""Configuration: kube-vip names and defaults, env over flags, and the bad-input table."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from lab.pki import Pki, make_client_cert
from vipgate.cli import main
from vipgate.config import SETTINGS, Config, ConfigError, Peer, Source, load, parse_bool
from vipgate.manager import build_parts
from vipgate.vip import stated_facts

ROOT = Path(__file__).resolve().parents[2]

# PEM armour around bytes that are no certificate: "PEM with a certificate that does not load".
CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBfTCCASOgAwIBAgIUZ1r0KzF0bQ7dXq6H0xk2vJr2w8cwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKa3ViZXJuZXRlczAeFw0yNjAxMDEwMDAwMDBaFw0zNjAxMDEw
MDAwMDBaMBUxEzARBgNVBAMMCmt1YmVybmV0ZXMwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAT4n3Qe5j0l7o5p0P8sX0mZf0i0bJjv6m5Qm0p5P3a4s8e8T1n2G1wq
Kq1yY8m3wQ1d2b7o9c1bW3pT6l2k5q0ro1MwUTAdBgNVHQ4EFgQU1N3bJ6Qx9w0l
-----END CERTIFICATE-----
"""


REFERENCE_ENV = {
    # The reference kube-vip manifest's env, rewritten to documentation addresses.
    "vip_arp": "false",
    "port": "6443",
    "vip_interface": "lo",
    "vip_cidr": "32",
    "cp_enable": "true",
    "cp_namespace": "kube-system",
    "vip_ddns": "false",
    "svc_enable": "false",
    "bgp_enable": "true",
    "bgp_routerid": "",
    "bgp_as": "65000",
    "bgp_peeraddress": "",
    "bgp_peerpass": "",
    "bgp_peeras": "65000",
    "bgp_peers": "192.0.2.1:65001::false",
    "vip_address": "203.0.113.100",
    "control_plane_health_check_address": "https://localhost:6443/livez",
}


def test_reference_manifest_env(ca_file: Path) -> None:
    env = dict(REFERENCE_ENV, control_plane_health_check_ca_path=str(ca_file))
    got = load(env, {})
    expected = Config(
        addresses=(ipaddress.IPv4Address("203.0.113.100"),),
        vip_subnet=(),
        vip_interface="lo",
        cp_enable=True,
        bgp_enable=True,
        bgp_as=65000,
        bgp_routerid=None,
        bgp_routerinterface="",
        peers=(Peer(ipaddress.IPv4Address("192.0.2.1"), 65001, "", False, 179),),
        bgp_sourceip=None,
        bgp_sourceif="",
        bgp_hold_time=30,
        bgp_keepalive_interval=10,
        health_url="https://localhost:6443/livez",
        health_period=5.0,
        health_timeout=3.0,
        health_threshold=3,
        health_ca_path=str(ca_file),
        health_server_name="",
        leader_election=False,
        lb_enable=False,
        svc_enable=False,
        prometheus_server=":2112",
        log_level="info",
    )
    assert got == expected
    assert got.prefixes == (ipaddress.ip_network("203.0.113.100/32"),)
    assert got.keepalive == 10
    assert got.router_id_source.explicit is None and got.router_id_source.interface is None
    assert got.sources["address"] is Source.ENV
    assert got.sources["control_plane_health_check_period_seconds"] is Source.DEFAULT
    assert got.warnings == ()
    assert got.prometheus_listen == ("", 2112)


def test_env_wins_over_flags() -> None:
    got = load(
        {"bgp_as": "65010", "bgp_hold_time": ""},
        {"bgp_as": "65020", "bgp_hold_time": "9", "bgp_keepalive_interval": "3"},
    )
    assert got.bgp_as == 65010 and got.sources["bgp_as"] is Source.ENV
    # An empty env var counts as unset (as in kube-vip): the flag applies.
    assert got.bgp_hold_time == 9 and got.sources["bgp_hold_time"] is Source.FLAG
    assert got.keepalive == 3


def test_peers_format() -> None:
    got = load(
        {
            "bgp_peers": "192.0.2.1:65001::false,[2001:db8:0:1::1]:65002:pw:true:1179,"
            "198.51.100.1:4200000001",
            "bgp_peeraddress": "203.0.113.1",
            "bgp_peeras": "65003",
            "bgp_peerpass": "s3cret",
            "bgp_multihop": "T",
        }
    )
    assert got.peers == (
        Peer(ipaddress.ip_address("192.0.2.1"), 65001, "", False, 179),
        Peer(ipaddress.ip_address("2001:db8:0:1::1"), 65002, "pw", True, 1179),
        Peer(ipaddress.ip_address("198.51.100.1"), 4200000001, "", False, 179),
        Peer(ipaddress.ip_address("203.0.113.1"), 65003, "s3cret", True, 179),
    )
    assert "s3cret" not in repr(got) and "s3cret" not in str(got.peers[3])


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_bool_true(text: str) -> None:
    assert parse_bool(text) is True
    assert load({"cp_enable": text}).cp_enable is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_bool_false(text: str) -> None:
    assert parse_bool(text) is False
    assert load({"cp_enable": text}).cp_enable is False


def test_derived_values() -> None:
    v6 = load({"address": "2001:db8:100::100", "bgp_hold_time": "0"})
    assert v6.prefixes == (ipaddress.ip_network("2001:db8:100::100/128"),)
    assert v6.keepalive == 0
    assert load({"bgp_keepalive_interval": "0"}).keepalive == 10  # hold/3
    assert load({"bgp_routerinterface": "eth0"}).router_id_source.interface == "eth0"
    both = load({"bgp_routerid": "192.0.2.11", "bgp_routerinterface": "eth0"})
    assert both.router_id_source.explicit == ipaddress.IPv4Address("192.0.2.11")


def test_warnings() -> None:
    url = {"control_plane_health_check_address": "https://localhost:6443/livez"}
    # vipgate has no leader election, IPVS or Services mode: every node announces, gated by the
    # health check (an earlier warning said the health check was ignored: it never was).
    w = load(dict(url, vip_leaderelection="true")).warnings
    assert len(w) == 1 and "vip_leaderelection" in w[0] and "does not implement" in w[0]
    assert "every node announces" in w[0]
    w = load(dict(url, lb_enable="true")).warnings
    assert len(w) == 1 and "lb_enable" in w[0]
    assert len(load(dict(url, svc_enable="true")).warnings) == 1
    w = load({"address": "203.0.113.100"}).warnings
    assert len(w) == 1 and "announced unconditionally" in w[0]
    w = load(
        dict(
            url,
            control_plane_health_check_period_seconds="2",
            control_plane_health_check_timeout_seconds="2",
        )
    ).warnings
    assert len(w) == 1 and "back to back" in w[0]
    assert load({}).warnings == ()  # no VIP, nothing to warn about


def test_health_gate_off_is_the_first_warning() -> None:
    w = load({"address": "203.0.113.100", "vip_leaderelection": "true"}).warnings
    assert len(w) == 2 and w[0].startswith("health gate OFF: ") and "leader election" in w[1]
    assert "(set it to https://localhost:6443/livez" in w[0] and "a typo" not in w[0]
    # A mistyped name is named (never its value); a name vipgate reads is not a typo.
    env = {
        "address": "203.0.113.100",
        "control_plane_health_check_addres": "https://s3cret.example/livez",
        "control_plane_health_check_period_seconds": "5",
    }
    w = load(env).warnings
    assert "(control_plane_health_check_addres is set: a typo of it?)" in w[0]
    assert "s3cret" not in w[0] and "period_seconds" not in w[0]
    assert "a typo" not in load({**env, "control_plane_health_check_addres": ""}).warnings[0]


@pytest.fixture(scope="module")
def bad_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    d = tmp_path_factory.mktemp("bad")
    (d / "notpem.crt").write_bytes(b"\x30\x82\x01\x0a not a pem file")
    (d / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    (d / "broken.crt").write_text(CA_PEM)
    # A path that exists but cannot be read, even by root (tests run as root): a unix socket.
    unreadable = d / "unreadable.crt"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(unreadable))
    yield {
        "missing": str(d / "nope.crt"),
        "dir": str(d),
        "notpem": str(d / "notpem.crt"),
        "nocert": str(d / "key.pem"),
        "broken": str(d / "broken.crt"),
        "unreadable": str(unreadable),
    }
    sock.close()


HC = "control_plane_health_check_"
# (env, the variable the error must name, a fragment of what is accepted)
BAD: list[tuple[dict[str, str], str, str]] = [
    ({HC + "period_seconds": "0"}, HC + "period_seconds", "positive number"),
    ({HC + "period_seconds": "-1"}, HC + "period_seconds", "positive number"),
    ({HC + "period_seconds": "5s"}, HC + "period_seconds", "without unit"),
    ({HC + "period_seconds": "abc"}, HC + "period_seconds", "positive number"),
    ({HC + "timeout_seconds": "0"}, HC + "timeout_seconds", "positive number"),
    ({HC + "timeout_seconds": "nan"}, HC + "timeout_seconds", "positive number"),
    ({HC + "failure_threshold": "0"}, HC + "failure_threshold", "1-1000"),
    ({HC + "failure_threshold": "2.5"}, HC + "failure_threshold", "1-1000"),
    ({HC + "address": "ftp://localhost:6443/livez"}, HC + "address", "http:// or https://"),
    ({HC + "address": "https:///livez"}, HC + "address", "with a host"),
    ({HC + "address": "https://local host:6443/livez"}, HC + "address", "whitespace"),
    ({HC + "address": "localhost:6443/livez"}, HC + "address", "http:// or https://"),
    ({HC + "address": "https://localhost:99999/livez"}, HC + "address", "URL"),
    ({HC + "ca_path": "@missing"}, HC + "ca_path", "no such file"),
    ({HC + "ca_path": "@dir"}, HC + "ca_path", "is a directory"),
    ({HC + "ca_path": "@notpem"}, HC + "ca_path", "not PEM"),
    ({HC + "ca_path": "@nocert"}, HC + "ca_path", "without a certificate"),
    ({HC + "ca_path": "@broken"}, HC + "ca_path", "does not load"),
    ({HC + "ca_path": "@unreadable"}, HC + "ca_path", "cannot read"),
    ({HC + "server_name": "kube rnetes"}, HC + "server_name", "host name"),
    ({"bgp_as": "0"}, "bgp_as", "1-4294967295"),
    ({"bgp_as": "4294967296"}, "bgp_as", "1-4294967295"),
    ({"bgp_as": "AS65000"}, "bgp_as", "1-4294967295"),
    ({"bgp_peers": "192.0.2.1"}, "bgp_peers", "missing AS"),
    ({"bgp_peers": "192.0.2.1::pw:false"}, "bgp_peers", "missing AS"),
    ({"bgp_peers": "192.0.2.1:sixtyfive:pw:false"}, "bgp_peers", "not a number"),
    ({"bgp_peers": "2001:db8::1:65001::false"}, "bgp_peers", "brackets"),
    ({"bgp_peers": "[2001:db8::1:65001::false"}, "bgp_peers", "closing ]"),
    ({"bgp_peers": "192.0.2.300:65001::false"}, "bgp_peers", "not an IP address"),
    ({"bgp_peers": "router.example:65001::false"}, "bgp_peers", "not an IP address"),
    ({"bgp_peers": "192.0.2.1:65001::false:0"}, "bgp_peers", "1-65535"),
    ({"bgp_peers": "192.0.2.1:65001::false:65536"}, "bgp_peers", "1-65535"),
    ({"bgp_peers": "192.0.2.1:65001::maybe"}, "bgp_peers", "not a boolean"),
    ({"bgp_peers": "192.0.2.1:65001::false:179::false;1;1;1:x"}, "bgp_peers", "too many"),
    ({"bgp_peeraddress": "192.0.2.1", "bgp_peeras": "x"}, "bgp_peeras", "1-4294967295"),
    ({"bgp_multihop": "yes"}, "bgp_multihop", "not a boolean"),
    ({"bgp_sourceip": "192.0.2.11", "bgp_sourceif": "eth0"}, "bgp_sourceif", "not both"),
    ({"bgp_sourceip": "node1"}, "bgp_sourceip", "IP address"),
    ({"address": "vip.example"}, "address", "IPv4 or IPv6"),
    ({"vip_address": "203.0.113.300"}, "vip_address", "IPv4 or IPv6"),
    ({"address": "203.0.113.100", "vip_subnet": "33"}, "vip_subnet", "0-32"),
    ({"address": "2001:db8:100::100", "vip_subnet": "129"}, "vip_subnet", "0-128"),
    ({"vip_subnet": "/32"}, "vip_subnet", "0-"),
    ({"bgp_routerid": "0.0.0.0"}, "bgp_routerid", "non-zero IPv4"),
    ({"bgp_routerid": "2001:db8::1"}, "bgp_routerid", "non-zero IPv4"),
    ({"bgp_hold_time": "1"}, "bgp_hold_time", "0 or 3-65535"),
    ({"bgp_hold_time": "2"}, "bgp_hold_time", "0 or 3-65535"),
    ({"bgp_hold_time": "70000"}, "bgp_hold_time", "0 (no keepalives) or 3-65535"),
    ({"bgp_hold_time": "9", "bgp_keepalive_interval": "9"}, "bgp_keepalive_interval", "below"),
    ({"bgp_keepalive_interval": "45"}, "bgp_keepalive_interval", "below"),
    ({"bgp_enable": "true"}, "bgp_enable", "bgp_peers"),
    ({"bgp_enable": "yes"}, "bgp_enable", "not a boolean"),
    ({"cp_enable": "on"}, "cp_enable", "1 t T TRUE"),
    ({"prometheus_server": "2112"}, "prometheus_server", "[host]:port"),
    ({"prometheus_server": ":http"}, "prometheus_server", "[host]:port"),
    ({"prometheus_server": ":0"}, "prometheus_server", "1-65535"),
    ({"prometheus_server": "[::1:2112"}, "prometheus_server", "[host]:port"),
    ({"prometheus_server": "2112"}, "prometheus_server", "prometheus_enable=false"),
    ({"prometheus_enable": "no"}, "prometheus_enable", "1 t T TRUE true True 0 f F"),
    ({"prometheus_enable": "off"}, "prometheus_enable", "not a boolean"),
    ({"vip_loglevel": "loud"}, "vip_loglevel", "debug, info"),
    # fast period and success threshold (vipgate extensions, README configuration table)
    ({HC + "fast_period_seconds": "-0.1"}, HC + "fast_period_seconds", "0 (off)"),
    ({HC + "fast_period_seconds": "5"}, HC + "fast_period_seconds", "below " + HC + "period"),
    ({HC + "fast_period_seconds": "6"}, HC + "fast_period_seconds", "below " + HC + "period"),
    ({HC + "fast_period_seconds": "fast"}, HC + "fast_period_seconds", "0 (off)"),
    (
        {HC + "period_seconds": "1", HC + "fast_period_seconds": "1"},
        HC + "fast_period_seconds",
        "below " + HC + "period_seconds=1",
    ),
    ({HC + "success_threshold": "0"}, HC + "success_threshold", "1-1000"),
    ({HC + "success_threshold": "-1"}, HC + "success_threshold", "1-1000"),
    # readiness read and drain (README configuration table)
    ({HC + "shutdown_address": "readyz"}, HC + "shutdown_address", "http:// or https://"),
    ({HC + "shutdown_period_seconds": "0"}, HC + "shutdown_period_seconds", "positive number"),
    ({"bgp_graceful_shutdown_seconds": "-1"}, "bgp_graceful_shutdown_seconds", "0 (off)"),
    ({"bgp_graceful_shutdown_seconds": "3s"}, "bgp_graceful_shutdown_seconds", "without unit"),
]


@pytest.mark.parametrize(
    ("env", "fast", "rise", "drain"),
    [
        ({}, 0.2, 1, 3.0),  # defaults
        ({HC + "fast_period_seconds": "0"}, 0.0, 1, 3.0),  # off: kube-vip's cadence
        ({HC + "fast_period_seconds": "4.99"}, 4.99, 1, 3.0),  # just below the period
        ({HC + "period_seconds": "0.2"}, 0.0, 1, 3.0),  # default fast >= a short period: off
        ({HC + "success_threshold": "1000"}, 0.2, 1000, 3.0),
        ({"bgp_graceful_shutdown_seconds": "0"}, 0.2, 1, 0.0),
    ],
)
def test_fast_period_success_threshold_and_drain(
    env: dict[str, str], fast: float, rise: int, drain: float
) -> None:
    c = load(env)
    assert (c.health_fast_period, c.health_success_threshold) == (fast, rise)
    assert c.bgp_graceful_shutdown == drain


@pytest.mark.parametrize(
    ("health", "setting", "url"),
    [
        ("https://localhost:6443/livez", "", "https://localhost:6443/readyz"),
        ("https://localhost:6443/livez?verbose", "", "https://localhost:6443/readyz?verbose"),
        ("https://localhost:6443/livez", "off", ""),
        ("https://localhost:6443/livez", "OFF", ""),
        ("https://localhost:6443/healthz", "", ""),  # not a kube-apiserver /livez: off
        (
            "https://localhost:6443/healthz",
            "https://127.0.0.1:6443/readyz",
            "https://127.0.0.1:6443/readyz",
        ),
        ("", "", ""),  # no health check, no readiness read
    ],
)
def test_readiness_url(health: str, setting: str, url: str) -> None:
    env = {HC + "address": health, HC + "shutdown_address": setting}
    assert load(env).readiness_url == url


def test_bad_table_is_large_enough() -> None:
    assert len(BAD) >= 30


@pytest.mark.parametrize(("env", "name", "accepted"), BAD, ids=[str(e) for e, _, _ in BAD])
def test_bad_input(
    env: dict[str, str], name: str, accepted: str, bad_paths: dict[str, str]
) -> None:
    env = {k: bad_paths[v[1:]] if v.startswith("@") else v for k, v in env.items()}
    with pytest.raises(ConfigError) as exc:
        load(env, {})
    msg = str(exc.value)
    assert name in msg, msg
    assert accepted in msg, msg
    assert "\n" not in msg


def test_bad_flag_is_named() -> None:
    with pytest.raises(ConfigError, match=r"--controlPlaneHealthCheckPeriodSeconds='0'"):
        load({}, {HC + "period_seconds": "0"})


@pytest.mark.parametrize(
    "env",
    [
        {"bgp_peers": "192.0.2.1:x:hunter2:false"},
        {"bgp_peers": "192.0.2.1:65001:hunter2:maybe"},
        {"bgp_peers": "[2001:db8::1]:65001:hunter2:false:0"},
        {"bgp_peeraddress": "bad", "bgp_peerpass": "hunter2"},
    ],
)
def test_password_never_in_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load(env, {})
    assert "hunter2" not in str(exc.value)


def test_cli_config_passes_only_what_the_manager_runs() -> None:
    ok = {"address": "203.0.113.100", "bgp_peers": "192.0.2.1:65001::false"}
    assert _run_cli(["config"], {**ok, "bgp_enable": "true"}).returncode == 0
    r = _run_cli(["config"], ok)  # bgp_enable unset: the manager refuses
    assert r.returncode == 2 and "bgp_enable is not true" in r.stderr, r.stderr


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vipgate", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_config_prints_every_setting_with_source() -> None:
    r = _run_cli(
        ["config", "--bgpHoldTimer", "9", "--bgpKeepAliveInterval", "3"],
        {"bgp_peers": "192.0.2.1:65001:hunter2:false", "bgp_enable": "true"},
    )
    # every setting is printed, then exit 2: without a VIP the manager would not start
    assert r.returncode == 2, r.stderr
    assert "vipgate manager would not start: no VIP" in r.stderr
    assert "hunter2" not in r.stdout + r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    for s in SETTINGS:
        assert s.key in lines
    assert lines["bgp_peers"].split()[1] == "192.0.2.1:65001:***:false"
    assert lines["bgp_peers"].endswith("env bgp_peers")
    assert lines["bgp_hold_time"].endswith("flag --bgpHoldTimer")
    assert lines["bgp_as"].endswith("default")


def test_cli_config_bad_value_exits_2_with_one_line() -> None:
    r = _run_cli(["config"], {"bgp_peerpass": "hunter2", "bgp_peeraddress": "192.0.2.1x"})
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "bgp_peeraddress" in r.stderr and "hunter2" not in r.stderr


def test_cli_help_lists_env_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("manager", "config", "check"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        out = re.sub(r"\s+", " ", capsys.readouterr().out)
        for s in SETTINGS:
            for flag in s.flags:
                assert flag in out
            if s.flags:
                assert f"env {' / '.join(s.env)}" in out


def test_version() -> None:
    r = _run_cli(["version"], {})
    assert r.returncode == 0 and r.stdout.startswith("vipgate ")


def test_settings_table_matches_settings() -> None:
    """docs/configuration.md's settings table lists every setting with its flags and default."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `([a-z_0-9]+)`", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in line.strip().strip("|").split("|")]
    for s in SETTINGS:
        assert s.key in rows, f"docs/configuration.md lacks {s.key}"
        env_cell, flag_cell, default_cell = rows[s.key][:3]
        for e in s.env:
            assert f"`{e}`" in env_cell
        for f in s.flags:
            assert f"`{f}`" in flag_cell
        assert default_cell == (f"`{s.default}`" if s.default else '""'), s.key
    assert set(rows) == {s.key for s in SETTINGS}


# --------------------------------------------------------------------------------------------
# The health check's client certificate
# --------------------------------------------------------------------------------------------

_CERT = "control_plane_health_check_client_cert_path"
_KEY = "control_plane_health_check_client_key_path"


@pytest.fixture(scope="module")
def client_files(lab_pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A client certificate and key of the cluster CA, and the wrong shapes of them."""
    d = tmp_path_factory.mktemp("client")
    cert, key = make_client_cert(lab_pki, "client-ok", "vipgate", ["system:vipgate"])
    _, other_key = make_client_cert(lab_pki, "client-other")
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    encrypted = d / "encrypted.key"
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    both = d / "both.pem"
    both.write_bytes(key.read_bytes() + cert.read_bytes())  # key first: kubelet writes it so
    text = d / "text.txt"
    text.write_text("not a certificate\n")
    return {
        "cert": cert,
        "key": key,
        "other_key": other_key,
        "encrypted": encrypted,
        "both": both,
        "text": text,
        "dir": d,
    }


def _client_env(cert: Path | str, key: Path | str) -> dict[str, str]:
    return {_CERT: str(cert), _KEY: str(key)}


def test_client_certificate_accepted(client_files: dict[str, Path]) -> None:
    f = client_files
    c = load(_client_env(f["cert"], f["key"]))
    assert (c.health_client_cert_path, c.health_client_key_path) == (str(f["cert"]), str(f["key"]))
    c = load(_client_env(f["both"], f["both"]))  # one file holding both, kubelet's shape
    assert c.health_client_cert_path == c.health_client_key_path == str(f["both"])
    c = load({}, {_CERT: str(f["cert"]), _KEY: str(f["key"])})  # flags
    assert c.health_client_cert_path == str(f["cert"])
    assert load({}).health_client_cert_path == load({}).health_client_key_path == ""


@pytest.mark.parametrize(
    ("cert", "key", "named", "says"),
    [
        ("cert", "", _CERT, f"without {_KEY}: set both"),
        ("", "key", _KEY, f"without {_CERT}: set both"),
        ("cert", "other_key", _KEY, "this key does not belong to the certificate"),
        ("cert", "encrypted", _KEY, "the private key is encrypted"),
        ("key", "key", _CERT, "PEM without a certificate"),
        ("cert", "cert", _KEY, "PEM without a private key"),
        ("text", "key", _CERT, "not PEM"),
        ("dir", "key", _CERT, "is a directory"),
        ("missing", "key", _CERT, "no such file"),
        ("cert", "missing", _KEY, "no such file"),
    ],
)
def test_client_certificate_refused(
    client_files: dict[str, Path], cert: str, key: str, named: str, says: str
) -> None:
    def path(name: str) -> str:
        if name == "missing":
            return str(client_files["dir"] / "missing.pem")
        return str(client_files[name]) if name else ""

    with pytest.raises(ConfigError) as e:
        load(_client_env(path(cert), path(key)))
    msg = str(e.value)
    assert msg.startswith(f"{named}=") and says in msg, msg
    # Key material never reaches an error: no PEM and no base64 line of the key.
    assert "-----" not in msg
    key_lines = client_files["key"].read_text().splitlines()[1:-1]
    assert not any(line in msg for line in key_lines)


def test_client_certificate_pair_named_by_flag(client_files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="without --controlPlaneHealthCheckClientKeyPath: "):
        load({}, {_CERT: str(client_files["cert"])})


# ------------------------------------------------------------------ unhealthy action
@pytest.mark.parametrize(
    ("env", "flags", "want"),
    [
        ({}, {}, "withdraw"),
        ({"control_plane_health_check_unhealthy_action": "deprefer"}, {}, "deprefer"),
        ({}, {"control_plane_health_check_unhealthy_action": "deprefer"}, "deprefer"),  # flag
        ({"control_plane_health_check_unhealthy_action": " withdraw "}, {}, "withdraw"),
        ({"control_plane_health_check_unhealthy_action": ""}, {}, "withdraw"),  # empty: unset
        (
            {"control_plane_health_check_unhealthy_action": "withdraw"},
            {"control_plane_health_check_unhealthy_action": "deprefer"},
            "withdraw",  # env wins
        ),
    ],
)
def test_unhealthy_action(env: dict[str, str], flags: dict[str, str], want: str) -> None:
    from vipgate.health.gate import UnhealthyAction

    c = load(env, flags)
    assert c.health_unhealthy_action is UnhealthyAction(want)


@pytest.mark.parametrize("bad", ["drop", "Deprefer", "WITHDRAW", "deprefer,withdraw", "0"])
def test_unhealthy_action_bad_value_names_it_and_the_accepted_values(bad: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load({"control_plane_health_check_unhealthy_action": bad})
    msg = str(exc.value)
    assert f"control_plane_health_check_unhealthy_action={bad!r}" in msg
    assert msg.endswith("accepted: withdraw, deprefer")


def test_cli_unhealthy_action_bad_value_exits_2() -> None:
    r = _run_cli(["config"], {"control_plane_health_check_unhealthy_action": "drop"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().endswith(
        "control_plane_health_check_unhealthy_action='drop' is not an unhealthy action; "
        "accepted: withdraw, deprefer"
    )


# ---------------------------------------------------------------------------- the metrics server
RUNNABLE = {
    "address": "203.0.113.100",
    "bgp_enable": "true",
    "bgp_peers": "192.0.2.1:65001::false",
    "control_plane_health_check_address": "https://192.0.2.11:6443/livez",
}


@pytest.mark.parametrize(
    ("env", "flags", "listen"),
    [
        ({}, {}, ("", 2112)),  # the default
        ({"prometheus_server": ""}, {}, ("", 2112)),  # an empty variable is unset (kube-vip)
        ({}, {"prometheus_server": ""}, None),  # an empty flag: off (kube-vip)
        ({"prometheus_server": ""}, {"prometheus_server": ""}, None),  # the flag decides
        ({"prometheus_server": ":9100"}, {"prometheus_server": ""}, ("", 9100)),  # env wins
        ({"prometheus_enable": "false"}, {}, None),  # off from the environment
        ({"prometheus_enable": "0"}, {}, None),  # Go's strconv.ParseBool spellings
        (
            {"prometheus_enable": "true", "prometheus_server": "127.0.0.1:9100"},
            {},
            ("127.0.0.1", 9100),
        ),
        ({"prometheus_enable": ""}, {"prometheus_enable": "false"}, None),  # unset: the flag
        ({}, {"prometheus_enable": "false"}, None),
        ({"prometheus_enable": "true"}, {"prometheus_enable": "false"}, ("", 2112)),
    ],
)
def test_what_turns_the_metrics_server_off(
    env: dict[str, str], flags: dict[str, str | None], listen: tuple[str, int] | None
) -> None:
    c = load({**RUNNABLE, **env}, flags)
    assert c.prometheus_listen == listen
    assert c.warnings == ()
    assert (build_parts(c, stated_facts(c)).metrics is None) == (listen is None)


@pytest.mark.parametrize(
    ("env", "flags"),
    [
        ({"prometheus_enable": "false", "prometheus_server": ":9100"}, {}),
        ({"prometheus_enable": "false"}, {"prometheus_server": "127.0.0.1:2112"}),
    ],
)
def test_an_address_given_with_metrics_off_is_warned_about(
    env: dict[str, str], flags: dict[str, str | None]
) -> None:
    c = load(env, flags)
    assert c.prometheus_listen is None
    assert len(c.warnings) == 1 and "is not served: prometheus_enable='false'" in c.warnings[0]


def test_cli_prometheus_enable_bad_value_exits_2_naming_it() -> None:
    r = _run_cli(["config"], {"prometheus_enable": "disabled"})
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert "prometheus_enable='disabled': not a boolean; accepted:" in r.stderr
