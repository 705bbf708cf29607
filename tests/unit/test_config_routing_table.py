"""Routing-table mode's settings: kube-vip's names, flags and defaults (pkg/kubevip/
config_envvar.go, cmd/kube-vip.go), the values refused (docs/configuration.md, "Routing-table
mode"), and the one-mode rule of kube-vip's manager."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vipgate.config import SETTINGS_BY_KEY, load
from vipgate.config.values import ConfigError

TABLE = {"address": "203.0.113.100", "vip_routingtable": "true", "vip_interface": "lo"}


def test_kube_vip_names_flags_and_defaults() -> None:
    expected = {
        "vip_routingtable": ("--table", "false"),
        "vip_routingtableid": ("--tableID", "198"),
        "vip_routingtabletype": ("--tableType", "unicast"),
        "vip_routingprotocol": ("--routingProtocol", "248"),
        "vip_cleanroutingtable": ("--cleanRoutingTable", "false"),
    }
    for key, (flag, default) in expected.items():
        s = SETTINGS_BY_KEY[key]
        assert (s.env, s.flags, s.default) == ((key,), (flag,), default)
    c = load({})
    assert (c.vip_routingtable, c.vip_routingtableid, c.vip_routingtabletype) == (False, 198, 1)
    assert (c.vip_routingprotocol, c.vip_cleanroutingtable) == (248, False)


@pytest.mark.parametrize(
    ("env", "flags", "attr", "value"),
    [
        ({"vip_routingtableid": "1"}, {}, "vip_routingtableid", 1),
        ({"vip_routingtableid": "252"}, {}, "vip_routingtableid", 252),
        ({}, {"vip_routingtableid": "200"}, "vip_routingtableid", 200),
        ({"vip_routingtabletype": "local"}, {}, "vip_routingtabletype", 2),
        ({"vip_routingtabletype": "2"}, {}, "vip_routingtabletype", 2),
        ({"vip_routingtabletype": "1"}, {}, "vip_routingtabletype", 1),
        ({"vip_routingtabletype": "Unicast"}, {}, "vip_routingtabletype", 1),
        ({"vip_routingprotocol": "4"}, {}, "vip_routingprotocol", 4),
        ({"vip_routingprotocol": "255"}, {}, "vip_routingprotocol", 255),
        ({"vip_cleanroutingtable": "true"}, {}, "vip_cleanroutingtable", True),
        ({}, {"vip_routingtable": "true"}, "vip_routingtable", True),
    ],
)
def test_accepted_values(
    env: dict[str, str], flags: dict[str, str], attr: str, value: object
) -> None:
    assert getattr(load(env, flags), attr) == value


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"vip_routingtableid": "0"}, "kernel's unspec table"),
        ({"vip_routingtableid": "253"}, "kernel's default table"),
        ({"vip_routingtableid": "254"}, "kernel's main table"),
        ({"vip_routingtableid": "255"}, "kernel's local table"),
        ({"vip_routingtableid": "256"}, "1-252"),
        ({"vip_routingtableid": "-1"}, "1-252"),
        ({"vip_routingtableid": "main"}, "not an integer"),
        ({"vip_routingtabletype": "3"}, "unicast or local"),
        ({"vip_routingtabletype": "blackhole"}, "unicast or local"),
        ({"vip_routingprotocol": "0"}, "kernel's (unspec)"),
        ({"vip_routingprotocol": "2"}, "kernel's (kernel)"),
        ({"vip_routingprotocol": "3"}, "kernel's (boot)"),
        ({"vip_routingprotocol": "256"}, "4-255"),
        ({"vip_routingtable": "maybe"}, "not a boolean"),
        ({"vip_cleanroutingtable": "maybe"}, "not a boolean"),
    ],
)
def test_refused_values_name_the_setting(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load(env)
    (name,) = env
    assert name in str(exc.value) and words in str(exc.value), str(exc.value)


def test_one_mode_only_as_kube_vip() -> None:
    assert load(TABLE).not_runnable is None
    both = load({**TABLE, "bgp_enable": "true", "bgp_peers": "192.0.2.1:65001"})
    refusal = both.not_runnable
    assert refusal is not None and "bgp_enable" in refusal and "vip_routingtable" in refusal
    neither = load({"address": "203.0.113.100"}).not_runnable
    assert neither is not None and "bgp_enable is not true" in neither
    assert "vip_routingtable" in neither


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vipgate", *args],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_manager_exits_2_naming_the_setting_before_any_route() -> None:
    """Refused before the manager touches the host (no CAP_NET_ADMIN needed to see it)."""
    r = _cli(["manager"], {**TABLE, "vip_routingtableid": "254"})
    assert r.returncode == 2 and "vip_routingtableid" in r.stderr, r.stderr
    r = _cli(["manager"], {**TABLE, "bgp_enable": "true", "bgp_peers": "192.0.2.1:65001"})
    assert r.returncode == 2, r.stderr
    assert "bgp_enable" in r.stderr and "vip_routingtable" in r.stderr, r.stderr


def test_the_builder_picks_the_announcer_from_the_config() -> None:
    """The gate and the manager get the same parts either way; only the announcer differs."""
    from vipgate.bgp.speaker import Speaker
    from vipgate.manager import build_parts
    from vipgate.routing.announcer import TableAnnouncer
    from vipgate.routing.plan import TableSettings
    from vipgate.vip import stated_facts

    dual = "203.0.113.100, 2001:db8:100::100"
    env = {**TABLE, "address": dual, "vip_routingtableid": "200", "vip_routingprotocol": "250"}
    c = load(env)
    parts = build_parts(c, TableSettings(200, 250, 1, "lo", 1))
    assert isinstance(parts.speaker, TableAnnouncer) and parts.vips == ()
    assert [str(v.prefix) for v in parts.speaker.vips] == [
        "203.0.113.100/32",
        "2001:db8:100::100/128",
    ]
    assert parts.speaker.settings.table == 200 and parts.speaker.settings.protocol == 250
    bgp = load({"address": "203.0.113.100", "bgp_enable": "true", "bgp_peers": "192.0.2.1:65001"})
    assert isinstance(build_parts(bgp, stated_facts(bgp)).speaker, Speaker)


def test_the_route_is_the_host_route_and_vip_subnet_the_address_length() -> None:
    """docs/configuration.md, "Routing-table mode": the table gets each VIP's /32 or /128 (as
    kube-vip's BGP mode announces it), the interface the address with its vip_subnet length."""
    from vipgate.manager import build_parts
    from vipgate.routing.announcer import TableAnnouncer
    from vipgate.routing.plan import AddressChange, RouteChange, TableSettings, Want, plan

    env = {**TABLE, "address": "203.0.113.100, 2001:db8:100::100", "vip_subnet": "24,64"}
    c = load(env)
    s = TableSettings(198, 248, 1, "lo", 1)
    parts = build_parts(c, s)
    assert isinstance(parts.speaker, TableAnnouncer)
    hosts = ["203.0.113.100/32", "2001:db8:100::100/128"]
    assert [str(p) for p in parts.prefixes] == hosts
    vips = parts.speaker.vips
    changes = plan(s, vips, {p: Want.ANNOUNCED for p in parts.prefixes}, [], [])
    assert [str(c.route.prefix) for c in changes if isinstance(c, RouteChange)] == hosts
    assert [
        (str(c.vip.address), c.vip.prefixlen) for c in changes if isinstance(c, AddressChange)
    ] == [("203.0.113.100", 24), ("2001:db8:100::100", 64)]
