"""The ``p2p-prophet`` command line (the CLI contract of docs/cli.md).

The replica is chosen by ``--replica PATH`` / ``-R PATH`` (before or after the command),
else ``$P2P_PROPHET_REPLICA``, else a per-user default under the platform's data
directory.  Reading commands take ``--json`` and then print exactly one JSON document.
Errors go to stderr with a non-zero status; a traceback only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

import click

from p2p_prophet import __version__, operations
from p2p_prophet.clock import to_datetime, utc_minutes
from p2p_prophet.config import DEFAULT_PORT, override
from p2p_prophet.config import load as load_config
from p2p_prophet.errors import DamagedReplica, InvalidValue, ProphetError, RecordNotFound
from p2p_prophet.model import ChangeSet, Value, check_name, check_value
from p2p_prophet.operations import (
    DEFAULT_LIFETIME,
    TOKEN_PREFIX,
    ForeignResult,
    Replica,
    SyncResult,
    TransferResult,
    explain_fork,
)
from p2p_prophet.progress import transfer_bar
from p2p_prophet.url import check_node_url

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


# -- where the replica is -----------------------------------------------------------------


def default_replica_path() -> Path:
    """The per-user default replica under the platform's data directory."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "p2p-prophet" / "replica"


def replica_path(ctx: click.Context) -> Path:
    explicit = ctx.meta.get("replica")
    if explicit:
        return Path(explicit)
    env = os.environ.get("P2P_PROPHET_REPLICA")
    return Path(env) if env else default_replica_path()


def open_replica(ctx: click.Context) -> Replica:
    replica = operations.open_replica(replica_path(ctx))
    ctx.call_on_close(replica.close)
    return replica


def _remember_replica(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta["replica"] = value


def replica_option(f: F) -> F:
    """``-R/--replica``, accepted both before and after the command name."""
    return click.option(
        "-R",
        "--replica",
        metavar="PATH",
        expose_value=False,
        is_eager=True,
        callback=_remember_replica,
        help="The replica directory (default: $P2P_PROPHET_REPLICA, then the user default).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


# -- key=value arguments ------------------------------------------------------------------


def parse_assignments(args: Iterable[str], *, for_filter: bool = False) -> dict[str, Value]:
    """Parse ``key=text``, ``key:=JSON`` (typed) and ``key=`` (null: delete / absent).

    Text is never guessed into a number: ``n=3`` is the text "3", ``n:=3`` the int 3.
    Raises :class:`click.BadParameter` with the offending argument.
    """
    result: dict[str, Value] = {}
    for arg in args:
        if "=" not in arg:
            raise click.BadParameter(
                f"{arg!r} is not key=value (use key=text, key:=JSON for typed values, "
                "or key= to " + ("match an absent property)" if for_filter else "delete)"),
                param_hint="key=value",
            )
        key, _, raw = arg.partition("=")
        value: Value
        if key.endswith(":"):
            key = key[:-1]
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(
                    f"{arg!r}: {raw!r} is not JSON ({exc.msg})", param_hint="key:=JSON"
                ) from None
        else:
            value = raw if raw != "" else None
        try:
            check_name(key, "property name")
            check_value(value)
        except ProphetError as exc:
            raise click.BadParameter(f"{arg!r}: {exc}", param_hint="key=value") from None
        if key in result:
            raise click.BadParameter(f"{key!r} is given twice", param_hint="key=value")
        result[key] = value
    return result


def resolve_uuid(replica: Replica, rtype: str, given: str) -> str:
    """A full uuid, or the one live record of ``rtype`` whose uuid starts with ``given``."""
    given = given.lower()
    if len(given) == 36:
        return given
    matches = replica.main.uuids_with_prefix(rtype, given)
    if not matches:
        raise RecordNotFound(f"no {rtype} with a uuid starting {given!r}")
    if len(matches) > 1:
        raise InvalidValue(f"{given!r} matches several {rtype} records; give more of the uuid")
    return matches[0]


# -- output -------------------------------------------------------------------------------


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True))


