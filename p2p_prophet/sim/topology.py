"""Topologies: the graph of who can gossip with whom (networkx; nodes ``0..n-1``).

Gossip picks peers only along edges.  An edge may carry its own link model as attributes
(``latency_ms`` as ``[min, max]`` or one number, ``loss``, ``bandwidth_kbps``), read from
a GraphML file or set by a generator: the "offices" generator marks its bridge links
``bridge = True`` so that a scenario can give them a slower network.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx

from p2p_prophet.errors import ProphetError


class TopologyError(ProphetError):
    """A ``[topology]`` table that does not describe a usable graph."""


def offices_graph(offices: int, size: int, bridges: int, seed: int) -> nx.Graph:
    """``offices`` complete clusters of ``size`` peers (an office LAN each), joined in a
    ring of offices by ``bridges`` random links between each office and the next (a VPN,
    a laptop that visits both).  Bridge links carry ``bridge=True``."""
    if offices < 1 or size < 1 or bridges < 1:
        raise TopologyError("offices, their size and bridges must all be at least 1")
    rng = random.Random(seed)
    graph = nx.Graph()
    members = [list(range(o * size, (o + 1) * size)) for o in range(offices)]
    for office in members:
        graph.add_nodes_from(office)
        graph.add_edges_from((a, b) for i, a in enumerate(office) for b in office[i + 1 :])
    if offices > 1:
        pairs = [(o, (o + 1) % offices) for o in range(offices if offices > 2 else 1)]
        for a, b in pairs:
            for _ in range(bridges):
                graph.add_edge(rng.choice(members[a]), rng.choice(members[b]), bridge=True)
    return graph


def read_graph_file(path: Path) -> nx.Graph:
    """A graph from GraphML (``.graphml``) or an edge list (one ``a b`` pair per line,
    ``#`` comments), relabelled ``0..n-1`` in sorted order of the file's node names."""
    try:
        if path.suffix.lower() == ".graphml":
            graph = nx.read_graphml(path)
        else:
            graph = nx.read_edgelist(path, comments="#", nodetype=str, data=False)
    except FileNotFoundError:
        raise TopologyError(f"topology file {path} does not exist") from None
    except Exception as exc:  # networkx and the XML parser raise many kinds
        raise TopologyError(f"cannot read topology file {path}: {exc}") from None
    graph = nx.Graph(graph)  # a directed or multi graph becomes a plain undirected one
    return nx.convert_node_labels_to_integers(graph, ordering="sorted")


def build_topology(spec: dict[str, Any], seed: int, base: Path | None = None) -> nx.Graph:
    """The graph of a ``[topology]`` table (nodes ``0..n-1``).  ``base`` is where a
    relative ``path`` is looked up (the scenario file's directory)."""
    kind = spec.get("kind", "complete")
    n = int(spec.get("n", 10))
    builders: dict[str, Callable[[], nx.Graph]] = {
        "complete": lambda: nx.complete_graph(n),
        "ring": lambda: nx.cycle_graph(n),
        "line": lambda: nx.path_graph(n),
        "star": lambda: nx.star_graph(n - 1),
        "grid": lambda: nx.grid_2d_graph(*_grid_shape(spec, n)),
        "random_regular": lambda: nx.random_regular_graph(int(spec.get("d", 3)), n, seed=seed),
        "erdos_renyi": lambda: nx.erdos_renyi_graph(n, float(spec.get("p", 0.1)), seed=seed),
        "watts_strogatz": lambda: nx.connected_watts_strogatz_graph(
            n, int(spec.get("k", 4)), float(spec.get("p", 0.1)), seed=seed
        ),
        "barabasi_albert": lambda: nx.barabasi_albert_graph(n, int(spec.get("m", 2)), seed=seed),
        "offices": lambda: offices_graph(
            int(spec.get("offices", 4)),
            int(spec.get("size", max(1, n // int(spec.get("offices", 4))))),
            int(spec.get("bridges", 1)),
            seed,
        ),
        "file": lambda: read_graph_file(_file_path(spec, base)),
    }
    if kind not in builders:
        raise TopologyError(f"unknown topology kind {kind!r} ({', '.join(builders)})")
    if kind not in ("file", "offices", "grid") and n < 2:
        raise TopologyError(f"a {kind} topology needs n >= 2 peers, not {n}")
    try:
        graph = builders[kind]()
    except nx.NetworkXError as exc:
        raise TopologyError(f"cannot build a {kind} graph: {exc}") from None
    if graph.number_of_nodes() < 2:
        raise TopologyError(f"the {kind} topology has fewer than 2 peers")
    return nx.convert_node_labels_to_integers(graph, ordering="sorted")


def _grid_shape(spec: dict[str, Any], n: int) -> tuple[int, int]:
    rows = int(spec.get("rows", 0)) or max(1, round(n**0.5))
    cols = int(spec.get("cols", 0)) or max(1, -(-n // rows))
    return rows, cols


def _file_path(spec: dict[str, Any], base: Path | None) -> Path:
    if "path" not in spec:
        raise TopologyError('a "file" topology needs path = "edges.txt" or "graph.graphml"')
    path = Path(str(spec["path"])).expanduser()
    return path if path.is_absolute() or base is None else base / path
