"""``herald broadcast send|status`` and ``herald topic import``: broadcasts and topics
from the command line, through the same service functions as the REST API."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from herald.contracts import Channel
from herald.settings import get_settings

if TYPE_CHECKING:
    from api.schemas.broadcasts import BroadcastOut

broadcast_app = typer.Typer(help="Broadcasts: one message to a topic or every user.")
topic_app = typer.Typer(help="Topics: named audiences for broadcasts.")
console = Console()
err_console = Console(stderr=True)
# Subscribers written per statement by ``topic import`` (the REST route's limit too).
IMPORT_CHUNK = 10_000
# How often ``broadcast status`` reads the progress again.
POLL_SECONDS = 0.5


def _exit(code: int = 0) -> None:
    from cli.main import _exit_now

    _exit_now(code)


@broadcast_app.command("send")
def send(
    template: Annotated[str, typer.Option(help="Template key.")],
    channel: Annotated[Channel, typer.Option(help="email, sms or push.")],
    topic: Annotated[str | None, typer.Option(help="Send to this topic's subscribers.")] = None,
    all_users: Annotated[bool, typer.Option("--all-users", help="Send to every user.")] = False,
    user_id: Annotated[
        list[str] | None, typer.Option("--user-id", help="Send to this user (repeatable).")
    ] = None,
    data: Annotated[str, typer.Option(help="Template data, a JSON object.")] = "{}",
    tenant: Annotated[str, typer.Option(help="Tenant name.")] = "demo",
    rate: Annotated[
        float | None, typer.Option(help="Recipients per second (HERALD_BROADCAST_RATE_PER_SECOND).")
    ] = None,
    send_at: Annotated[
        str | None, typer.Option(help="Start no one before this time (ISO 8601 with zone).")
    ] = None,
    follow: Annotated[bool, typer.Option(help="Show its progress until it is done.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the broadcast as a JSON object instead.")
    ] = False,
) -> None:
    """Start a broadcast and print its id alone on stdout (messages go to stderr)."""
    from pydantic import ValidationError

    from api.schemas.broadcasts import BroadcastIn
    from bridge.ingest import describe_invalid

    audience: dict[str, Any] = (
        {"topic": topic} if topic else {"all_users": True} if all_users else {"user_ids": user_id}
    )
    try:
        body = BroadcastIn.model_validate(
            {
                "channel": channel,
                "template": template,
                "data": json.loads(data),
                "audience": audience,
                "rate_per_second": rate,
                "send_at": send_at,
            }
        )
    except ValueError as err:
        reason = describe_invalid(err) if isinstance(err, ValidationError) else str(err)
        err_console.print(f"[red]invalid broadcast:[/] {reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from err
    code = asyncio.run(_send(body, tenant, follow, as_json=as_json))
    _exit(code)


async def _send(body: Any, tenant_name: str, follow: bool, *, as_json: bool) -> int:
    from api.errors import ApiError
    from api.services.broadcasts import BroadcastBackends, create_broadcast
    from herald.db import make_engine
    from herald.temporal import connect
    from herald.tenants import tenant_by_name

    settings = get_settings()
    engine = make_engine(settings, pool_size=2)
    try:
        tenant = await tenant_by_name(engine, tenant_name)
        if tenant is None:
            err_console.print(f"[red]no tenant {tenant_name!r}[/]")
            return 1
        backends = BroadcastBackends(engine, await connect(settings), settings)
        try:
            created = await create_broadcast(backends, tenant, body)
        except ApiError as err:
            err_console.print(f"[red]not started:[/] {err.message}", highlight=False)
            return 1
        broadcast = created.broadcast
        # Only the id goes to stdout, so ``id=$(herald broadcast send ...)`` works.
        err_console.print(
            f"broadcast {broadcast.id}: {broadcast.total} recipients at "
            f"{broadcast.rate_per_second:g}/s",
            highlight=False,
        )
        if follow:
            broadcast = await _follow(engine, tenant, broadcast.id)
            err_console.print(_summary(broadcast), highlight=False)
        else:
            err_console.print(f"progress: herald broadcast status {broadcast.id}", highlight=False)
        print(broadcast.model_dump_json() if as_json else broadcast.id)
        return 0
    finally:
        await engine.dispose()


@broadcast_app.command("status")
def status(
    broadcast_id: Annotated[str, typer.Argument(metavar="ID", help="The broadcast's id.")],
    follow: Annotated[
        bool, typer.Option(help="Show a progress bar until every recipient is done.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """A broadcast's progress: started, sent, failed, suppressed (with bars until done)."""
    try:
        wanted = uuid.UUID(broadcast_id)
    except ValueError as err:
        err_console.print(f"[red]not a broadcast id:[/] {broadcast_id}")
        raise typer.Exit(2) from err
    raise typer.Exit(asyncio.run(_status(wanted, follow=follow and not as_json, as_json=as_json)))


async def _status(broadcast_id: uuid.UUID, *, follow: bool, as_json: bool) -> int:
    from api.services.broadcasts import get_broadcast, tenant_of
    from herald.db import make_engine

    engine = make_engine(get_settings(), pool_size=1)
    try:
        tenant = await tenant_of(engine, broadcast_id)
        if tenant is None:
            err_console.print(f"[red]no broadcast {broadcast_id}[/]")
            return 1
        if follow:
            view = await _follow(engine, tenant, broadcast_id)
        else:
            view = await get_broadcast(engine, tenant, broadcast_id)
        if as_json:
            print(view.model_dump_json())
        else:
            console.print(_summary(view), highlight=False)
        return 0
    finally:
        await engine.dispose()


