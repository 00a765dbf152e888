"""What a person does with replicas, as plain functions: the porcelain under the CLI.

``init``, ``clone``, ``pull``, ``push``, ``sync``, ``check`` and the invite's addresses
take replicas, paths and location strings and return results; they print nothing and
parse nothing (``cli.py`` does both).  A location is one of:

* a replica path: :class:`~p2p_prophet.sync.LocalRemote`;
* a node's ``http://`` or ``https://`` URL: :class:`~p2p_prophet.net.Peer`;
* a foreign replica (``taskwarrior:PATH``, ``fossil:PATH``): its gateway
  (:mod:`p2p_prophet.foreign`), whose results are counted in foreign items;
* for ``clone`` only, an invite token.

:func:`open_remote` is the one place that turns a native location into a remote; every
exchange then runs :mod:`p2p_prophet.sync.exchange`.  Errors are those of
:mod:`p2p_prophet.errors`; each function says which it raises.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

from p2p_prophet.config import NodeConfig
from p2p_prophet.config import load as load_config
from p2p_prophet.errors import AlreadyExists, InvalidValue, ProphetError
from p2p_prophet.foreign import Adapter, ForeignResult, foreign_adapter, is_foreign
from p2p_prophet.foreign import clone as foreign_clone
from p2p_prophet.foreign import pull as foreign_pull
from p2p_prophet.foreign import push as foreign_push
from p2p_prophet.keys.identity import Identity
from p2p_prophet.model import Value
from p2p_prophet.net.client import Peer, Progress, clone_with_invite, new_http_client
from p2p_prophet.net.client import clone as node_clone
from p2p_prophet.net.listener import ConnectionLimits, limits_for, raise_open_file_limit
from p2p_prophet.net.mdns import advertised_addresses
from p2p_prophet.net.node import Node, read_status
from p2p_prophet.net.worker import ReplicaWorker
from p2p_prophet.security import membership
from p2p_prophet.security.invite import DEFAULT_LIFETIME, TOKEN_PREFIX, Invite, create_invite
from p2p_prophet.security.tls import client_context
from p2p_prophet.store import Replica, is_replica
from p2p_prophet.store.check import Report as CheckReport
from p2p_prophet.store.check import check as check_replica
from p2p_prophet.store.database import is_corruption, mark_damaged
from p2p_prophet.store.replica import check_free, default_creator
from p2p_prophet.sync import Caller, LocalRemote, Remote, SyncResult, TransferResult, exchange
from p2p_prophet.sync import clone as path_clone
from p2p_prophet.sync.forks import explain as explain_fork
from p2p_prophet.sync.human import conflict_record, list_conflicts, resolve_conflict
from p2p_prophet.sync.local import run_now
from p2p_prophet.url import BadURL, NodeURL, check_node_url

T = TypeVar("T")
OnProgress = Callable[[Progress], None]

NO_MEMBERS = (
    "has no identity: its database has no members (made with `init --insecure`, or cloned "
    "from such a replica)"
)

# The replicas this process opened: where to point when SQLite reports damage.
opened: list[Path] = []


# -- replicas -------------------------------------------------------------------------------


def open_replica(path: Path) -> Replica:
    """The replica at ``path``, with the settings of its config.toml that bear on
    integration (the clock's maximum offset).  Raises :class:`ReplicaNotFound`,
    :class:`NotAReplica`, :class:`ConfigError`."""
    opened.append(Path(path))
    replica = Replica.open(path)
    try:
        replica.clock.max_offset_ms = load_config(path).sync.max_offset_ms
    except BaseException:
        replica.close()
        raise
    return replica


def init(
    path: Path, *, insecure: bool = False, name: str | None = None, db_uuid: str | None = None
) -> Replica:
    """A new replica at ``path``: with an identity, the first member of a new database
    (or of ``db_uuid``), or with ``insecure`` no identity and no members.  Raises
    :class:`AlreadyExists`."""
    if insecure:
        return Replica.init(path, db_uuid=db_uuid)
    identity = Identity.generate()
    founder = name or default_creator()

    def found(new: Replica) -> None:
        membership.add_member(new, identity.certificate_pem, name=founder)

    return Replica.init(path, db_uuid=db_uuid, identity=identity, prepare=found)


# -- locations and remotes ------------------------------------------------------------------


def is_url(location: str) -> bool:
    """Whether ``location`` is a node's URL (rather than a path or a foreign replica);
    raises :class:`BadURL` if it looks like one but is malformed."""
    if not location.startswith(("http://", "https://")):
        return False
    check_node_url(location)
    return True


@asynccontextmanager
async def open_remote(
    replica: Replica, location: str, *, progress: OnProgress | None = None
) -> AsyncIterator[Remote]:
    """The remote at ``location`` (a replica path or a node's URL), as ``replica`` reaches
    it; closed on leaving.  A node's needs a trio loop, a path's none (see :func:`run`).
    Raises :class:`InvalidValue` for a URL of another scheme or one that does not fit
    the replica (:func:`client_tls`), :class:`BadURL`, :class:`ReplicaNotFound`."""
    if is_url(location):
        tls = client_tls(replica, location)
        async with new_http_client(tls=tls) as http:
            yield Peer(location, ReplicaWorker(replica), progress=progress, http=http)
        return
    if "://" in location:
        raise InvalidValue(
            f"{location}: only http:// and https:// URLs name a node, taskwarrior:PATH and "
            "fossil:PATH a foreign replica; anything else is a replica path"
        )
    with open_replica(Path(location)) as other:
        yield LocalRemote(other)


def run(location: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main``, an operation on the remote at ``location``: a node's in a trio loop,
    a path's at once (it never waits)."""
    return trio.run(main) if is_url(location) else run_now(main())


def client_tls(replica: Replica, url: str) -> ssl.SSLContext | None:
    """The TLS context to reach ``url`` with from ``replica``: pinned to its members.

    A member's replica never talks plain HTTP: its changesets must not cross the network
    unencrypted, and what a plain node would send back is unsigned, which it refuses.
    Raises :class:`InvalidValue` for a URL that does not fit the replica."""
    if not url.startswith("https://"):
        if replica.identity is not None:
            raise InvalidValue(
                f"{url} is plain HTTP, and this replica belongs to a database with members, "
                "whose nodes speak https:// only: use https://" + url.split("://", 1)[-1]
            )
        return None
    if replica.identity is None:
        raise InvalidValue(
            f"{replica.path} has no identity: its database has no members (made with "
            "`init --insecure`, or cloned from such a replica), so it cannot "
            f"reach {url}: https:// nodes take members only. Use the http:// URL of a node "
            "served with --insecure"
        )
    return client_context(replica.identity, membership.trusted_peers(replica))


def open_foreign(replica_dir: Path | None, location: str) -> Adapter:
    """The adapter for a foreign location, with the [foreign] settings of the gateway
    replica's config.toml (none yet when cloning)."""
    settings = load_config(replica_dir).foreign if replica_dir is not None else None
    if settings is None:
        return foreign_adapter(location)
    return foreign_adapter(
        location,
        record_type=settings.record_type,
        read_only=settings.read_only,
        base=replica_dir,
    )


def _no_force_over_network(command: str, force: bool) -> None:
    if force:
        raise InvalidValue(
            f"a node never takes changesets from another database, so {command} has no "
            "--force over the network; `pull --force URL` takes theirs, and their owner "
            "can pull from this replica with --force"
        )


def _no_force_foreign(command: str, force: bool) -> None:
    if force:
        raise InvalidValue(
            f"--force merges two native databases; a foreign replica has no database id, "
            f"so {command} takes no --force with one"
        )


# -- pull, push, sync -----------------------------------------------------------------------


@dataclass
class ForeignSync:
    """What a sync with a foreign replica did (``pushed`` None: it is read-only)."""

    pulled: ForeignResult
    pushed: ForeignResult | None


def pull(
    replica: Replica, source: str, *, force: bool = False, progress: OnProgress | None = None
) -> TransferResult | ForeignResult:
    """Integrate what ``source`` has that ``replica`` lacks (``force``: even from another
    database).  Raises :class:`Refused`, :class:`NetworkError`, :class:`ForeignError`
    and the errors of :func:`open_remote`."""
    if is_foreign(source):
        _no_force_foreign("pull", force)
        return foreign_pull(replica, open_foreign(replica.path, source))

    async def main() -> TransferResult:
        async with open_remote(replica, source, progress=progress) as remote:
            return await exchange.pull(remote, Caller(replica, remote.where, force=force))

    return run(source, main)


def push(
    replica: Replica, target: str, *, force: bool = False, progress: OnProgress | None = None
) -> TransferResult | ForeignResult:
    """Give ``target`` what ``replica`` has that it lacks (the counts are ``target``'s).
    Raises as :func:`pull` does; ``force`` over the network is :class:`InvalidValue`."""
    if is_foreign(target):
        _no_force_foreign("push", force)
        return foreign_push(replica, open_foreign(replica.path, target))
    if is_url(target):
        _no_force_over_network("push", force)

    async def main() -> TransferResult:
        async with open_remote(replica, target, progress=progress) as remote:
            caller = Caller(replica, remote.where, force=force)
            await remote.push_from(caller)
            return caller.pushed

    return run(target, main)


def sync(
    replica: Replica, peer: str, *, force: bool = False, progress: OnProgress | None = None
) -> SyncResult | ForeignSync:
    """Pull from ``peer``, then push to it (:func:`p2p_prophet.sync.exchange.sync`): then
    both hold the same changesets.  A read-only foreign replica is only pulled from.
    Raises as :func:`push` does."""
    if is_foreign(peer):
        _no_force_foreign("sync", force)
        adapter = open_foreign(replica.path, peer)
        got = foreign_pull(replica, adapter)
        return ForeignSync(got, None if adapter.read_only else foreign_push(replica, adapter))
    if is_url(peer):
        _no_force_over_network("sync", force)

    async def main() -> SyncResult:
        async with open_remote(replica, peer, progress=progress) as remote:
            return await exchange.sync(remote, Caller(replica, remote.where, force=force))

    return run(peer, main)


# -- clone ----------------------------------------------------------------------------------


@dataclass
class Cloned:
    """A new replica, and what its clone moved (foreign items for a foreign source)."""

    replica: Replica
    result: TransferResult | ForeignResult


def clone(
    source: str, path: Path, *, name: str | None = None, progress: OnProgress | None = None
) -> Cloned:
    """A new replica at ``path`` holding everything ``source`` has.

    ``source`` is a replica path, a node's URL, a foreign replica (then ``path`` is a new
    database with the new replica as its gateway and first member), or an invite token
    (then ``path`` joins the database as a new member, named ``name``).  A member's
    replica given by path is cloned as a new member too.  Raises
    :class:`AlreadyExists` (the message says how to finish an interrupted clone),
    :class:`InvalidInvite`, :class:`NotAccepted`, :class:`Refused`,
    :class:`NetworkError`; a clone interrupted after the replica was made raises a
    :class:`ProphetError` saying what it kept and how to finish.
    """
    free_destination(path, source)
    if source.startswith(TOKEN_PREFIX):
        invite = Invite.decode(source)
        replica, result = trio.run(
            lambda: clone_with_invite(
                invite, path, name=name or default_creator(), progress=progress
            )
        )
        return Cloned(replica, result)
    if is_foreign(source):
        # The gateway's replica is a new database, with the gateway as its first member.
        foreign_replica, pulled = foreign_clone(
            open_foreign(None, source), path, create=lambda where: init(where, name=name)
        )
        return Cloned(foreign_replica, pulled)
    try:
        if is_url(source):
            replica, result = trio.run(_clone_from_node, source, path, progress)
        else:
            with open_replica(Path(source)) as origin:
                replica, result = _clone_path(origin, path, name)
    except ProphetError as exc:
        if not is_replica(path):
            raise
        raise unfinished_clone(exc, path, source) from None
    return Cloned(replica, result)


def _clone_path(
    source: Replica, path: Path, name: str | None = None
) -> tuple[Replica, TransferResult]:
    """Clone the replica at a path.  A member's replica is cloned as a new member: the
    clone gets an identity of its own, which the source adds to the membership first
    (whoever can read the source's files holds its key, and so may add members)."""
    identity = source.identity
    if identity is None:
        return path_clone(source, path)
    check_free(path)
    me = Identity.generate()
    membership.add_member(
        source, me.certificate_pem, name=name or default_creator(), added_by=identity.fingerprint
    )
    return path_clone(source, path, identity=me)


async def _clone_from_node(
    url: str, path: Path, progress: OnProgress | None
) -> tuple[Replica, TransferResult]:
    if url.startswith("https://"):
        raise InvalidValue(
            f"{url} takes members only. To join its database, ask a member for an invite "
            "(`p2p-prophet invite` on their laptop) and run `p2p-prophet clone TOKEN PATH`"
        )
    async with new_http_client() as http:
        return await node_clone(url, path, http=http, progress=progress)


def free_destination(path: Path, source: str) -> None:
    """Raise :class:`AlreadyExists` unless ``path`` can take a new replica (it is absent,
    or an empty directory); a replica there is most likely an interrupted clone, and the
    message says how to finish it."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if is_replica(path) and not source.startswith(TOKEN_PREFIX) and not is_foreign(source):
        same = _same_database(path, source)
        if same is not False:
            raise AlreadyExists(
                f"{path} already holds a replica{'' if same else ' (perhaps'} of that "
                f"database{'' if same else ')'}, which an interrupted clone leaves: "
                f"`p2p-prophet -R {path} pull {source}` finishes it; or clone into another PATH"
            )
    check_free(path)


def _same_database(path: Path, source: str) -> bool | None:
    """Whether the replica at ``path`` is of ``source``'s database (None: cannot tell
    without asking a node)."""
    if is_url(source):
        return None
    try:
        with Replica.open(path) as there, Replica.open(Path(source)) as origin:
            return there.db_uuid == origin.db_uuid
    except (ProphetError, sqlite3.Error):
        return False


def unfinished_clone(exc: ProphetError, path: Path, source: str) -> ProphetError:
    """``exc``, which stopped a clone from ``source`` (a path or URL) after it made the
    replica at ``path``, saying what the replica kept and how to finish."""
    try:
        with Replica.open(path) as partial:
            kept = partial.main.latest_seq()
    except (ProphetError, sqlite3.Error):
        return exc
    # The storage's "(nothing was written)" is about the batch that failed only.
    reason = str(exc).removesuffix(" (nothing was written)").rstrip(".")
    return ProphetError(
        f"{reason}. The new replica at {path} keeps the {kept:,} changesets that arrived "
        f"before: `p2p-prophet -R {path} pull {source}` finishes the clone"
    )


# -- invites --------------------------------------------------------------------------------


def invite_urls(replica: Replica) -> list[str]:
    """Where a newcomer can reach this replica's node: the running node's addresses, or
    where `serve` would listen; a wildcard address becomes this machine's LAN ones.
    Raises :class:`InvalidValue` if there is none."""
    try:
        status = read_status(replica.path)
        bound = [str(u) for u in status["urls"] if str(u).startswith("https://")]
    except ProphetError:
        config = load_config(replica.path)
        bound = [f"https://{config.host}:{config.port}"]
    found: list[str] = []
    for url in bound:
        host, port = url[len("https://") :].rsplit(":", 1)
        host = host.strip("[]")
        for address in advertised_addresses(host) if host in ("0.0.0.0", "::", "") else [host]:
            found.append(str(NodeURL("https", address, int(port))))
    if not found:
        raise InvalidValue("no address to invite through; give one with --url")
    return found


def invite(
    replica: Replica, urls: list[str], *, name: str = "", lifetime: float = DEFAULT_LIFETIME
) -> Invite:
    """A new one-time invite into ``replica``'s database, through ``urls`` (default:
    :func:`invite_urls`), valid for ``lifetime`` seconds.  Raises :class:`InvalidValue`
    for a replica without members."""
    if replica.identity is None:
        raise InvalidValue(f"{replica.path} {NO_MEMBERS}: there is no one to invite into")
    return create_invite(replica, urls or invite_urls(replica), name=name, lifetime=lifetime)


# -- members ------------------------------------------------------------------------------


@dataclass
class Membership:
    """Who may sync with a database, as one replica sees it."""

    me: str  # this replica's fingerprint
    members: list[membership.Member]  # pending invites' identities too (they may connect)
    invites: list[membership.InviteState]
    invalid: list[membership.InvalidMember]  # member records that let no one in


def members(replica: Replica) -> Membership:
    """The membership of ``replica``'s database.  Raises :class:`InvalidValue` for a
    replica without members."""
    if replica.identity is None:
        raise InvalidValue(f"{replica.path} {NO_MEMBERS}")
    return Membership(
        replica.identity.fingerprint,
        membership.members(replica),
        membership.invites(replica),
        membership.invalid_members(replica),
    )


def remove_member(replica: Replica, member_id: str) -> membership.Member:
    """Remove the member ``member_id`` names (a fingerprint or its first 8+ hex digits);
    returns it.  Raises :class:`NotFound`, :class:`InvalidValue` (no members here, or
    this replica's own identity)."""
    if replica.identity is None:
        raise InvalidValue(f"{replica.path} {NO_MEMBERS}")
    gone = membership.resolve(replica, member_id)
    if gone.fingerprint == replica.identity.fingerprint:
        raise InvalidValue(
            "that is this replica's own identity; remove it from another member's laptop"
        )
    membership.remove_member(replica, gone.fingerprint)
    return gone


# -- conflicts ----------------------------------------------------------------------------


def conflicts(replica: Replica) -> list[dict[str, Any]]:
    """Every conflict ``replica`` met, with each property's choices and its value now."""
    return list_conflicts(replica)


def resolve(
    replica: Replica, target: tuple[str] | tuple[str, str], choice: dict[str, Value]
) -> tuple[str, str, list[str]]:
    """Choose values for a conflicted record, given by a conflict's fingerprint prefix
    or by ``(type, uuid)``: returns the record's type, uuid and the conflicts answered.
    Raises :class:`RecordNotFound`, :class:`ProphetError` for a deleted record."""
    if len(target) == 1:
        rtype, ruuid = conflict_record(replica, target[0])
    else:
        rtype, ruuid = target[0], target[1]
    return rtype, ruuid, resolve_conflict(replica, rtype, ruuid, choice)


# -- checks and damage --------------------------------------------------------------------


def check(path: Path) -> CheckReport:
    """Check the replica at ``path`` as `git fsck` checks a repository (see
    :func:`p2p_prophet.store.check.check`)."""
    return check_replica(path)


def storage_failure(exc: sqlite3.DatabaseError) -> str:
    """What to tell a person about SQLite failing under the replicas this process opened;
    damage found in the only one opened marks it damaged (writes refused until
    :func:`check` finds it whole)."""
    where = " or ".join(str(p) for p in dict.fromkeys(opened)) or "the replica"
    if is_corruption(exc):
        paths = list(dict.fromkeys(opened))
        if len(paths) == 1:  # which one is damaged is known only when there is one
            mark_damaged(paths[0], str(exc))
        return (
            f"{where} is damaged ({exc}): run `p2p-prophet check` to see what is wrong; "
            "restore it from a backup, or clone a fresh replica from a peer"
        )
    return f"the storage of {where} failed: {exc}"


# -- the node -----------------------------------------------------------------------------


def node_status(path: Path) -> dict[str, Any]:
    """What the running node of the replica at ``path`` last published.  Raises
    :class:`ProphetError` if no node runs there."""
    return read_status(path)


def serve(
    replica: Replica,
    config: NodeConfig,
    *,
    insecure: bool = False,
    started: Callable[[list[str], ConnectionLimits, int], None] | None = None,
) -> None:
    """Run a node for ``replica`` with ``config`` until Ctrl-C, SIGTERM or SIGHUP: serve
    it, find its database's nodes (mDNS), gossip.  ``started`` gets the bound URLs, the
    connection limits and the open-file limit.  Raises :class:`InvalidValue` for a
    members' replica with ``insecure`` or a configured peer of the wrong scheme, and
    :class:`ProphetError` if it cannot listen."""
    if insecure and replica.identity is not None:
        raise InvalidValue(
            f"{replica.path} belongs to a database with members: served with --insecure, "
            "anyone who reaches the port could read it. Serve it without --insecure (TLS, "
            "members only); --insecure is for replicas made with `init --insecure`"
        )
    scheme = "http://" if insecure else "https://"
    for url in config.peers:
        try:
            check_node_url(url)
        except BadURL as exc:
            raise InvalidValue(f"{replica.path / 'config.toml'}: peer {exc}") from None
        if not url.startswith(scheme):
            raise InvalidValue(
                f"{replica.path / 'config.toml'}: peer {url!r} is not an {scheme} URL"
                + (" (this node serves plain HTTP: --insecure)" if insecure else "")
            )
    # A daemon takes every descriptor it may: its connection caps follow from the limit.
    open_files = raise_open_file_limit()
    limits = limits_for(open_files)
    node = Node(
        replica,
        gossip=config.gossip,
        peers=config.peers,
        mdns=config.mdns,
        mdns_interfaces=config.mdns_interfaces or None,
        name=config.name,
        tls=not insecure,
        limits=limits,
    )

    async def stop_on_signal(nursery: trio.Nursery) -> None:
        # SIGTERM (systemd, kill) stops the node as cleanly as Ctrl-C: in-flight batches
        # finish or roll back whole, since worker threads are never abandoned.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal, nursery)
            urls = await nursery.start(node.run, config.host, config.port)
            if started is not None:
                started(urls, limits, open_files)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)


__all__ = [
    "DEFAULT_LIFETIME",
    "NO_MEMBERS",
    "TOKEN_PREFIX",
    "CheckReport",
    "Cloned",
    "ForeignResult",
    "ForeignSync",
    "Membership",
    "Replica",
    "SyncResult",
    "TransferResult",
    "check",
    "client_tls",
    "clone",
    "conflicts",
    "explain_fork",
    "init",
    "invite",
    "invite_urls",
    "is_url",
    "members",
    "node_status",
    "open_remote",
    "open_replica",
    "pull",
    "push",
    "remove_member",
    "resolve",
    "serve",
    "storage_failure",
    "sync",
]
