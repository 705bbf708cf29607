"""Markers by folder: every test under tests/interop and tests/e2e is a `lab` test, none under
tests/unit is (README, "Layout").

``pytest -m "not lab"`` runs tests/unit: pure logic and loopback sockets, no root, seconds.
``pytest -m lab`` runs tests/interop (the speaker and BFD against an in-test peer over loopback,
and against BIRD, FRR and GoBGP in network namespaces) and tests/e2e (vipgate processes, the
demo, the container image, Prometheus): root, minutes. A test that needs the lab lives in one of
those folders; a `lab` mark written on a test under tests/unit is an error.

Parallel lab runs (``pytest -m lab -n 2 --dist loadfile``, as scripts/test.sh runs them): each
test makes its own uniquely named namespaces (lab.netns), so tests run side by side in separate
pytest-xdist worker processes. A worker takes a whole module at a time (its module fixtures are
set up once), and the modules that share a session fixture go to one worker together
(``ONE_WORKER``: the image and pod-runtime tests, one image build per run). ``FIGURES``
measured in the workers are printed by the controller.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
LAB_FOLDERS = (TESTS / "interop", TESTS / "e2e")

# Figures measured by the lab tests, printed at the end of the run (name -> text).
FIGURES: dict[str, str] = {}

# Modules that share a session fixture, so one pytest-xdist worker runs them all (module -> name
# of the unit of work).
ONE_WORKER = {
    "tests/e2e/test_image.py": "podman",
    "tests/e2e/test_pod_runtime.py": "podman",
}
# The units of work that take minutes (the image build; runs of a fixed length), longest first:
# the workers take them before any other, so that both finish at about the same time.
LONG_FIRST = (
    "podman",
    "tests/e2e/test_chaos.py",
    "tests/e2e/test_chaos_modes.py",
    "tests/e2e/test_soak.py",
    "tests/interop/test_bgp_listen.py",
    "tests/e2e/test_demo.py",
)


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C works in the tests' processes even when pytest was started with SIGINT ignored.

    A shell without job control starts a background command (``./scripts/test.sh &``) with
    SIGINT ignored (POSIX, "Shell Command Language" 2.11), every child inherits that across
    exec, and Python then installs no KeyboardInterrupt handler: the tests that interrupt a lab
    or the demo with SIGINT would see nothing happen. pytest and its xdist workers start from
    here, so every process a test starts gets the default disposition back.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).resolve()
        if any(path.is_relative_to(folder) for folder in LAB_FOLDERS):
            item.add_marker(pytest.mark.lab)
        elif path.is_relative_to(TESTS / "unit") and item.get_closest_marker("lab") is not None:
            raise pytest.UsageError(
                f"{item.nodeid}: a lab test belongs in tests/interop or tests/e2e"
            )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the modules of :data:`ONE_WORKER` in one unit of work and the
    units of :data:`LONG_FIRST` handed out first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]  # untyped
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return ONE_WORKER.get(module, module)

        def _assign_work_unit(self, node: Any) -> None:
            long = next((u for u in LONG_FIRST if u in self.workqueue), None)
            if long is not None:
                self.workqueue.move_to_end(long, last=False)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("figures measured by the e2e tests")
        for name, text in FIGURES.items():
            terminalreporter.write_line(f"{name}: {text}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand this worker's figures to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["vipgate_figures"] = dict(FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the pytest-xdist controller: a worker finished; keep its figures."""
    FIGURES.update(getattr(node, "workeroutput", {}).get("vipgate_figures", {}))
