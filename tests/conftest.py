"""Markers by folder: every test under tests/interop and tests/e2e is a `lab` test, none under
tests/unit is (README, "Layout").

``pytest -m "not lab"`` runs tests/unit: pure logic and loopback sockets, no root, seconds.
``pytest -m lab`` runs tests/interop (the speaker and BFD against an in-test peer over loopback,
and against BIRD, FRR and GoBGP in network namespaces) and tests/e2e (vipgate processes, the
demo, the container image, Prometheus): root, minutes. A test that needs the lab lives in one of
those folders; a `lab` mark written on a test under tests/unit is an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
LAB_FOLDERS = (TESTS / "interop", TESTS / "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(item.path).resolve()
        if any(path.is_relative_to(folder) for folder in LAB_FOLDERS):
            item.add_marker(pytest.mark.lab)
        elif path.is_relative_to(TESTS / "unit") and item.get_closest_marker("lab") is not None:
            raise pytest.UsageError(
                f"{item.nodeid}: a lab test belongs in tests/interop or tests/e2e"
            )
