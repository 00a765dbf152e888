"""Foreign replicas: stores that are not ours, synced through a native gateway.

``taskwarrior:PATH`` and ``fossil:PATH`` name them wherever the CLI takes a source or a
target (docs/foreign.md).
"""

from __future__ import annotations

from pathlib import Path

from p2p_prophet.foreign.adapter import Adapter, ForeignError, Item
from p2p_prophet.foreign.fossil import Fossil
from p2p_prophet.foreign.gateway import ForeignResult, clone, pull, push
from p2p_prophet.foreign.taskwarrior import Taskwarrior

KINDS: dict[str, type[Taskwarrior] | type[Fossil]] = {"taskwarrior": Taskwarrior, "fossil": Fossil}

__all__ = [
    "KINDS",
    "Adapter",
    "ForeignError",
    "ForeignResult",
    "Fossil",
    "Item",
    "Taskwarrior",
    "clone",
    "foreign_adapter",
    "is_foreign",
    "pull",
    "push",
]


def is_foreign(location: str) -> bool:
    """``location`` names a foreign replica (``taskwarrior:PATH``, ``fossil:PATH``)."""
    kind, sep, _ = location.partition(":")
    return bool(sep) and kind in KINDS


def foreign_adapter(
    location: str,
    *,
    record_type: str = "ticket",
    read_only: tuple[str, ...] = (),
    base: Path | None = None,
) -> Adapter:
    """The adapter for ``location``; ``read_only`` lists locations (``kind:PATH``) never
    to push to, compared after resolving the paths (relative ones in ``read_only``
    from ``base``: the directory of the config that lists them)."""
    kind, _, path = location.partition(":")
    if kind not in KINDS or not path:
        raise ForeignError(
            f"{location}: a foreign replica is named taskwarrior:PATH or fossil:PATH"
        )
    resolved = Path(path).expanduser().resolve()
    frozen = False
    for other in read_only:
        other_kind, _, other_path = other.partition(":")
        listed = Path(other_path).expanduser()
        if base is not None and not listed.is_absolute():
            listed = base / listed
        frozen = frozen or (other_kind == kind and listed.resolve() == resolved)
    adapter: Adapter = KINDS[kind](path, record_type=record_type, read_only=frozen)
    return adapter
