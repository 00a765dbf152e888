"""Scenario files (``simulations/*.toml``): what to simulate, checked before anything runs.

The format is in DESIGN.md and simulations/README.md.  Every table and key is known
here; an unknown one, or a value of the wrong type, is refused with the file and key
named, so a typo never silently runs the default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2p_prophet.errors import ProphetError


class ScenarioError(ProphetError):
    """A scenario file that cannot be run as written."""


_NUMBER = (int, float)
_RANGE = "range"  # [min, max] of numbers (or one number, meaning min = max)

# table -> key -> expected type
KEYS: dict[str, dict[str, Any]] = {
    "topology": {
        "kind": str,
        "n": int,
        "d": int,
        "p": _NUMBER,
        "k": int,
        "m": int,
        "offices": int,
        "size": int,
        "bridges": int,
        "rows": int,
        "cols": int,
        "path": str,
    },
    "network": {
        "loss": _NUMBER,
        "latency_ms": _RANGE,
        "bandwidth_kbps": _NUMBER,
        "clock_skew_ms": _NUMBER,
        "partitions": list,
        "bridge_loss": _NUMBER,
        "bridge_latency_ms": _RANGE,
        "bridge_bandwidth_kbps": _NUMBER,
    },
    "churn": {"asleep_fraction": _NUMBER, "mean_awake_s": _NUMBER, "mean_asleep_s": _NUMBER},
    "workload": {
        "writers": int,
        "edits_per_writer": int,
        "records": int,
        "hot_records": int,
        "conflict_rate": _NUMBER,
        "delete_rate": _NUMBER,
        "duration_s": _NUMBER,
    },
    "gossip": {
        "interval_s": _NUMBER,
        "fanout": int,
        "k": int,
        "mode": str,
        "protocol": str,
        "rumor_interval_s": _NUMBER,
        "max_concurrent": int,
        "backoff_cap_s": _NUMBER,
        "advertise_digests": bool,
    },
    "run": {"max_simulated_s": _NUMBER, "seeds": int, "plots": bool, "storage": str},
}
PARTITION_KEYS: dict[str, Any] = {
    "at_s": _NUMBER,
    "heal_s": _NUMBER,
    "fraction": _NUMBER,
    "nodes": list,
}
MODES = ("async", "rounds")
PROTOCOLS = ("push-pull", "push", "pull", "rumor")
STORAGES = ("auto", "disk", "memory")


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario: one dict per table, already checked against :data:`KEYS`."""

    seed: int = 1
    topology: dict[str, Any] = field(default_factory=lambda: {"kind": "complete", "n": 10})
    network: dict[str, Any] = field(default_factory=dict)
    churn: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    gossip: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    base: Path | None = None  # the file's directory, for a topology file's relative path

    def __post_init__(self) -> None:
        check(self, "scenario")

    @classmethod
    def load(cls, path: Path) -> Scenario:
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ScenarioError(f"{path}: {exc}") from None
        known = {"seed", *KEYS}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ScenarioError(
                f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        try:
            return cls(**doc, base=path.parent)
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: {exc}") from None
        except TypeError as exc:  # a table given as a plain value
            raise ScenarioError(f"{path}: {exc}") from None

    @property
    def mode(self) -> str:
        return str(self.gossip.get("mode", "async"))


def check(scenario: Scenario, where: str) -> None:
    if type(scenario.seed) is not int:
        raise ScenarioError("seed must be an integer")
    for table, keys in KEYS.items():
        values = getattr(scenario, table)
        if not isinstance(values, dict):
            raise ScenarioError(f"[{table}] must be a table")
        for key, value in values.items():
            if key not in keys:
                raise ScenarioError(
                    f"[{table}] has an unknown key {key!r} (known: {', '.join(keys)})"
                )
            _check_type(f"[{table}] {key}", value, keys[key])
    for i, part in enumerate(scenario.network.get("partitions", [])):
        name = f"[[network.partitions]] #{i + 1}"
        if not isinstance(part, dict):
            raise ScenarioError(f"{name} must be a table")
        for key, value in part.items():
            if key not in PARTITION_KEYS:
                raise ScenarioError(f"{name} has an unknown key {key!r}")
            _check_type(f"{name} {key}", value, PARTITION_KEYS[key])
        if "at_s" not in part:
            raise ScenarioError(f"{name} needs at_s (when the network splits)")
        if "heal_s" in part and part["heal_s"] <= part["at_s"]:
            raise ScenarioError(f"{name}: heal_s must come after at_s")
    if scenario.mode not in MODES:
        raise ScenarioError(
            f"[gossip] mode must be one of {', '.join(MODES)}, not {scenario.mode!r}"
        )
    protocol = scenario.gossip.get("protocol", "push-pull")
    if protocol not in PROTOCOLS:
        raise ScenarioError(f"[gossip] protocol must be one of {', '.join(PROTOCOLS)}")
    if scenario.run.get("storage", "auto") not in STORAGES:
        raise ScenarioError(f"[run] storage must be one of {', '.join(STORAGES)}")
    for table, key in (
        ("network", "loss"),
        ("network", "bridge_loss"),
        ("churn", "asleep_fraction"),
        ("workload", "conflict_rate"),
        ("workload", "delete_rate"),
    ):
        value = getattr(scenario, table).get(key, 0.0)
        if not 0 <= value < 1:
            raise ScenarioError(f"[{table}] {key} must be a fraction in [0, 1), not {value}")


def _check_type(name: str, value: Any, expected: Any) -> None:
    if expected == _RANGE:
        ok = _is_number(value) or (
            isinstance(value, list)
            and len(value) == 2
            and all(_is_number(v) for v in value)
            and 0 <= value[0] <= value[1]
        )
        if not ok:
            raise ScenarioError(f"{name} must be [min, max] (or one number), not {value!r}")
        return
    if expected is int:
        ok = type(value) is int
    elif expected == _NUMBER:
        ok = _is_number(value)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ScenarioError(f"{name} has the wrong type: {value!r}")


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def as_range(value: float | list[float], scale: float = 1.0) -> tuple[float, float]:
    """A ``[min, max]`` (or single number) setting, times ``scale``."""
    if isinstance(value, list):
        return value[0] * scale, value[1] * scale
    return value * scale, value * scale
