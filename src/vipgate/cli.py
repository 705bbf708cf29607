"""Command line: ``vipgate manager|manifest|check|config|version``.

Every configuration flag is kube-vip's (see :data:`vipgate.config.SETTINGS`); environment variables
win over flags. A bad value exits 2 with one line on stderr before anything touches the network.
An unknown flag is a usage error (exit 2) of its command, with that command's usage and the
closest of its flags (never a value); an environment name vipgate does not read gets one
warning on stderr (:mod:`vipgate.config.names`).
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import NoReturn

from vipgate import __version__
from vipgate.config import (
    EXIT_CONFIG,
    SETTINGS,
    Config,
    ConfigError,
    describe,
    environment,
    load,
)
from vipgate.config.names import closest_flag, name_warnings

_OPTION = re.compile(r"--?[A-Za-z][\w-]*")


def safe_usage_error(message: str, known: Sequence[str] = ()) -> str:
    """An argparse error with no argument *value* in it, only option names.

    argparse echoes what it could not place ("unrecognized arguments: --peerpass s3cret",
    "invalid choice: 's3cret'"): a mistyped flag would print a BGP password into a pod's log.
    Option names are kept (cut at ``=``); every other token is counted, never shown. Each
    unknown option name gets the closest of the ``known`` flags, as a mistyped environment
    name does (:func:`vipgate.config.names.closest_flag`)."""
    head, sep, rest = message.partition(": ")
    if head == "unrecognized arguments" and sep:
        tokens = rest.split()
        names = [t.split("=", 1)[0] for t in tokens if _OPTION.fullmatch(t.split("=", 1)[0])]
        hidden = len(tokens) - len(names)
        shown = " ".join(names)
        if hidden:
            shown += f"{' and ' if names else ''}{hidden} value(s) (not shown)"
        hints = [
            f"{name}: did you mean {near}?"
            for name in dict.fromkeys(names)
            if (near := closest_flag(name, known)) is not None
        ]
        return f"unrecognized arguments: {shown}" + "".join(f"; {h}" for h in hints)
    message = re.sub(r"invalid choice: .*(?= \(choose from)", "invalid choice", message, flags=re.S)
    return re.sub(r"(--?[A-Za-z][\w-]*)=\S*", r"\1=...", message)


class _Parser(argparse.ArgumentParser):
    """argparse, with errors that never echo a value (:func:`safe_usage_error`) and no
    abbreviated flags (kube-vip's Go flags take none)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {safe_usage_error(message, known)}\n")

    def parse_args(  # type: ignore[override]  # typeshed overloads the namespace type
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but arguments a subcommand does not know are reported by that
        subcommand's parser: its usage, and the closest of its flags."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            self._subparser(parsed).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed

    def _subparser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        command = getattr(parsed, "command", None)
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction) and command in a.choices:
                sub: argparse.ArgumentParser = a.choices[command]
                return sub
        return self


def _add_config_flags(
    p: argparse.ArgumentParser,
    title: str = "configuration (kube-vip names; environment variables win over flags)",
) -> None:
    g = p.add_argument_group(title)
    for s in SETTINGS:
        if not s.flags:
            continue
        default = repr(s.default) if s.default else '""'
        env = " / ".join(s.env)
        help_text = f"{s.help} [env {env}; default {default}]".replace("%", "%%")
        if s.is_bool:
            g.add_argument(
                *s.flags,
                dest=s.key,
                nargs="?",
                const="true",
                default=None,
                metavar="BOOL",
                help=help_text,
            )
        else:
            g.add_argument(
                *s.flags, dest=s.key, default=None, metavar=s.kind.upper(), help=help_text
            )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vipgate",
        description="Health-gated BGP announcer for the Kubernetes control-plane VIP.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("manager", help="run the daemon: health-gated BGP announcement of the VIP")
    _add_config_flags(p)

    p = sub.add_parser("config", help="print the effective configuration and exit (no network)")
    _add_config_flags(p)

    p = sub.add_parser("check", help="run one health probe with the manager's configuration")
    _add_config_flags(p)

    p = sub.add_parser("manifest", help="print a static pod or DaemonSet manifest")
    p.add_argument("kind", choices=("pod", "daemonset"), help="what to generate")
    _add_config_flags(
        p, "configuration (kube-vip names; written into the manifest, never read from the shell)"
    )
    p.add_argument(
        "--image",
        default=None,
        help=f"container image of vipgate [default ghcr.io/vipgate/vipgate:v{__version__}]",
    )
    p.add_argument(
        "--taint",
        nargs="?",
        const="true",
        default=None,
        metavar="BOOL",
        help="DaemonSet: tolerate the control-plane taints [default true]",
    )

    sub.add_parser("version", help="print the version")
    return parser


def flags_of(args: argparse.Namespace) -> dict[str, str | None]:
    """The configuration flags given on the command line, by setting key."""
    return {s.key: getattr(args, s.key, None) for s in SETTINGS}


def load_or_exit(env: Mapping[str, str], flags: Mapping[str, str | None]) -> Config:
    """The configuration, or exit 2: the names vipgate does not read first (a mistyped name is
    often why a value is refused), then the refusal."""
    try:
        return load(env, flags)
    except ConfigError as e:
        _warn(name_warnings(env))
        raise SystemExit(_refused(e)) from None


def _refused(e: ConfigError) -> int:
    print(f"vipgate: invalid configuration: {e}", file=sys.stderr)
    return EXIT_CONFIG


def _warn(warnings: Sequence[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def _cmd_config(env: Mapping[str, str], flags: Mapping[str, str | None]) -> int:
    named = name_warnings(env)
    try:
        config = load(env, flags)
    except ConfigError as e:
        _warn(named)  # before the refusal: a mistyped name is often why a value is refused
        return _refused(e)
    # The configuration's warnings (the health gate's first) before the names it ignores: a
    # kube-vip manifest brings a dozen of those, which would bury them.
    _warn(config.warnings)
    _warn(named)
    rows = describe(config, env, flags)
    w0 = max(len(r[0]) for r in rows)
    w1 = min(48, max(len(r[1]) for r in rows))
    for key, value, source in rows:
        shown = value or '""'
        print(f"{key:<{w0}}  {shown:<{w1}}  {source}")
    refusal = config.not_runnable
    if refusal is not None:  # a pre-flight check must not pass what the manager refuses
        print(f"vipgate: vipgate manager would not start: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _stop_before_start(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "manager":
        # Until the manager takes the signals over (before it touches the host), a SIGTERM
        # just ends the process: nothing to undo, exit 0 (not death by signal).
        signal.signal(signal.SIGTERM, _stop_before_start)
    if args.command == "version":
        print(f"vipgate {__version__}")
        return 0
    env = environment()
    flags = flags_of(args)
    if args.command == "config":
        return _cmd_config(env, flags)
    if args.command == "manifest":
        from vipgate import manifest

        # A manifest is made from the flags given here, never from this shell's environment.
        # The CA file may not exist yet (manifests are made before kubeadm init): load_config
        # checks its content only when it is present.
        try:
            config = manifest.load_config(flags)
            text = manifest.render(args.kind, config, flags, image=args.image, taint=args.taint)
        except ConfigError as e:
            return _refused(e)
        _warn(manifest.warnings(args.kind, config, flags, args.taint))
        print(text, end="")
        return 0
    config = load_or_exit(env, flags)
    ignored = name_warnings(env)
    if args.command == "manager":
        from vipgate.daemon import run

        logging.basicConfig(
            level=config.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        # The configuration's warnings, logged by run, before these, as `vipgate config` does.
        return run(config, lambda: _warn(ignored))
    if args.command == "check":
        from vipgate.check import run as run_check

        _warn(ignored)
        return run_check(config)
    raise AssertionError(args.command)
