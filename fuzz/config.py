"""Fuzz the configuration parser (vipgate.config.load) over every setting, env and flags.

Input: UTF-8 text (invalid bytes kept as surrogates, as ``os.environ`` gives them; NUL, which no
environment can hold, dropped), one ``NAME=VALUE`` per line. ``NAME`` is an environment
variable, ``--flag`` a command-line flag, or ``#n`` / ``#n.k`` the k-th environment name of
setting n (``SETTINGS[n % len]``), so that mutations stay on real settings.

Crash: an exception other than :class:`ConfigError`; a :class:`ConfigError` that shows a secret
(a ``secret`` setting's value or a password field of ``bgp_peers``: found by loading again with
the secret replaced, so text that is in the message anyway does not count); a configuration
that loads but that the daemon's own constructors (probe, gate, speaker, manager) reject --
"nothing that passes ``vipgate config`` may fail later because of its value"; environment-name
warnings (:func:`vipgate.config.names.name_warnings`) that change with a value other than
between empty and set (a value would be in them).
"""

from __future__ import annotations

from vipgate.config import SETTINGS, Config, ConfigError, load
from vipgate.config.names import name_warnings
from vipgate.manager import Manager, build_parts
from vipgate.vip import stated_facts

FLAG_KEYS = {f: s.key for s in SETTINGS for f in s.flags}
SECRET_ENVS = {name for s in SETTINGS if s.secret for name in s.env}


class Crash(AssertionError):
    """A property of the parser did not hold."""


def parse(data: bytes) -> tuple[dict[str, str], dict[str, str | None]]:
    text = data.decode("utf-8", "surrogateescape").replace("\x00", "")
    env: dict[str, str] = {}
    flags: dict[str, str | None] = {}
    for line in text.split("\n"):
        name, sep, value = line.partition("=")
        if not sep:
            continue
        if name.startswith("#"):
            idx, _, k = name[1:].partition(".")
            try:
                s = SETTINGS[int(idx) % len(SETTINGS)]
                env[s.env[int(k or 0) % len(s.env)]] = value
            except ValueError:
                continue
        elif name.startswith("--"):
            key = FLAG_KEYS.get(name)
            if key is not None:
                flags[key] = value
        elif name:
            env[name] = value
    return env, flags


def _load(env: dict[str, str], flags: dict[str, str | None]) -> Config | ConfigError:
    try:
        return load(env, flags)
    except ConfigError as e:
        return e


def _mask(secret: str) -> str:
    return "".join("Z" if c != "Z" else "Y" for c in secret)


def _secrets(env: dict[str, str], flags: dict[str, str | None]) -> list[tuple[str, str, str, str]]:
    """(source: "env" | "flag", name or key, the value with the secret masked, the secret).
    A secret setting's whole value is the secret, but for ``bgp_peers`` only the password
    fields are (the addresses and AS numbers in it are named in errors on purpose)."""
    by_name = {n: s for s in SETTINGS if s.secret for n in (*s.env, s.key)}
    given = [("env", k, v) for k, v in env.items() if k in SECRET_ENVS]
    given += [("flag", k, v) for k, v in flags.items() if k in by_name and v is not None]
    out: list[tuple[str, str, str, str]] = []
    for source, where, value in given:
        if by_name[where].kind != "list":
            out.append((source, where, _mask(value), value))
            continue
        entries = value.split(",")
        for k, entry in enumerate(entries):  # address:AS:password:... or [v6]:AS:password:...
            head, bracket, tail = entry.rpartition("]")
            fields = tail.split(":") if bracket else entry.split(":")
            if len(fields) > 2:  # [addr, AS, password, ...] or ["", AS, password, ...]
                secret = fields[2]
                fields[2] = _mask(secret)
                masked_entry = head + bracket + ":".join(fields)
                masked = ",".join([*entries[:k], masked_entry, *entries[k + 1 :]])
                out.append((source, where, masked, secret))
    return [x for x in out if len(x[3]) >= 4]


def _check_secrets(e: ConfigError, env: dict[str, str], flags: dict[str, str | None]) -> None:
    msg = str(e)
    for source, where, masked, secret in _secrets(env, flags):
        if secret not in msg:
            continue
        env2, flags2 = dict(env), dict(flags)
        if source == "env":
            env2[where] = masked
        else:
            flags2[where] = masked
        again = _load(env2, flags2)
        # the same error with the secret masked still shows it: it came from elsewhere
        if not isinstance(again, ConfigError) or secret not in str(again):
            raise Crash(f"a secret of {where} is in the error: {msg!r}")


def _construct(cfg: Config) -> None:
    """What the daemon builds from a loaded config before it touches a socket (the manager's
    own builder, with the host facts the configuration states)."""
    if not cfg.prefixes or not cfg.bgp_enable:
        return  # the manager exits 2 with a message (config.py's own rule)
    Manager(build_parts(cfg, stated_facts(cfg)))


def _check_name_warnings(env: dict[str, str]) -> None:
    got = name_warnings(env)
    if got != name_warnings({k: "x" if v else "" for k, v in env.items()}):
        raise Crash(f"a value changes the environment-name warnings: {got!r}")


def check(data: bytes) -> None:
    env, flags = parse(data)
    _check_name_warnings(env)
    got = _load(env, flags)
    if isinstance(got, ConfigError):
        _check_secrets(got, env, flags)
        return
    try:
        _construct(got)
    except Exception as e:
        raise Crash(f"loaded config rejected later: {e!r}") from e
