"""The network commands as a person runs them: `serve` in one process, `invite`,
`clone TOKEN`, `pull`, `push` and `sync` with https:// URLs in others (members only, over
TLS, as by default), and `--insecure` plain HTTP."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SCRIPT = str(Path(sys.executable).with_name("p2p-prophet"))


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "P2P_PROPHET_CREATOR": "tester@test"}
    result = subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}): {result.stderr}")
    return result


# Outside a network namespace of our own, mDNS stays off: it must never go out on the
# machine's real interfaces (tests/test_mdns.py runs it inside namespaces).
LOOPBACK_ONLY = ("--host", "127.0.0.1", "--port", "0", "--no-mdns")


class Server:
    def __init__(self, replica: Path, *options: str) -> None:
        self.process = subprocess.Popen(
            [SCRIPT, "-R", str(replica), "serve", *LOOPBACK_ONLY, *options],
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._pending = b""
        try:
            self.url = self._wait_for("serving replica").rsplit(" at ", 1)[1].strip()
        except BaseException:
            self.process.kill()  # a node that never said it serves is not left running
            self.process.wait()
            raise

    def _wait_for(self, needle: str, timeout: float = 20.0) -> str:
        """The first line of the node's stderr holding ``needle``.  Read from the pipe
        itself, not through a buffered reader: select() cannot see lines already taken
        into a reader's buffer (two lines written at once would hide the second)."""
        assert self.process.stderr is not None
        fd = self.process.stderr.fileno()
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._pending:
                raw, self._pending = self._pending.split(b"\n", 1)
                line = raw.decode() + "\n"
                self.lines.append(line)
                if needle in line:
                    return line
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(timeout=left):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._pending += chunk
        raise AssertionError(f"no {needle!r} from the node: {''.join(self.lines)}")

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=20)
        text = (self._pending + rest).decode()
        return self.process.returncode, "".join(self.lines) + text


@pytest.fixture
def alice_node(tmp_path: Path) -> Iterator[tuple[Path, Server]]:
    alice = tmp_path / "alice"
    cli("-R", str(alice), "init")
    cli("-R", str(alice), "create", "ticket", "summary=first")
    server = Server(alice)
    try:
        yield alice, server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def invite(replica: Path, server: Server) -> str:
    """A token from `p2p-prophet invite` on ``replica``, to join through ``server``."""
    made = cli("-R", str(replica), "invite", "--url", server.url)
    assert "valid until" in made.stderr
    return made.stdout.strip()


def test_bob_joins_with_an_invite_then_syncs_pulls_and_pushes_by_url(
    alice_node: tuple[Path, Server], tmp_path: Path
) -> None:
    alice, server = alice_node
    assert server.url.startswith("https://")
    bob = tmp_path / "bob"
    token = invite(alice, server)
    cloned = json.loads(cli("clone", token, str(bob), "--json").stdout)
    # Alice's founder record, her ticket and the invite's member record.
    assert cloned["changesets"]["integrated"] == 3
    # Bob is a member on both sides, the invite on neither; the token is spent.
    for replica in (alice, bob):
        listed = json.loads(cli("-R", str(replica), "members", "--json").stdout)["members"]
        assert sorted(m["name"] for m in listed) == ["tester@test", "tester@test"]
        assert all(m["expires"] is None for m in listed)
    again = cli("clone", token, str(tmp_path / "again"), check=False)
    assert again.returncode == 1 and "used or has expired" in again.stderr
    assert not (tmp_path / "again").exists()

    cli("-R", str(bob), "create", "ticket", "summary=from bob")
    synced = json.loads(cli("-R", str(bob), "sync", server.url, "--json").stdout)
    assert synced["pushed"]["changesets"]["integrated"] == 1
    cli("-R", str(alice), "create", "ticket", "summary=from alice")
    pulled = json.loads(cli("-R", str(bob), "pull", server.url, "--json").stdout)
    assert pulled["changesets"]["integrated"] == 1
    cli("-R", str(bob), "create", "ticket", "summary=bob again")
    pushed = cli("-R", str(bob), "push", server.url)
    assert "pushed 1 changesets" in pushed.stderr and pushed.stdout == ""
    digests = {cli("-R", str(r), "digest").stdout for r in (alice, bob)}
    assert len(digests) == 1

    code, log = server.stop()
    assert code == 0 and "stopped" in log
    assert "push with 127.0.0.1" in log  # one line per exchange


