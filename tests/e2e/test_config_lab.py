"""The real ``vipgate manager`` refuses what used to crash it after the VIP was up
(docs/configuration.md, "Limits").

Each case runs the manager in a fresh namespace with ``ip monitor address`` watching it: the
manager exits 2 with one line naming the variable, no traceback, no password, and no address is
ever added (not even for a moment).
"""

from __future__ import annotations

import time

import pytest

from lab.netns import Lab, python_cmd

pytestmark = pytest.mark.lab

BASE = {
    "address": "203.0.113.100",
    "vip_interface": "lo",
    "bgp_enable": "true",
    "bgp_routerid": "192.0.2.11",
    "prometheus_server": "",
}
PASSWORD = "Zx9Qv" * 17  # 85 bytes: above TCP_MD5SIG_MAXKEYLEN (80)

CASES = {
    # Used to pass `vipgate config`, then: VIP added, ValueError traceback, exit 1.
    "md5-password-81-bytes": (
        {"bgp_peers": f"192.0.2.1:65001:{PASSWORD}:false"},
        "bgp_peers entry 1 (192.0.2.1, AS 65001): the password is longer than 80 bytes",
    ),
    # Used to pass, then: VIP added, an IPv6 route announced with an IPv4-mapped next hop.
    "ipv6-vip-over-ipv4-session": (
        {"address": "2001:db8:100::100", "bgp_peers": "192.0.2.1:65001::false"},
        "set mpbgp_nexthop=fixed and mpbgp_ipv6=",
    ),
    # Used to pass, then: VIP added, the probe crashed on the IDNA encoding of the host.
    "health-url-label-64": (
        {
            "bgp_peers": "192.0.2.1:65001::false",
            "control_plane_health_check_address": f"https://{'a' * 64}.example:6443/livez",
        },
        "control_plane_health_check_address=",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_manager_exits_2_before_touching_the_host(case: str) -> None:
    env, expected = CASES[case]
    with Lab() as lab:
        ns = lab.add_netns("cfg")
        before = lab.ip_json(ns, "addr")
        mon = lab.popen(ns, ["ip", "-o", "monitor", "address"], log_name="monitor")
        time.sleep(0.3)  # let the monitor subscribe
        kv = [f"{k}={v}" for k, v in {**BASE, **env}.items()]
        r = lab.run(ns, ["env", *kv, *python_cmd("vipgate", "manager")], check=False, timeout=30)
        time.sleep(0.3)
        lab.stop(mon)
        events = (lab.workdir / "monitor.log").read_text()
        after = lab.ip_json(ns, "addr")
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("vipgate: invalid configuration: ")
    assert expected in lines[0], lines[0]
    assert "Traceback" not in r.stderr and "Zx9" not in r.stderr
    assert events.strip() == "", events
    assert after == before


def test_running_manager_logs_no_password() -> None:
    """A manager that runs (debug logging, sessions failing, the MD5 hint logged) and is stopped
    never writes any part of the password; the peer is shown with ``***``."""
    pw = "Zx9Qv-md5-secret"
    env = {
        **BASE,
        "vip_loglevel": "debug",
        "bgp_peers": f"192.0.2.1:65001:{pw}:false:179:mpbgp_nexthop=fixed;mpbgp_ipv4=192.0.2.11",
        "bgp_peeraddress": "192.0.2.2",
        "bgp_peerpass": pw + "-2",
    }
    with Lab() as lab:
        ns = lab.add_netns("run")
        kv = [f"{k}={v}" for k, v in env.items()]
        # SIGTERM after 6 s: long enough for three failed connects and the MD5 hint.
        argv = [
            "timeout",
            "--preserve-status",
            "-s",
            "TERM",
            "6",
            "env",
            *kv,
            *python_cmd("vipgate", "manager"),
        ]
        r = lab.run(ns, argv, check=False, timeout=30)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "192.0.2.1:65001:***:false" in out, out
    assert "TCP MD5 password is set" in out, out  # the hint ran, and named no password
    assert "Zx9" not in out and "secret" not in out
