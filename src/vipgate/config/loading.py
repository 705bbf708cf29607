""":func:`load`: the settings table's parsers, then the rules, then one frozen Config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vipgate.config.model import Config
from vipgate.config.peers import parse_peers
from vipgate.config.rules import RULES, WARNINGS, loaded
from vipgate.config.table import SETTINGS, collect
from vipgate.config.values import REDACTED, Source


def load(env: Mapping[str, str], flags: Mapping[str, str | None] | None = None) -> Config:
    """Parse and validate. Raises ConfigError on the first bad value.

    Each setting is parsed by its table entry's parser in table order, then the rules between
    settings run (:data:`vipgate.config.rules.RULES`), then the warning rules.
    """
    raw = collect(env, flags or {})
    got: dict[str, Any] = {}
    for s in SETTINGS:
        got[s.key] = s.parse(raw[s.key], got)
    values = loaded(raw, got, env)
    for rule in RULES:
        rule(values)
    warnings = [w for warn in WARNINGS for w in warn(values)]
    return Config(
        **{s.attr: got[s.key] for s in SETTINGS if s.attr is not None},
        peers=tuple(p for _, p in values.peers),
        sources={k: v.source for k, v in raw.items()},
        warnings=tuple(warnings),
    )


def describe(
    config: Config, env: Mapping[str, str], flags: Mapping[str, str | None]
) -> list[tuple[str, str, str]]:
    """(setting, shown value, source) for every setting: what `vipgate config` prints.

    Secrets are shown as ``***``; peers with their passwords redacted.
    """
    raw = collect(env, flags)
    rows: list[tuple[str, str, str]] = []
    for s in SETTINGS:
        rv = raw[s.key]
        if s.key == "bgp_peers":
            shown = ",".join(str(p) for p in parse_peers(rv))
        elif s.secret:
            shown = REDACTED if rv.value else ""
        else:
            shown = rv.value
        source = rv.source.value if rv.source is Source.DEFAULT else f"{rv.source.value} {rv.name}"
        # A value from bytes that are not UTF-8 (a path, say) must still print.
        shown = shown.encode("utf-8", "backslashreplace").decode()
        rows.append((s.key, shown, source))
    prefixes = ",".join(str(p) for p in config.prefixes)
    rows.append(("(announced prefixes)", prefixes, "derived"))
    rows.append(("(peers in effect)", ",".join(str(p) for p in config.peers), "derived"))
    rows.append(("(keepalive in effect)", str(config.keepalive), "derived"))
    rows.append(("(router id)", config.router_id_source.describe(), "derived"))
    rows.append(("(readiness read)", config.readiness_url or "off", "derived"))
    return rows
