"""``herald producer add``: an AMQP user that publishes notification requests for one
tenant, with a password shown once.

The RabbitMQ user and its permissions are made with ``rabbitmqctl`` (see
``herald.producers`` for why not the management HTTP API), so the command runs where
``rabbitmqctl`` can reach the broker's node.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.console import Console

from herald.settings import get_settings

producer_app = typer.Typer(help="RabbitMQ producers: AMQP users that publish for a tenant.")
err_console = Console(stderr=True)


@producer_app.command("add")
def add(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new.")],
    test: Annotated[
        bool,
        typer.Option("--test", help="A test producer: its notifications never reach a provider."),
    ] = False,
    user: Annotated[
        str | None, typer.Option(help="AMQP user name (default: <tenant>-producer).")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="The user's password (default: generated, shown once).")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON object (amqp_url, amqp_user, tenant, test)."),
    ] = False,
) -> None:
    """Create a RabbitMQ user that may only publish to herald.requests, mapped to a tenant.

    Prints the AMQP URL to publish with (user and password included) alone on stdout, or
    with ``--json`` a JSON object holding it.
    """
    from herald.db import make_engine
    from herald.producers import NewProducer, ProducerError, add_producer

    settings = get_settings()

    async def create() -> NewProducer:
        engine = make_engine(settings, pool_size=1)
        try:
            return await add_producer(
                engine,
                settings.amqp_url,
                tenant=tenant,
                amqp_user=user,
                password=password,
                test=test,
            )
        finally:
            await engine.dispose()

    try:
        made = asyncio.run(create())
    except ProducerError as err:
        err_console.print(f"[red]no producer added:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from err
    kind = "test producer" if test else "producer"
    shown = "" if password else "; the password is shown only this once"
    err_console.print(
        f"{kind} {made.amqp_user} publishes for tenant {made.tenant.name}{shown}",
        highlight=False,
        soft_wrap=True,
    )
    if as_json:
        fields = {"amqp_url": made.amqp_url, "amqp_user": made.amqp_user}
        print(json.dumps(fields | {"tenant": made.tenant.name, "test": test}))
    else:
        print(made.amqp_url)