def test_network_failures_are_one_line_each(
    alice_node: tuple[Path, Server], tmp_path: Path
) -> None:
    _, server = alice_node
    stranger = tmp_path / "stranger"
    cli("-R", str(stranger), "init")
    refused = cli("-R", str(stranger), "pull", server.url, check=False)
    assert refused.returncode == 1 and "not a member" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    plain = tmp_path / "plain"
    cli("-R", str(plain), "init", "--insecure")
    no_id = cli("-R", str(plain), "pull", server.url, check=False)
    assert no_id.returncode == 1 and "has no identity" in no_id.stderr
    downgrade = cli("-R", str(stranger), "pull", server.url.replace("https", "http"), check=False)
    assert downgrade.returncode == 1 and "https:// only" in downgrade.stderr
    forced = cli("-R", str(stranger), "push", "--force", server.url, check=False)
    assert forced.returncode == 1 and "no --force over the network" in forced.stderr
    port = server.url.rsplit(":", 1)[1]
    taken = cli(
        "-R",
        str(stranger),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--no-mdns",
        check=False,
    )
    assert taken.returncode == 1 and "address already in use" in taken.stderr
    assert server.stop()[0] == 0
    gone = cli("-R", str(stranger), "pull", server.url, check=False)
    assert gone.returncode == 1
    assert "connection refused" in gone.stderr and len(gone.stderr.strip().splitlines()) == 1


def test_a_long_clone_shows_progress_on_a_terminal_only(
    alice_node: tuple[Path, Server], tmp_path: Path
) -> None:
    import pty

    alice, server = alice_node
    lines = "".join(f'{{"type": "ticket", "props": {{"n": {i}}}}}\n' for i in range(3000))
    (tmp_path / "bulk.jsonl").write_text(lines)
    cli("-R", str(alice), "import", str(tmp_path / "bulk.jsonl"))

    # On a terminal: the bar, with changesets and bytes (and a rate once it has one).
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [SCRIPT, "clone", invite(alice, server), str(tmp_path / "watched")],
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    ) as watched:
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closes with the process
                break
            if not chunk:
                break
            seen += chunk
        assert watched.wait(timeout=60) == 0
    os.close(leader)
    screen = seen.decode(errors="replace")
    # 3,000 imported, a ticket, the founder's and the invite's member records.
    assert "pulling" in screen and "3003/3003" in screen and "changesets" in screen
    assert "kB" in screen  # bytes so far

    # Not a terminal (a script, CI): only the report, and the new identity.
    quiet = cli("clone", invite(alice, server), str(tmp_path / "scripted"))
    report, identity = quiet.stderr.strip().splitlines()
    assert re.fullmatch(r"cloned 300\d changesets through the invite", report)
    assert re.fullmatch(r"this replica's identity: [0-9a-f]{64}", identity)


def test_two_served_replicas_keep_each_other_in_sync_by_themselves(
    alice_node: tuple[Path, Server], tmp_path: Path
) -> None:
    alice, alice_server = alice_node
    bob = tmp_path / "bob"
    cli("clone", invite(alice, alice_server), str(bob))
    # Bob's settings from his replica's config.toml; flags would override them.
    (bob / "config.toml").write_text(
        f'[node]\npeers = ["{alice_server.url}"]\n\n[gossip]\ninterval = 0.3\n'
    )
    bob_server = Server(bob)
    try:

        def holds(replica: Path, summary: str) -> bool:
            listed = json.loads(cli("-R", str(replica), "list", "ticket", "--json").stdout)
            return any(r["props"].get("summary") == summary for r in listed)

        def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
            deadline = time.monotonic() + timeout
            while not check():
                assert time.monotonic() < deadline, "the nodes did not converge in time"
                time.sleep(0.1)

        cli("-R", str(bob), "create", "ticket", "summary=told by bob")  # Bob's rumor
        eventually(lambda: holds(alice, "told by bob"))
        cli("-R", str(alice), "create", "ticket", "summary=found by bob")  # anti-entropy
        eventually(lambda: holds(bob, "found by bob"))
        digests = {cli("-R", str(r), "digest").stdout for r in (alice, bob)}
        assert len(digests) == 1

        eventually(
            lambda: (
                json.loads(cli("-R", str(bob), "peers", "--json").stdout)["peers"][0][
                    "last_exchange"
                ]
                is not None
            )
        )
        status = json.loads(cli("-R", str(bob), "peers", "--json").stdout)
        assert status["urls"] == [bob_server.url]
        [known] = status["peers"]
        assert (known["url"], known["source"]) == (alice_server.url, "given")
        # Bob gossips every 0.3 s, so the listing may catch him mid-exchange; what
        # must not show is a peer he is backing off from.
        assert known["state"] in ("idle", "exchanging")
        assert known["received"] >= 1 and known["sent"] >= 1
        assert alice_server.url in cli("-R", str(bob), "peers").stdout
    finally:
        code, log = bob_server.stop()
    assert code == 0 and "rumor with" in log
    gone = cli("-R", str(bob), "peers", check=False)  # the node stopped
    assert gone.returncode == 1 and "no node is running" in gone.stderr


