"""`vipgate check` (placeholder until the operator-surface issue lands)."""

from vipgate.config import Config


def run(config: Config) -> int:
    raise SystemExit("vipgate check: not implemented yet")
