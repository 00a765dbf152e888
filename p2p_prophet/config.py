"""The node's configuration: ``config.toml`` in the replica directory, then flags.

Every key is optional; a flag given to ``serve`` overrides the file.  Unknown keys and
wrong types are refused with the file and key named, so a typo never goes unnoticed::

    [node]
    host = "0.0.0.0"              # address to listen on
    port = 7420
    name = "alice-laptop"         # advertised over mDNS (default: the host name)
    mdns = true                   # advertise and discover over mDNS
    mdns_interfaces = []          # addresses of the interfaces for mDNS (default: all)
    peers = ["https://192.0.2.7:7420"]   # nodes to gossip with, besides those discovered

    [gossip]
    interval = 5.0                # seconds between anti-entropy exchanges
    jitter = 0.25                 # fraction of the interval each gap varies by
    fanout = 2                    # peers told at once about news
    k = 2                         # lose interest in a rumor with probability 1/k
    rumor_interval = 0.1
    max_concurrent = 4
    backoff_base = 1.0            # first wait after a failed exchange, doubling...
    backoff_cap = 300.0           # ...up to this

    [sync]
    max_clock_offset = 86400.0    # seconds a changeset's stamp may run ahead of our clock

    [foreign]                     # foreign replicas this one is the gateway of
    record_type = "ticket"        # the type their items become here
    read_only = ["fossil:/srv/upstream.fossil"]   # pull only; a push is refused
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from p2p_prophet.clock import DEFAULT_MAX_OFFSET_MS
from p2p_prophet.errors import ProphetError
from p2p_prophet.gossip import GossipConfig

CONFIG_FILE = "config.toml"
DEFAULT_PORT = 7420


class ConfigError(ProphetError):
    """The configuration file cannot be used as it is."""


@dataclass(frozen=True)
class ForeignConfig:
    record_type: str = "ticket"
    read_only: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncConfig:
    # How far ahead of this replica's wall clock an integrated stamp may be (clock.py,
    # Bounds); beyond it a batch is refused until the clock catches up.
    max_clock_offset: float = DEFAULT_MAX_OFFSET_MS / 1000

    def __post_init__(self) -> None:
        if not 0 < self.max_clock_offset <= 10 * 365 * 86400:
            raise ValueError("sync.max_clock_offset must be more than 0 and at most 10 years")

    @property
    def max_offset_ms(self) -> int:
        return int(self.max_clock_offset * 1000)


@dataclass(frozen=True)
class NodeConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    name: str | None = None
    mdns: bool = True
    mdns_interfaces: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    gossip: GossipConfig = field(default_factory=GossipConfig)
    foreign: ForeignConfig = field(default_factory=ForeignConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)


_NODE_TYPES: dict[str, Any] = {
    "host": str,
    "port": int,
    "name": str,
    "mdns": bool,
    "mdns_interfaces": list,
    "peers": list,
}


def load(replica: Path) -> NodeConfig:
    """The configuration in ``replica/config.toml`` (the defaults if there is none).
    Raises :class:`ConfigError` naming the file and the key at fault."""
    path = Path(replica) / CONFIG_FILE
    if not path.exists():
        return NodeConfig()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(doc) - {"node", "gossip", "foreign", "sync"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown section {sorted(unknown)[0]!r} (node, gossip, foreign, sync)"
        )
    node = _section(path, doc, "node", _NODE_TYPES)
    gossip_types = {f.name: type(getattr(GossipConfig(), f.name)) for f in fields(GossipConfig)}
    gossip = _section(path, doc, "gossip", gossip_types)
    for key in ("mdns_interfaces", "peers"):
        _strings(path, node, "node", key)
    foreign = _section(path, doc, "foreign", {"record_type": str, "read_only": list})
    _strings(path, foreign, "foreign", "read_only")
    sync = _section(path, doc, "sync", {"max_clock_offset": float})
    try:
        return NodeConfig(
            **node,
            gossip=GossipConfig(**gossip),
            foreign=ForeignConfig(**foreign),
            sync=SyncConfig(**sync),
        )
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _strings(path: Path, section: dict[str, Any], name: str, key: str) -> None:
    """Check that ``section[key]``, if there, is a list of strings; make it a tuple."""
    if key in section:
        if not all(isinstance(v, str) for v in section[key]):
            raise ConfigError(f"{path}: {name}.{key} must be a list of strings")
        section[key] = tuple(section[key])


def _section(path: Path, doc: dict[str, Any], name: str, types: dict[str, Any]) -> dict[str, Any]:
    section = doc.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: {name} must be a table ([{name}])")
    out = {}
    for key, value in section.items():
        if key not in types:
            raise ConfigError(f"{path}: unknown key {name}.{key} (known: {', '.join(types)})")
        expected = types[key]
        if expected is float and type(value) is int:
            value = float(value)  # `interval = 5` means 5.0
        if type(value) is not expected:
            raise ConfigError(
                f"{path}: {name}.{key} must be {expected.__name__}, not {type(value).__name__}"
            )
        out[key] = value
    return out


def override(config: NodeConfig, **flags: Any) -> NodeConfig:
    """``config`` with the flags that were given (None: not given) put over it; gossip
    settings by their GossipConfig names, peers added to the file's."""
    gossip_names = {f.name for f in fields(GossipConfig)}
    node = {k: v for k, v in flags.items() if v is not None and k not in gossip_names}
    gossip = {k: v for k, v in flags.items() if v is not None and k in gossip_names}
    if "peers" in node:
        node["peers"] = tuple(dict.fromkeys((*config.peers, *node["peers"])))
    if "mdns_interfaces" in node and not node["mdns_interfaces"]:
        del node["mdns_interfaces"]
    return replace(config, **node, gossip=replace(config.gossip, **gossip))