def _summary(view: BroadcastOut) -> str:
    return (
        f"{view.status.value}: {view.started}/{view.total} started · {view.sent} sent · "
        f"{view.failed} failed · {view.suppressed} suppressed · {view.cancelled} cancelled · "
        f"{view.in_flight} in flight"
    )


async def _follow(engine: Any, tenant: Any, broadcast_id: uuid.UUID) -> BroadcastOut:
    """Progress bars (started of the audience, done of those started) until the broadcast
    has ended and every recipient it started has too."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from api.services.broadcasts import get_broadcast

    columns = (TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TextColumn("{task.fields[note]}"), console=err_console) as bars:
        started = bars.add_task("started", total=None, note="")
        done = bars.add_task("done", total=None, note="")
        while True:
            view = await get_broadcast(engine, tenant, broadcast_id)
            ended = view.sent + view.failed + view.suppressed + view.cancelled
            bars.update(started, completed=view.started, total=view.total, note=view.status.value)
            bars.update(
                done,
                completed=ended,
                total=view.started if view.status.value != "running" else view.total,
                note=f"{view.sent} sent · {view.failed} failed · {view.suppressed} suppressed",
            )
            if view.status.value != "running" and view.in_flight == 0:
                return view
            await asyncio.sleep(POLL_SECONDS)


def _rows(path: Path, topic: str | None) -> Iterator[tuple[int, str, str]]:
    """(line, topic, user id) for each row of the CSV: a header naming ``user_id`` (and
    optionally ``topic``) columns, or else user ids in the first column."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip().lower() for name in header]
        has_header = "user_id" in names
        user_column = names.index("user_id") if has_header else 0
        topic_column = names.index("topic") if has_header and "topic" in names else None
        if topic_column is None and topic is None:
            raise ValueError("name the topic with --topic, or give the CSV a 'topic' column")
        if not has_header:
            yield 1, topic or "", header[0].strip()
        for line, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            row_topic = row[topic_column].strip() if topic_column is not None else topic
            yield line, row_topic or topic or "", row[user_column].strip()


@topic_app.command("import")
def import_subscribers(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A CSV file.")],
    topic: Annotated[
        str | None, typer.Option(help="The topic, for a CSV without a 'topic' column.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant name.")] = "demo",
) -> None:
    """Subscribe the users of a CSV to topics (created if new), with a progress bar.

    The CSV has a header with a ``user_id`` column (and a ``topic`` column, or
    ``--topic``), or holds only user ids, one per line. Rows with an invalid user id or
    topic key are skipped and reported.
    """
    try:
        rows = list(_rows(file, topic))
    except (ValueError, IndexError, UnicodeDecodeError) as err:
        err_console.print(f"[red]cannot read {file}:[/] {err}", highlight=False)
        raise typer.Exit(2) from err
    raise typer.Exit(asyncio.run(_import(rows, tenant)))


async def _import(rows: list[tuple[int, str, str]], tenant_name: str) -> int:
    from pydantic import TypeAdapter, ValidationError
    from rich.progress import Progress

    from api.services import topics
    from herald.contracts import TopicKey, UserId
    from herald.db import make_engine
    from herald.tenants import tenant_by_name

    user_ids: TypeAdapter[str] = TypeAdapter(UserId)
    topic_keys: TypeAdapter[str] = TypeAdapter(TopicKey)
    by_topic: dict[str, list[str]] = {}
    skipped: list[int] = []
    for line, key, user_id in rows:
        try:
            by_topic.setdefault(topic_keys.validate_python(key), []).append(
                user_ids.validate_python(user_id)
            )
        except ValidationError:
            skipped.append(line)
    engine = make_engine(get_settings(), pool_size=1)
    try:
        tenant = await tenant_by_name(engine, tenant_name)
        if tenant is None:
            err_console.print(f"[red]no tenant {tenant_name!r}[/]")
            return 1
        added = 0
        with Progress(console=err_console) as progress:
            task = progress.add_task("subscribing", total=sum(map(len, by_topic.values())))
            for key, members in by_topic.items():
                await topics.ensure_topic(engine, tenant.id, key)
                for start in range(0, len(members), IMPORT_CHUNK):
                    chunk = members[start : start + IMPORT_CHUNK]
                    outcome = await topics.subscribe(engine, tenant.id, key, chunk)
                    added += outcome.added
                    progress.advance(task, len(chunk))
        for key in by_topic:
            count = (await topics.get_topic(engine, tenant.id, key)).subscribers
            console.print(f"{key}: {count} subscribers", highlight=False)
        console.print(f"added {added} subscriptions", highlight=False)
        if skipped:
            lines = ", ".join(map(str, skipped[:10])) + (" …" if len(skipped) > 10 else "")
            err_console.print(
                f"[yellow]skipped {len(skipped)} rows with an invalid user id or topic[/] "
                f"(lines {lines})",
                highlight=False,
            )
        return 0
    finally:
        await engine.dispose()
