"""Fixtures for the end-to-end tests: one Lab per test, clusters built in it, logs on failure.

``lab`` is a fresh :class:`lab.netns.Lab` (closed after the test, failed or not: processes
stopped by PID, namespaces deleted). ``make_cluster(**kwargs)`` builds a 3-node cluster in it
(BIRD ECMP router, fake apiservers, kubeadm-shaped PKI) with the e2e timing defaults and returns
``(cluster, route_watch)``; the watch records the router's kernel route from before any
vipgate starts. When a test fails, the vipgate logs and BIRD's log are printed in the report.

``podman`` (session) builds the container image once per run with ``scripts/image.sh`` into a
private podman store (:class:`lab.podman.Podman`) and removes the store at the end; the build time
and the image size are printed in the terminal summary (``FIGURES``, from tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from lab.cluster import Cluster
from lab.netns import Lab
from lab.podman import Podman
from lab.routemon import RouteWatch
from tests.conftest import FIGURES as FIGURES  # the tests' import of it stays as it was

# Timing of the e2e clusters (the benchmark's settings: period 1 s, timeout 1 s, threshold 3,
# hold 9 s). Tests derive every bound from these.
PERIOD = 1.0
TIMEOUT = 1.0
THRESHOLD = 3
HOLD = 9

MakeCluster = Callable[..., tuple[Cluster, RouteWatch]]


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """A private podman store holding localhost/vipgate:dev, built once per run; removed after."""
    pm = Podman.create()
    try:
        seconds = pm.build_image()
        FIGURES["image build (scripts/image.sh, mmdebstrap + podman build)"] = f"{seconds:.1f} s"
        yield pm
    finally:
        pm.remove()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.when == "call":
        item.stash[_failed_key] = rep.failed
    return rep


_failed_key = pytest.StashKey[bool]()


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


@pytest.fixture
def make_cluster(lab: Lab, request: pytest.FixtureRequest) -> Iterator[MakeCluster]:
    made: list[tuple[Cluster, RouteWatch]] = []

    def make(**kwargs: Any) -> tuple[Cluster, RouteWatch]:
        opts: dict[str, Any] = {
            "n_nodes": 3,
            "period": PERIOD,
            "timeout": TIMEOUT,
            "threshold": THRESHOLD,
            "hold": HOLD,
            "metrics": True,
        }
        opts.update(kwargs)
        cluster = Cluster.create(lab, **opts)
        watch = cluster.watch_route()
        made.append((cluster, watch))
        return cluster, watch

    yield make
    for cluster, watch in made:
        watch.stop()
        if request.node.stash.get(_failed_key, False):
            _dump(cluster, watch)


def _dump(cluster: Cluster, watch: RouteWatch) -> None:
    print(watch.describe())
    for name in cluster.vipgates:
        print(f"----- vipgate log {name}\n{cluster.log(name)[-6000:]}")
    router = cluster.topo.router
    if router is not None:
        bird_log = router.dir / "bird.log"
        if bird_log.exists():
            print(f"----- {bird_log}\n{bird_log.read_text(errors='replace')[-3000:]}")
