"""The benches' ``--json`` files, written one way: the raw results (a dataclass as its fields,
anything else JSON has no type for as its text), indented by one, the folder made if missing.
``--table`` / ``--replot`` read them back into the same dataclasses.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

__all__ = ["write_json"]


def _plain(o: object) -> object:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    return str(o)


def write_json(path: str | None, data: object) -> None:
    """``data`` into ``path``; nothing when no ``--json`` was given (``path`` None or "")."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, default=_plain))
