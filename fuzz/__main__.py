"""``python -m fuzz TARGET [libFuzzer options] [corpus dirs]``: one harness under atheris.

Only the code under test is instrumented for coverage (the target's ``INSTRUMENT`` packages,
imported inside :func:`atheris.instrument_imports`), so start-up stays fast and the coverage
figure is the target's own. Exit status and artifacts are libFuzzer's (``crash-<sha1>`` in the
``-artifact_prefix`` directory; exit 0 when the run ended without a crash).
"""

from __future__ import annotations

import importlib
import sys

TARGETS = {
    "bgp": ("vipgate.bgp",),
    "probe": ("vipgate.health.probe", "h11"),
    "config": ("vipgate.config",),
    "rtnl": ("vipgate.routing.rtnl",),
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in TARGETS:
        sys.exit(f"usage: python -m fuzz {{{'|'.join(TARGETS)}}} [libFuzzer options] [corpus]")
    import atheris

    target = args[0]
    with atheris.instrument_imports(include=list(TARGETS[target])):
        for name in TARGETS[target]:
            importlib.import_module(name)
        mod = importlib.import_module(f"fuzz.{target}")
    atheris.Setup([f"fuzz-{target}", *args[1:]], mod.check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
