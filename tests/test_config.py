"""The node's config.toml: defaults, what the file sets, what flags override, and clear
refusals of what it cannot mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2p_prophet.config import ConfigError, NodeConfig, load, override


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "config.toml").write_text(text)
    return tmp_path


def test_no_file_means_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path) == NodeConfig()


def test_the_file_sets_node_and_gossip(tmp_path: Path) -> None:
    config = load(
        write(
            tmp_path,
            '[node]\nport = 7500\nname = "lab"\nmdns = false\npeers = ["http://192.0.2.1:7420"]\n'
            "[gossip]\ninterval = 2\nfanout = 3\n",
        )
    )
    assert (config.port, config.name, config.mdns) == (7500, "lab", False)
    assert config.peers == ("http://192.0.2.1:7420",)
    assert (config.gossip.interval, config.gossip.fanout, config.gossip.k) == (2.0, 3, 2)


def test_flags_win_and_peers_add_up(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[node]\npeers = ["http://a:1"]\n[gossip]\nk = 3\n'))
    merged = override(config, port=0, peers=("http://b:2",), k=None, interval=1.5, host=None)
    assert merged.port == 0 and merged.host == "0.0.0.0"
    assert merged.peers == ("http://a:1", "http://b:2")
    assert (merged.gossip.k, merged.gossip.interval) == (3, 1.5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[node\n", "not valid TOML"),
        ("[nodes]\n", "unknown section 'nodes'"),
        ("[node]\nprot = 1\n", "unknown key node.prot"),
        ('[node]\nport = "7420"\n', "node.port must be int, not str"),
        ("[gossip]\nfanout = 0\n", "fanout"),
        ("[node]\npeers = [1]\n", "list of strings"),
    ],
)
def test_a_bad_file_is_refused_with_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load(write(tmp_path, text))
    assert "config.toml" in str(err.value)


def test_the_mdns_flag_can_turn_discovery_back_on_over_the_file(tmp_path: Path) -> None:
    config = load(write(tmp_path, "[node]\nmdns = false\n"))
    assert override(config, mdns=None).mdns is False
    assert override(config, mdns=True).mdns is True


def test_the_clocks_maximum_offset_is_one_day_unless_the_file_says(tmp_path: Path) -> None:
    assert load(tmp_path).sync.max_offset_ms == 86_400_000
    assert load(write(tmp_path, "[sync]\nmax_clock_offset = 600\n")).sync.max_offset_ms == 600_000
    with pytest.raises(ConfigError, match="max_clock_offset must be more than 0"):
        load(write(tmp_path, "[sync]\nmax_clock_offset = -1\n"))
