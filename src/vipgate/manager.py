"""The daemon (placeholder until the health-gate issue lands)."""

from vipgate.config import Config


def run(config: Config) -> int:
    raise SystemExit("vipgate manager: not implemented yet")
