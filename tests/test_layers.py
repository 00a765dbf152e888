"""The packages' layers: each imports only from the layers below it (docs/architecture.md).

Read from the source with :mod:`ast`, every import counted, those under
``if TYPE_CHECKING:`` and inside functions too: an import that would go upward is a
design error even where Python would let it pass.  A package not in the table fails
too, so that a new one is placed on purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import p2p_prophet

# Bottom first.  A package imports from strictly lower rows, and from itself.
LAYERS: list[set[str]] = [
    {"p2p_prophet", "errors"},  # the version; the error taxonomy
    {"clock", "url", "model", "gossip", "keys"},  # plain values and rules; sans-IO gossip
    {"wire", "config", "conflict"},  # the wire format; settings; conflicts of writes
    {"store"},  # SQLite, and nothing else does SQL
    {"sync"},  # the exchange: caller and callee, integration, conflicts
    {"security", "foreign"},  # membership, invites, TLS; gateways to foreign replicas
    {"net"},  # the trio/HTTP adapters: node, server, client, mDNS
    {"progress", "sim", "operations"},  # progress bars; the simulator; the porcelain
    {"cli"},
    {"__main__"},
]
ROOT = Path(p2p_prophet.__file__).parent


def level_of(package: str, layers: list[set[str]] = LAYERS) -> int:
    for level, row in enumerate(layers):
        if package in row:
            return level
    raise AssertionError(f"{package} is in no layer of tests/test_layers.py: place it")


def package_of(module: str) -> str:
    """``p2p_prophet.net.client`` -> ``net``; ``p2p_prophet`` -> ``p2p_prophet``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports(root: Path, top: str = "p2p_prophet") -> Iterator[tuple[str, str, int]]:
    """(importing module's package, imported package, line) for every import of ``top``
    in the source under ``root``."""
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        source = package_of(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == top:  # submodules, or values of the package itself
                    names = [
                        f"{top}.{a.name}" if _is_module(root / a.name) else top for a in node.names
                    ]
                else:
                    names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name == top or name.startswith(top + "."):
                    yield source, package_of(name), node.lineno


def upward_imports(root: Path, layers: list[set[str]] = LAYERS) -> list[str]:
    return sorted(
        {
            f"{source} (layer {level_of(source, layers)}) imports {target} "
            f"(layer {level_of(target, layers)})"
            for source, target, _ in imports(root)
            if target != source and level_of(target, layers) >= level_of(source, layers)
        }
    )


def _is_module(path: Path) -> bool:
    return (path / "__init__.py").exists() or path.with_suffix(".py").exists()


def test_every_import_goes_down_the_layers() -> None:
    assert upward_imports(ROOT) == []


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    for name in packages | modules:
        level_of(name)


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    fake = tmp_path / "p2p_prophet"
    for package, source in (
        ("store", "from p2p_prophet.errors import ProphetError\n"),
        ("errors", ""),
        # The store importing the network, under TYPE_CHECKING where Python allows it.
        (
            "store/replica",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from p2p_prophet.net import Peer\n",
        ),
        ("net", "from p2p_prophet import store\n"),
    ):
        path = fake / package / "__init__.py" if "/" not in package else fake / f"{package}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    (fake / "__init__.py").write_text("")
    assert upward_imports(fake) == ["store (layer 3) imports net (layer 6)"]


def sql_outside_the_store(root: Path) -> list[str]:
    """Where code outside ``store/`` reaches a SQLite connection (``.conn``) or runs SQL
    (``.execute``, ``.executemany``, ``.executescript``)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in {
                "conn",
                "execute",
                "executemany",
                "executescript",
            }:
                found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    return found


def test_all_sql_is_in_the_store() -> None:
    assert sql_outside_the_store(ROOT) == []


# What the CLI may use: the operations, and what it needs to parse and format.
CLI_MAY_IMPORT = {"p2p_prophet", "operations", "model", "errors", "config", "clock", "url"}
CLI_MAY_IMPORT |= {"progress", "sim"}  # progress bars; the simulator's own command


def test_the_cli_reaches_replicas_only_through_the_operations() -> None:
    used = {target for source, target, _ in imports(ROOT) if source == "cli"}
    assert used - CLI_MAY_IMPORT == set()