def format_value(value: Value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def changeset_json(seq: int, cs: ChangeSet, cs_id: bytes) -> dict[str, Any]:
    return {
        "seq": seq,
        "id": cs_id.hex(),
        "origin": cs.origin,
        "origin_seq": cs.origin_seq,
        "kind": cs.kind.value,
        "creator": cs.creator,
        "created": cs.created,
        "created_at": to_datetime(cs.created).isoformat(timespec="milliseconds"),
        "changes": [
            {
                "type": c.type,
                "uuid": c.uuid,
                "op": c.op.value,
                "props": [{"name": p.name, "old": p.old, "new": p.new} for p in c.props],
            }
            for c in cs.changes
        ],
    }


# -- the commands -------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@replica_option
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.version_option(__version__, prog_name="p2p-prophet")
def cli(debug: bool) -> None:
    """p2p_prophet: a replicated database of records that syncs peer to peer."""


@cli.command()
@replica_option
@click.option("--db-uuid", metavar="UUID", help="Join an existing database id.")
@click.option(
    "--insecure",
    is_flag=True,
    help="No identity and no members: the replica signs nothing and its node serves "
    "plain HTTP to anyone (for tests and demos).",
)
@click.option("--name", metavar="NAME", help="Your name in the membership [default: you@host].")
@json_option
@click.pass_context
def init(
    ctx: click.Context, db_uuid: str | None, insecure: bool, name: str | None, as_json: bool
) -> None:
    """Create a replica (prints its replica_uuid).

    The replica gets an identity (a key pair; its fingerprint is how peers know it) and
    becomes the first member of its database: only members' nodes can sync with it."""
    path = replica_path(ctx)
    with operations.init(path, insecure=insecure, name=name, db_uuid=db_uuid) as replica:
        doc = {
            "replica_uuid": replica.uuid,
            "db_uuid": replica.db_uuid,
            "path": str(path),
            "identity": None if replica.identity is None else replica.identity.fingerprint,
        }
    if as_json:
        emit_json(doc)
    else:
        click.echo(doc["replica_uuid"])


@cli.command()
@replica_option
@click.argument("rtype", metavar="TYPE")
@click.argument("assignments", nargs=-1, metavar="key=value...")
@json_option
@click.pass_context
def create(ctx: click.Context, rtype: str, assignments: tuple[str, ...], as_json: bool) -> None:
    """Create a record (prints its uuid)."""
    props = parse_assignments(assignments)
    replica = open_replica(ctx)
    uuid = replica.create(rtype, props)
    if as_json:
        emit_json({"type": rtype, "uuid": uuid})
    else:
        click.echo(uuid)


@cli.command()
@replica_option
@click.argument("rtype", metavar="TYPE")
@click.argument("uuid")
@click.argument("assignments", nargs=-1, required=True, metavar="key=value...")
@json_option
@click.pass_context
def update(
    ctx: click.Context, rtype: str, uuid: str, assignments: tuple[str, ...], as_json: bool
) -> None:
    """Set properties of a record (key= deletes a property)."""
    props = parse_assignments(assignments)
    replica = open_replica(ctx)
    uuid = resolve_uuid(replica, rtype, uuid)
    cs = replica.update(rtype, uuid, props)
    if as_json:
        emit_json({"type": rtype, "uuid": uuid, "changed": cs is not None})
    elif cs is None:
        click.echo("nothing changed: the record already has those values", err=True)


@cli.command()
@replica_option
@click.argument("rtype", metavar="TYPE")
@click.argument("uuid")
@json_option
@click.pass_context
def delete(ctx: click.Context, rtype: str, uuid: str, as_json: bool) -> None:
    """Delete a record."""
    replica = open_replica(ctx)
    uuid = resolve_uuid(replica, rtype, uuid)
    replica.delete(rtype, uuid)
    if as_json:
        emit_json({"type": rtype, "uuid": uuid, "deleted": True})


@cli.command()
@replica_option
@click.argument("rtype", metavar="TYPE")
@click.argument("uuid")
@json_option
@click.pass_context
def show(ctx: click.Context, rtype: str, uuid: str, as_json: bool) -> None:
    """Show one record."""
    replica = open_replica(ctx)
    uuid = resolve_uuid(replica, rtype, uuid)
    row = replica.main.find_record(rtype, uuid)
    if row is None or not row.live:
        raise RecordNotFound(f"no {rtype} {uuid}" + ("" if row is None else " (deleted)"))
    props = {
        name: stored
        for name, stored in replica.main.props(row.rid).items()
        if stored.value is not None
    }
    if as_json:
        emit_json(
            {
                "type": rtype,
                "uuid": uuid,
                "props": {name: p.value for name, p in props.items()},
                "created_at": to_datetime(row.created.hlc).isoformat(timespec="milliseconds"),
            }
        )
        return
    click.echo(f"{rtype} {uuid}")
    width = max((len(n) for n in props), default=0)
    for name in sorted(props):
        click.echo(f"  {name.ljust(width)}  {format_value(props[name].value)}")


@cli.command(name="list")
@replica_option
@click.argument("rtype", metavar="TYPE")
@click.argument("filters", nargs=-1, metavar="[key=value...]")
@json_option
@click.pass_context
def list_(ctx: click.Context, rtype: str, filters: tuple[str, ...], as_json: bool) -> None:
    """List live records of a type, optionally only those matching key=value filters."""
    where = parse_assignments(filters, for_filter=True)
    replica = open_replica(ctx)
    records = replica.main.live_records(rtype, where)
    if as_json:
        emit_json([r.to_json() for r in records])
        return
    for record in records:
        props = " ".join(f"{k}={format_value(v)}" for k, v in sorted(record.props.items()))
        click.echo(f"{record.uuid}  {props}".rstrip())


@cli.command()
@replica_option
@click.option("--limit", "-n", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
@click.pass_context
def log(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Show the newest changesets of the log, newest first."""
    replica = open_replica(ctx)
    rows = replica.main.recent_changesets(limit)
    entries = [changeset_json(r.seq, ChangeSet.decode(r.body), r.id) for r in rows]
    if as_json:
        emit_json(entries)
        return
    for e in entries:
        where = f"{e['origin'][:8]}#{e['origin_seq']}" if e["origin_seq"] else e["origin"][:8]
        click.echo(f"{e['seq']:>6}  {e['created_at']}  {where}  {e['kind']}  by {e['creator']}")
        for c in e["changes"]:
            click.echo(f"        {c['op']} {c['type']} {c['uuid']}")
            for p in c["props"]:
                old = "∅" if p["old"] is None else format_value(p["old"])
                new = "∅" if p["new"] is None else format_value(p["new"])
                click.echo(f"          {p['name']}: {old} → {new}")


@cli.command()
@replica_option
@json_option
@click.pass_context
def digest(ctx: click.Context, as_json: bool) -> None:
    """Print the state digest: equal digests mean equal live records (P1)."""
    replica = open_replica(ctx)
    value = replica.main.digest()
    if as_json:
        emit_json({"digest": value, "records": replica.main.count_live()})
    else:
        click.echo(value)


@cli.command(name="check")
@replica_option
@json_option
@click.pass_context
def check_(ctx: click.Context, as_json: bool) -> None:
    """Check the replica as `git fsck` checks a repository: SQLite's integrity, every
    changeset against its id, each origin's chain and numbers against the merge tickets,
    in both the log and the resolution database.  Exit status 1 if anything is wrong;
    a damaged replica refuses writes until this finds it whole."""
    path = replica_path(ctx)
    report = operations.check(path)
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "databases": [
                    {
                        "name": f.name,
                        "changesets": f.changesets,
                        "origins": f.origins,
                        "problems": f.problems,
                    }
                    for f in report.databases
                ],
            }
        )
    else:
        for f in report.databases:
            state = "ok" if not f.problems else f"{len(f.problems)} problems"
            click.echo(f"{f.name}: {f.changesets:,} changesets of {f.origins} origins: {state}")
            for problem in f.problems:
                click.echo(f"  {problem}")
    if not report.ok:
        raise DamagedReplica(
            f"{path} is damaged: writes are refused until `p2p-prophet check` finds it "
            "whole; restore it from a backup, or clone a fresh replica from a peer"
        )


@cli.command(name="export")
@replica_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "jsonl"]),
    default="json",
    show_default=True,
    help="json: one document; jsonl: one record per line, as `import` reads.",
)
@json_option
@click.pass_context
def export_(ctx: click.Context, fmt: str, as_json: bool) -> None:
    """Canonical dump of all live records, sorted by type and uuid."""
    replica = open_replica(ctx)
    out = sys.stdout
    records = replica.main.live_records()
    if fmt == "jsonl" and not as_json:
        for record in records:
            out.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True) + "\n")
        return
    # Streamed, so that a large replica is never held in memory as one document.
    out.write(json.dumps({"db_uuid": replica.db_uuid})[:-1] + ', "records": [')
    for i, record in enumerate(records):
        out.write(("," if i else "") + "\n  ")
        out.write(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True))
    out.write("\n]}\n")


@cli.command(name="import")
@replica_option
@click.argument("source", type=click.File("r", encoding="utf-8"), default="-", metavar="[FILE|-]")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Records per SQLite transaction.",
)
@json_option
@click.pass_context
def import_(ctx: click.Context, source: TextIO, batch_size: int, as_json: bool) -> None:
    """Bulk-load JSON lines {"type":…, "props":{…}} (optionally "uuid"): one changeset
    per record, many records per SQLite transaction."""
    replica = open_replica(ctx)
    imported = 0
    lines = _numbered_records(source)
    exhausted = False
    while not exhausted:
        try:
            with replica.edits() as batch:
                count = 0
                for lineno, rtype, props, uuid in lines:
                    try:
                        batch.create(rtype, props, uuid)
                    except ProphetError as exc:
                        raise ProphetError(f"line {lineno}: {exc}") from None
                    count += 1
                    if count == batch_size:
                        break
                else:
                    exhausted = True
        except ProphetError as exc:
            raise ProphetError(
                f"{exc}\nimported {imported} records before it, in whole batches; "
                "nothing from that batch on was written"
            ) from None
        imported += count
    if as_json:
        emit_json({"imported": imported})
    else:
        click.echo(f"imported {imported} records", err=True)


def _numbered_records(
    source: TextIO,
) -> Iterator[tuple[int, str, dict[str, Value], str | None]]:
    for lineno, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidValue(f"line {lineno}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise InvalidValue(f'line {lineno}: expected {{"type": ..., "props": {{...}}}}')
        props = obj.get("props", {})
        uuid = obj.get("uuid")
        if not isinstance(props, dict) or (uuid is not None and not isinstance(uuid, str)):
            raise InvalidValue(f'line {lineno}: "props" must be an object, "uuid" a string')
        yield lineno, obj["type"], props, uuid


# -- replication between replicas ----------------------------------------------------------


T = TypeVar("T")


def report_transfer(
    verb: str, where: str, result: TransferResult, as_json: bool, *, forks: bool = True
) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    for line in result.recovered:
        click.echo(line, err=True)
    for fork in result.forks if forks else ():
        click.echo(f"warning: {explain_fork(fork, where.split(' ', 1)[1])}", err=True)
    cs = result.changesets
    parts = [f"{verb} {cs.integrated} changesets {where}"]
    if cs.skipped:
        parts.append(f"{cs.skipped} already held")
    if cs.conflicts:
        parts.append(
            f"{cs.conflicts} conflicts ({cs.resolutions_minted} resolutions minted, "
            f"{cs.resolutions_reused} reused); see `p2p-prophet conflicts`"
        )
    if result.resolutions.integrated:
        parts.append(f"{result.resolutions.integrated} resolution records")
    click.echo(", ".join(parts), err=True)


def report_foreign(verb: str, where: str, result: ForeignResult, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(
        f"{verb} {where}: {result.created} created, {result.updated} updated, "
        f"{result.deleted} deleted, {result.unchanged} unchanged",
        err=True,
    )
    for why in result.skipped:
        click.echo(f"  left alone: {why}", err=True)


@cli.command()
@click.argument("source", metavar="SOURCE")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--name",
    metavar="NAME",
    help="Your name in the membership, when the clone makes you a member [default: you@host].",
)
@json_option
@click.pass_context
def clone(ctx: click.Context, source: str, path: Path, name: str | None, as_json: bool) -> None:
    """Create a replica at PATH holding everything SOURCE has.

    SOURCE is a replica path, a node's http(s):// URL, or a foreign replica
    (taskwarrior:PATH, fossil:PATH): then PATH is a new database, with this
    replica as the foreign one's gateway.  SOURCE may also be an invite token
    (from `p2p-prophet invite` on a member's laptop): PATH then joins the database as
    a new member."""
    with transfer_bar(not as_json) as progress:
        cloned = operations.clone(source, path, name=name, progress=progress)
    replica, result = cloned.replica, cloned.result
    ctx.call_on_close(replica.close)
    if as_json:
        emit_json({"replica_uuid": replica.uuid, "db_uuid": replica.db_uuid, **result.to_json()})
        return
    click.echo(replica.uuid)
    if isinstance(result, ForeignResult):
        report_foreign("cloned", f"from {source}", result, False)
        return
    where = "through the invite" if source.startswith(TOKEN_PREFIX) else f"from {source}"
    report_transfer("cloned", where, result, False)
    if replica.identity is not None:
        click.echo(f"this replica's identity: {replica.identity.fingerprint}", err=True)


@cli.command()
@replica_option
@click.argument("source", metavar="SOURCE")
@click.option("--force", is_flag=True, help="Merge even if SOURCE is another database.")
@json_option
@click.pass_context
def pull(ctx: click.Context, source: str, force: bool, as_json: bool) -> None:
    """Integrate what SOURCE has that this replica lacks (SOURCE: a replica path, a
    node's URL, or taskwarrior:PATH / fossil:PATH)."""
    replica = open_replica(ctx)
    with transfer_bar(not as_json) as progress:
        result = operations.pull(replica, source, force=force, progress=progress)
    report("pulled", f"from {source}", result, as_json)


@cli.command()
@replica_option
@click.argument("target", metavar="TARGET")
@click.option("--force", is_flag=True, help="Merge even if TARGET is another database.")
@json_option
@click.pass_context
def push(ctx: click.Context, target: str, force: bool, as_json: bool) -> None:
    """Give TARGET what this replica has that it lacks (TARGET: a replica path, a
    node's URL, or taskwarrior:PATH / fossil:PATH)."""
    replica = open_replica(ctx)
    with transfer_bar(not as_json) as progress:
        result = operations.push(replica, target, force=force, progress=progress)
    report("pushed", f"to {target}", result, as_json)


def report(verb: str, where: str, result: TransferResult | ForeignResult, as_json: bool) -> None:
    if isinstance(result, ForeignResult):
        report_foreign(verb, where, result, as_json)
    else:
        report_transfer(verb, where, result, as_json)


@cli.command(name="sync")
@replica_option
@click.argument("peer", metavar="PEER")
@click.option("--force", is_flag=True, help="Merge even if PEER is another database.")
@json_option
@click.pass_context
def sync_(ctx: click.Context, peer: str, force: bool, as_json: bool) -> None:
    """Pull from PEER, then push to it: afterwards both hold the same changesets."""
    replica = open_replica(ctx)
    with transfer_bar(not as_json) as progress:
        both = operations.sync(replica, peer, force=force, progress=progress)
    if isinstance(both, operations.ForeignSync):
        got, gave = both.pulled, both.pushed
        if as_json:
            emit_json({"pulled": got.to_json(), "pushed": None if gave is None else gave.to_json()})
        else:
            report_foreign("pulled", f"from {peer}", got, False)
            if gave is None:
                click.echo(f"not pushed: {peer} is read-only (config.toml [foreign])", err=True)
            else:
                report_foreign("pushed", f"to {peer}", gave, False)
        return
    if as_json:
        emit_json({"pulled": both.pulled.to_json(), "pushed": both.pushed.to_json()})
    else:
        report_transfer("pulled", f"from {peer}", both.pulled, False)
        report_transfer("pushed", f"to {peer}", both.pushed, False, forks=False)


@cli.command()
@replica_option
@json_option
@click.pass_context
def conflicts(ctx: click.Context, as_json: bool) -> None:
    """List the conflicts this replica met, how each was answered, and the value now."""
    replica = open_replica(ctx)
    entries = operations.conflicts(replica)
    if as_json:
        emit_json(entries)
        return
    if not entries:
        click.echo("no conflicts", err=True)
    for e in entries:
        click.echo(f"{e['fingerprint'][:12]}  {e['kind']}  {e['type']} {e['uuid']}")
        for p in e["props"]:
            choices = " | ".join(format_value(c["value"]) for c in p["choices"])
            click.echo(f"    {p['name']}: {choices}  → now {format_value(p['now'])} ({p['how']})")


@cli.command()
@replica_option
@click.argument("target", nargs=-1, required=True, metavar="FINGERPRINT|TYPE UUID key=value...")
@json_option
@click.pass_context
def resolve(ctx: click.Context, target: tuple[str, ...], as_json: bool) -> None:
    """Choose the value of conflicted properties yourself.

    Your choice is a new edit with a fresh stamp, so it wins over both sides of the
    conflict on every replica, and is recorded in the resolution database.
    """
    replica = open_replica(ctx)
    words = list(target)
    assignments = [w for w in words if "=" in w]
    head = [w for w in words if "=" not in w]
    if not assignments:
        raise click.UsageError("give the values you choose as key=value")
    props = parse_assignments(assignments)
    if len(head) == 1:
        rtype, ruuid, fingerprints = operations.resolve(replica, (head[0],), props)
    elif len(head) == 2:
        ruuid = resolve_uuid(replica, head[0], head[1])
        rtype, ruuid, fingerprints = operations.resolve(replica, (head[0], ruuid), props)
    else:
        raise click.UsageError("give a conflict FINGERPRINT, or TYPE UUID, then key=value...")
    if as_json:
        emit_json({"type": rtype, "uuid": ruuid, "fingerprints": fingerprints})
    else:
        click.echo(f"resolved {len(fingerprints)} conflicts of {rtype} {ruuid}", err=True)


@cli.command()
@replica_option
@click.pass_context
def demo(ctx: click.Context) -> None:
    """A two-minute tour: Alice's replica of tickets, Bob's clone, a concurrent edit
    on both, and a sync that ends with one winner and equal digests.

    Uses --replica for Alice's replica if given (it must not exist yet; Bob's goes
    beside it), else a new temporary directory.
    """
    if ctx.meta.get("replica"):
        path = Path(ctx.meta["replica"])
        bob_path = path.with_name(path.name + "-bob")
    else:
        root = Path(tempfile.mkdtemp(prefix="p2p-prophet-demo-"))
        path, bob_path = root / "alice", root / "bob"
    say = click.echo
    with operations.init(path, insecure=True) as alice:
        alice.creator = "alice@laptop"
        say(f"Alice's replica: {path}\n  database {alice.db_uuid}\n  replica  {alice.uuid}\n")
        with alice.edits() as batch:
            tickets = [
                batch.create("ticket", {"summary": summary, "status": "open", "priority": prio})
                for summary, prio in (
                    ("Sync stalls on hotel wifi", 2),
                    ("Export should sort by type", 3),
                    ("Laptop clock runs ahead", 1),
                )
            ]
        alice.delete("ticket", tickets[1])
        say("Alice creates three tickets and deletes one. Bob clones her replica:")
        cloned = operations.clone(str(path), bob_path)
        assert isinstance(cloned.result, TransferResult)
        with cloned.replica as bob:
            bob.creator = "bob@laptop"
            say(f"  {bob_path}: {cloned.result.changesets.integrated} changesets pulled\n")
            say("Offline, both edit the first ticket: Alice stalls it, Bob closes it.")
            alice.update("ticket", tickets[0], {"status": "stalled", "owner": "alice"})
            bob.update("ticket", tickets[0], {"status": "closed"})
            both = operations.sync(alice, str(bob_path))
            assert isinstance(both, SyncResult)
            pulled, pushed = both.pulled, both.pushed
            say(
                f"They sync: {pulled.changesets.conflicts} conflict, "
                f"{pulled.changesets.resolutions_minted} resolution minted by Alice, "
                f"reused by Bob ({pushed.changesets.resolutions_reused}).\n"
            )
            for name, replica in (("Alice", alice), ("Bob", bob)):
                say(f"{name}'s live tickets:")
                for record in replica.main.live_records("ticket"):
                    props = " ".join(
                        f"{k}={format_value(v)}" for k, v in sorted(record.props.items())
                    )
                    say(f"  {record.uuid[:8]}  {props}")
                say(f"  digest {replica.main.digest()}\n")
            same = alice.main.digest() == bob.main.digest()
            say("Equal digests: both hold the same records." if same else "DIGESTS DIFFER")
            say(f"\nNext: p2p-prophet -R {path} log   |   p2p-prophet -R {path} conflicts")


@cli.command()
@replica_option
@click.option(
    "--host",
    help="Address to listen on [config: node.host; default 0.0.0.0, every interface, so "
    "that the LAN can reach it].",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), help=f"[config: node.port; default {DEFAULT_PORT}]"
)
@click.option(
    "--mdns/--no-mdns",
    "mdns",
    default=None,
    help="Advertise and discover over mDNS, or not (then only the peers given with --peer "
    "are known) [config: node.mdns; default on].",
)
@click.option(
    "--name",
    metavar="NAME",
    help="The name this node advertises over mDNS [config: node.name; default: host name].",
)
@click.option(
    "--mdns-interface",
    "mdns_interfaces",
    multiple=True,
    metavar="ADDRESS",
    help="Run mDNS only on the interface with this address (repeatable) "
    "[config: node.mdns_interfaces; default: all].",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="URL",
    help="A node to gossip with (repeatable), for networks without multicast; added to "
    "node.peers of the config.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    help="Seconds between anti-entropy exchanges [config: gossip.interval; default 5].",
)
@click.option(
    "--fanout",
    type=click.IntRange(min=1),
    help="Peers told at once about news [config: gossip.fanout; default 2].",
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    help="Lose interest in a rumor with probability 1/k each time it is old news "
    "[config: gossip.k; default 2].",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Serve and dial plain HTTP: no TLS, no check of who connects. Anyone who can "
    "reach the port can read and write the database. For tests and demos only.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    insecure: bool,
    host: str | None,
    port: int | None,
    mdns: bool | None,
    name: str | None,
    mdns_interfaces: tuple[str, ...],
    peers: tuple[str, ...],
    interval: float | None,
    fanout: int | None,
    k: int | None,
) -> None:
    """Run a node: serve this replica, find the nodes of its database on the LAN (mDNS),
    and gossip with them until Ctrl-C.  Settings come from config.toml in the replica
    directory, then from these options."""
    replica = open_replica(ctx)
    scheme = "http://" if insecure else "https://"
    for url in peers:
        check_node_url(url)
        if not url.startswith(scheme):
            raise click.BadParameter(
                f"{url!r} is not an {scheme} URL (a node with TLS dials https:// peers only, "
                "one with --insecure http:// only)",
                param_hint="--peer",
            )
    config = override(
        load_config(replica.path),
        host=host,
        port=port,
        mdns=mdns,
        name=name,
        mdns_interfaces=mdns_interfaces,
        peers=peers or None,
        interval=interval,
        fanout=fanout,
        k=k,
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    # We log one line per exchange ourselves; theirs would be one per request.
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)

    def started(urls: list[str], limits: Any, open_files: int) -> None:
        logging.getLogger("p2p_prophet.node").info(
            "open files: up to %d; connections: at most %d, %d per address, %d waiting",
            open_files,
            limits.total,
            limits.per_address,
            limits.waiting,
        )
        for url in urls:
            click.echo(
                f"serving replica {replica.uuid} of database {replica.db_uuid} at {url}",
                err=True,
            )
        if insecure:
            click.echo(
                "--insecure: plain HTTP, anyone who can reach this port can read and "
                "write the database (bind --host 127.0.0.1 to keep it on this machine)",
                err=True,
            )
        else:
            assert replica.identity is not None
            click.echo(
                f"TLS, members only; this replica's identity: {replica.identity.fingerprint}",
                err=True,
            )

    operations.serve(replica, config, insecure=insecure, started=started)
    click.echo("stopped", err=True)


@cli.group(invoke_without_command=True)
@replica_option
@json_option
@click.pass_context
def members(ctx: click.Context, as_json: bool) -> None:
    """The members of this database: the identities whose nodes may sync with it.

    `members remove ID` removes one (ID: its fingerprint, or 8 or more of its first hex
    digits); each node refuses it as soon as the removal reaches that node."""
    if ctx.invoked_subcommand is not None:
        return
    now = operations.members(open_replica(ctx))
    mine, found, invites, invalid = now.me, now.members, now.invites, now.invalid
    if as_json:
        emit_json(
            {
                "members": [
                    {
                        "fingerprint": m.fingerprint,
                        "name": m.name,
                        "added_by": m.added_by or None,
                        "expires": m.expires,
                        "invite": m.invite,
                        "this_replica": m.fingerprint == mine,
                    }
                    for m in found
                ],
                "invites": [
                    {
                        "fingerprint": i.fingerprint,
                        "name": i.name,
                        "added_by": i.added_by or None,
                        "expires": i.expires,
                        "state": i.state,
                        "used_by": None if i.used_by is None else i.used_by.fingerprint,
                    }
                    for i in invites
                ],
                "invalid": [
                    {"uuid": r.uuid, "fingerprint": r.fingerprint, "reason": r.reason}
                    for r in invalid
                ],
            }
        )
        return
    for m in found:
        if m.is_invite:
            continue  # listed below, with the other invites
        notes = []
        if m.fingerprint == mine:
            notes.append("this replica")
        if m.added_by:
            notes.append(f"added by {m.added_by[:16]}")
        if m.invite:
            notes.append(f"joined with invite {m.invite[:16]}")
        click.echo(
            f"{m.fingerprint}  {m.name or '-'}" + (f"  ({'; '.join(notes)})" if notes else "")
        )
    if invites:
        click.echo("invites:")
    for i in invites:
        if i.state == "used" and i.used_by is not None:
            state = f"used by {i.used_by.fingerprint[:16]} ({i.used_by.name or 'unnamed'})"
        elif i.state == "pending":
            state = f"unused, expires {utc_minutes(i.expires)}"
        elif i.state == "expired":
            state = f"unused, expired {utc_minutes(i.expires)}"
        else:
            state = "withdrawn (or used by an older version, which did not record by whom)"
        click.echo(f"  {i.fingerprint}  {i.name or '-'}  ({state})")
    for r in invalid:
        click.echo(f"warning: member record {r.uuid} lets no one in: {r.reason}", err=True)


@members.command(name="remove")
@replica_option
@click.argument("member_id", metavar="ID")
@click.pass_context
def members_remove(ctx: click.Context, member_id: str) -> None:
    """Remove a member (ID: its fingerprint or its first 8+ hex digits)."""
    gone = operations.remove_member(open_replica(ctx), member_id)
    click.echo(
        f"removed {gone.fingerprint}"
        + (f" ({gone.name})" if gone.name else "")
        + "; each node refuses it once the removal reaches it (a running node here: now)",
        err=True,
    )


@cli.command()
@replica_option
@click.option("--name", metavar="NAME", help="Who the invite is for (shown in `members`).")
@click.option(
    "--hours",
    type=click.FloatRange(min=0.01, max=24 * 30),
    default=DEFAULT_LIFETIME / 3600,
    show_default=True,
    help="How long the token can be used.",
)
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help="An https:// address where this replica's node answers, as the newcomer can "
    "reach it (repeatable) [default: the running node's addresses, or where `serve` "
    "would listen].",
)
@json_option
@click.pass_context
def invite(
    ctx: click.Context, name: str | None, hours: float, urls: tuple[str, ...], as_json: bool
) -> None:
    """Print a one-time token that lets a new laptop join this database:
    `p2p-prophet clone TOKEN PATH` there.  Keep it secret until it is used: whoever
    uses it first becomes a member."""
    made = operations.invite(open_replica(ctx), list(urls), name=name or "", lifetime=hours * 3600)
    token = made.encode()
    if as_json:
        emit_json({"token": token, "urls": list(made.urls), "expires": made.expires})
        return
    click.echo(token)
    click.echo(
        f"valid until {utc_minutes(made.expires)}, once, through {', '.join(made.urls)}; "
        "on the new laptop: p2p-prophet clone TOKEN PATH",
        err=True,
    )


@cli.command()
@replica_option
@json_option
@click.pass_context
def peers(ctx: click.Context, as_json: bool) -> None:
    """What the running node of this replica knows: its peers, their state, the last
    exchange with each."""
    status = operations.node_status(replica_path(ctx))
    if as_json:
        emit_json(status)
        return
    click.echo(f"node {status['name']!r} at {', '.join(status['urls'])} (pid {status['pid']})")
    for fork in status.get("forks", []):
        database = "resolution database" if fork["resolutions"] else "records"
        click.echo(
            f"  forked origin {fork['origin']}#{fork['seq']} ({database}) with "
            f"{fork['peer_name']} since {fork['found']}: nothing of it moves between the two"
        )
    if not status["peers"]:
        click.echo("no peers yet", err=True)
    for p in status["peers"]:
        last = p["last_exchange"] or "never"
        click.echo(
            f"  {p['url']:<28} {p['state']:<12} {p['source']:<10} last exchange {last}"
            f"  sent {p['sent']} received {p['received']}"
            + (f"  failures {p['failures']}" if p["failures"] else "")
            + (f"  replica {p['replica']}" if p["replica"] else "")
        )


@cli.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--seed", type=int, help="Override the scenario's seed.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.json here (default: print it only).",
)
@click.option("--no-plots", is_flag=True, help="Write report.json only, no PNG plots.")
def simulate(scenario: Path, seed: int | None, out: Path | None, no_plots: bool) -> None:
    """Run a gossip simulation (SCENARIO.toml) on virtual time and report on it.

    Prints the report (JSON) and, with --out, writes report.json and PNG plots there.
    Exits with status 1 when the peers did not converge, saying which differ and why
    (in rounds mode: when the measured figure is more than 15% from the literature's).
    The format is described in simulations/README.md.
    """
    from p2p_prophet.progress import simulation_bar
    from p2p_prophet.sim import Scenario
    from p2p_prophet.sim import simulate as run_simulation
    from p2p_prophet.sim.plots import write_plots

    loaded = Scenario.load(scenario)
    with simulation_bar() as progress:
        outcome = run_simulation(loaded, seed=seed, progress=progress, interruptible=True)
    report = outcome.report
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        if not no_plots and loaded.run.get("plots", True):
            write_plots(out, report, outcome.graph, outcome.bytes_by_peer)
    emit_json(report)
    theory = report.get("theory")
    if theory is not None and not theory["within_tolerance"]:
        raise ProphetError(
            f"the measured {theory['measure']} {theory['measured']} is "
            f"{theory['deviation']:+.0%} from the literature's {theory['reference']}"
        )
    if report.get("mode") == "rounds":
        return  # the model's residue is a measurement (rumor), not a failure
    if report["interrupted"]:
        raise ProphetError(
            f"interrupted after {report['simulated_s']} simulated seconds, with "
            f"{report['held_fraction']:.1%} of the changesets where they belong; the report "
            "above covers the run so far"
        )
    if not report["converged"]:
        lines = [
            f"  {d.get('peer', '?')}: lacks {d.get('lacks_changesets_from', {})}"
            f" and {d.get('lacks_resolutions', 0)} resolutions; {', '.join(d['why'])}"
            for d in report.get("differing_peers", [])[:20]
        ]
        raise ProphetError(
            f"the peers did not converge within {report['simulated_s']} simulated seconds"
            " (run.max_simulated_s); these differ:\n" + "\n".join(lines)
        )


# -- entry point --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the CLI; map expected errors to a message and an exit status."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("P2P_PROPHET_DEBUG") == "1"
    # Commands say what matters in their own words (a node's log is set up by `serve`):
    # no stray log lines on stderr from Python's last-resort handler.
    logging.getLogger("p2p_prophet").addHandler(logging.NullHandler())
    try:
        try:
            code = cli.main(args=args, prog_name="p2p-prophet", standalone_mode=False)
        except BaseExceptionGroup as group:
            # trio's nurseries wrap what their tasks raise; one error is just that error.
            single: BaseException = group
            while isinstance(single, BaseExceptionGroup) and len(single.exceptions) == 1:
                single = single.exceptions[0]
            if single is group:
                raise
            raise single from None
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ProphetError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except sqlite3.DatabaseError as exc:
        # A read that met a damaged page (writes say so themselves), or storage failing.
        if debug:
            raise
        click.echo(f"error: {operations.storage_failure(exc)}", err=True)
        sys.exit(EXIT_ERROR)
    except BrokenPipeError:
        # Output piped into `head`: not an error worth a message.
        sys.stderr.close()
        sys.exit(EXIT_ERROR)
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "this is a bug in p2p_prophet; rerun with --debug for the traceback",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
