"""`vipgate manifest` (placeholder until the operator-surface issue lands)."""

from collections.abc import Mapping

from vipgate.config import Config


def render(
    kind: str, config: Config, flags: Mapping[str, str | None], image: str | None, taint: str | None
) -> str:
    raise SystemExit("vipgate manifest: not implemented yet")
