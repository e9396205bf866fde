"""The plain-queue API: ``POST /emails`` stores the email, publishes it with a publisher
confirm and answers ``202``.

    python -m benchmarks.peer.api CONFIG_JSON
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, EmailStr

from benchmarks.peer.config import PeerConfig
from herald.runtime import tune_gc


class EmailRequest(BaseModel):
    """One email to send."""

    to: EmailStr
    subject: str
    html: str


def make_app(config: PeerConfig) -> FastAPI:
    """The API, with its connection pool and confirming channel made in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        size = config.database_pool_size
        app.state.db = await asyncpg.create_pool(config.database_dsn, min_size=size, max_size=size)
        connection = await aio_pika.connect_robust(config.amqp_url)
        # One channel carries every publish; confirms arrive in order per channel, and
        # aio-pika matches each to its publish, so concurrent requests do not wait for
        # each other's confirms.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        app.state.exchange = channel.default_exchange
        yield
        await connection.close()
        await app.state.db.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/emails", status_code=202)
    async def submit(email: EmailRequest, request: Request) -> dict[str, Any]:
        """Store the email, queue it durably, answer once the broker has confirmed it."""
        email_id = uuid.uuid4()
        await request.app.state.db.execute(
            "INSERT INTO emails (id, recipient, subject, html, status) "
            "VALUES ($1, $2, $3, $4, 'queued')",
            email_id,
            email.to,
            email.subject,
            email.html,
        )
        body = {"id": str(email_id)} | email.model_dump()
        await request.app.state.exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(email_id),
                headers={"x-attempt": 1},
            ),
            routing_key=config.queue,
            mandatory=True,
        )
        return {"id": str(email_id), "status": "queued"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness."""
        return {"status": "ok"}

    return app


if __name__ == "__main__":
    settings = PeerConfig.parse(sys.argv[1])
    application = make_app(settings)
    tune_gc()
    uvicorn.run(
        application,
        host="127.0.0.1",
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )
