"""PNG plots of a run (matplotlib, headless): the epidemic curve, bytes per peer, and the
topology for graphs small enough to draw legibly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

TOPOLOGY_MAX_PEERS = 200  # beyond this a drawing is a hairball


def write_plots(
    out: Path, report: dict[str, Any], graph: nx.Graph, bytes_by_peer: list[int]
) -> list[Path]:
    """Write the plots for ``report`` into ``out``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    written = []
    if report.get("mode") == "rounds":
        fig, ax = plt.subplots(figsize=(7, 4))
        curve = report["epidemic"]
        ax.plot(curve["round"], curve["fraction"], marker="o")
        ax.set_xlabel("round")
        ax.set_ylabel("fraction of peers informed (mean over seeds)")
        ax.set_title(f"{report['protocol']}, n = {report['peers']}, {report['seeds']} seeds")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / "epidemic.png"))
        plt.close(fig)
        return written

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    curve = report["epidemic"]
    left.plot(curve["age_s"], curve["fraction"])
    left.set_xlabel("seconds since the update was made")
    left.set_ylabel("fraction of peers holding it")
    left.set_title("epidemic curve (mean over sampled updates)")
    left.set_ylim(0, 1.02)
    left.grid(alpha=0.3)
    coverage = report["coverage"]
    right.plot(coverage["t_s"], coverage["fraction"], color="tab:green")
    right.set_xlabel("simulated seconds")
    right.set_ylabel("fraction of (peer, update) pairs held")
    right.set_title("coverage over the run")
    right.set_ylim(0, 1.02)
    right.grid(alpha=0.3)
    written.append(_save(fig, out / "epidemic.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([b / 1024 for b in bytes_by_peer], bins=min(50, max(5, len(bytes_by_peer) // 4)))
    ax.set_xlabel("KiB sent and received per peer")
    ax.set_ylabel("peers")
    ax.set_title(f"bytes per peer (mean {report['bytes_per_peer'] / 1024:.1f} KiB)")
    written.append(_save(fig, out / "bytes_per_peer.png"))
    plt.close(fig)

    if graph.number_of_nodes() <= TOPOLOGY_MAX_PEERS:
        fig, ax = plt.subplots(figsize=(7, 7))
        layout = nx.spring_layout(graph, seed=report["seed"])
        bridges = [(a, b) for a, b, d in graph.edges(data=True) if d.get("bridge")]
        nx.draw_networkx_edges(graph, layout, ax=ax, alpha=0.3)
        nx.draw_networkx_edges(graph, layout, edgelist=bridges, ax=ax, edge_color="tab:red")
        kib = [b / 1024 for b in bytes_by_peer]
        nodes = nx.draw_networkx_nodes(
            graph, layout, ax=ax, node_size=60, node_color=kib, cmap="viridis"
        )
        fig.colorbar(nodes, ax=ax, label="KiB per peer")
        ax.set_title(f"topology: {report['peers']} peers, {report['edges']} links")
        ax.axis("off")
        written.append(_save(fig, out / "topology.png"))
        plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
