"""`vipgate manager`: a SIGTERM before the manager takes the signals over (while the
configuration loads, before any host change) ends the process with exit 0, not by the signal.
(Found by the chaos run: a vipgate stopped 0.3 s after its start died with -15.)"""

from __future__ import annotations

import os
import signal

import pytest

from vipgate import cli
from vipgate.config import Config


def test_sigterm_while_the_configuration_loads_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    reached: list[str] = []

    def load_or_exit(env: object, flags: object) -> Config:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered at the next bytecode boundary
        reached.append("after the signal")
        raise AssertionError("the SIGTERM did not end the start")

    monkeypatch.setattr(cli, "load_or_exit", load_or_exit)
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exc:
            cli.main(["manager"])
    finally:
        signal.signal(signal.SIGTERM, before)
    assert exc.value.code == 0
    assert reached == []