# -- errors a person can act on (issue 15 §4) ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://256.1.1.1:7420", "is not an IPv4 address"),
        ("https://127.0.0.1:abc", "the port must be a number from 1 to 65535"),
        ("https://[zz]:1", "is not a URL"),
        ("https://127.0.0.1:99999", "the port must be a number from 1 to 65535"),
        ("https://127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("https://bad_host!:7420", "is not a host name"),
        ("https://127.0.0.1:7420/prophet", "nothing after them"),
        ("https://user@127.0.0.1:7420", "no user name"),
    ],
)
def test_a_malformed_url_is_refused_up_front_in_one_line(
    tmp_path: Path, url: str, says: str
) -> None:
    replica = tmp_path / "replica"
    cli("-R", str(replica), "init")
    for args in (("pull", url), ("sync", url), ("invite", "--url", url), ("clone", url, "x")):
        done = cli("-R", str(replica), *args, check=False)
        assert done.returncode == 1, (args, done.stderr)
        assert says in done.stderr and "tried" not in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "x").exists()


def test_https_to_something_that_is_not_a_node_says_so_and_is_not_retried(
    tmp_path: Path,
) -> None:
    import http.server
    import threading

    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        replica = tmp_path / "replica"
        cli("-R", str(replica), "init")
        url = f"https://127.0.0.1:{plain.server_address[1]}"
        done = cli("-R", str(replica), "pull", url, check=False)
    finally:
        plain.shutdown()
    assert done.returncode == 1
    assert "does not speak TLS" in done.stderr and "not a p2p-prophet node" in done.stderr
    assert "operation not permitted" not in done.stderr and "tried" not in done.stderr


def test_a_removed_member_is_told_so_by_the_node(
    alice_node: tuple[Path, Server], tmp_path: Path
) -> None:
    alice, server = alice_node
    bob = tmp_path / "bob"
    cli("clone", invite(alice, server), str(bob))
    bob_id = json.loads(cli("-R", str(bob), "members", "--json").stdout)
    [me] = [m["fingerprint"] for m in bob_id["members"] if m["this_replica"]]
    cli("-R", str(alice), "members", "remove", me)
    deadline = time.monotonic() + 20
    while True:  # the node follows the removal made by another process within moments
        done = cli("-R", str(bob), "pull", server.url, check=False)
        if done.returncode != 0 or time.monotonic() > deadline:
            break
    assert done.returncode == 1
    assert "no longer takes your replica's identity" in done.stderr, done.stderr
    assert "removed" in done.stderr and "tried" not in done.stderr
    # A node started after the removal tells it just the same.
    assert server.stop()[0] == 0
    again = Server(alice)
    try:
        told = cli("-R", str(bob), "pull", again.url, check=False)
    finally:
        again.stop()
    assert told.returncode == 1 and "no longer takes your replica's identity" in told.stderr


async def test_a_node_killed_in_the_middle_of_a_sync_is_a_network_failure_not_a_refusal(
    tmp_path: Path,
) -> None:
    from p2p_prophet.errors import ProphetError
    from p2p_prophet.net.client import NotAccepted, Peer, Progress, new_http_client
    from p2p_prophet.net.worker import ReplicaWorker
    from p2p_prophet.security.membership import trusted_peers
    from p2p_prophet.security.tls import client_context
    from p2p_prophet.store import Replica

    alice, bob = tmp_path / "alice", tmp_path / "bob"
    cli("-R", str(alice), "init")
    cli("clone", str(alice), str(bob))  # by path: Bob is a member
    lines = "".join(json.dumps({"type": "ticket", "props": {"n": i}}) + "\n" for i in range(20_000))
    subprocess.run(
        [SCRIPT, "-R", str(alice), "import", "-"], input=lines, text=True, check=True, timeout=120
    )
    server = Server(alice)
    killed = False

    def kill_at_first_batch(progress: Progress) -> None:
        nonlocal killed
        if progress.done and not killed:
            server.process.kill()  # kill -9, in the middle of the stream
            killed = True

    try:
        with Replica.open(bob) as replica:
            assert replica.identity is not None
            tls = client_context(replica.identity, trusted_peers(replica))
            async with new_http_client(tls=tls) as http:
                peer = Peer(
                    server.url,
                    ReplicaWorker(replica),
                    http=http,
                    batch_size=100,
                    backoff=0.05,
                    progress=kill_at_first_batch,
                )
                with pytest.raises(ProphetError) as failure:
                    await peer.pull()
    finally:
        server.process.kill()
        server.process.wait()
    assert killed
    assert not isinstance(failure.value, NotAccepted), failure.value
    assert "does not accept" not in str(failure.value)
    assert "stopped in the middle" in str(failure.value) or "connection refused" in str(
        failure.value
    )
