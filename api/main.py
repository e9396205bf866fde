"""The FastAPI application: ``uvicorn api.main:app`` or ``herald api``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import FileResponse

from api.admission import SubmissionGate
from api.backends import Backends
from api.console import STATIC, create_console
from api.eager import eager_workers
from api.errors import install_error_handlers
from api.middleware import AccessMiddleware, BodyLimitMiddleware, RequestIdMiddleware
from api.ratelimit import RateLimiter
from api.revocations import revocation_listener, template_listener
from api.routes import (
    api_keys,
    batch,
    broadcasts,
    flows,
    health,
    inbox,
    inbox_stream,
    notifications,
    templates,
    topics,
    unsubscribe,
    users,
)
from api.routes import integrations as integration_routes
from api.routes import receipts as receipt_routes
from api.routes import receipts_email as email_receipt_routes
from api.routes import receipts_vonage as vonage_receipt_routes
from api.routes import webhooks as webhook_routes
from api.routes.codec import create_codec_app
from herald import backlog
from herald.db import make_engine
from herald.inbox.origins import OriginCache
from herald.inbox.stream import InboxHub
from herald.logs import configure_logging
from herald.runtime import tune_gc
from herald.settings import Settings, get_settings
from herald.temporal import connect
from herald.tenants import ApiKeyCache


def create_app(settings: Settings | None = None) -> FastAPI:
    """An app with its clients made in the lifespan and kept on ``app.state``."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        # Lazy, so the API starts while Temporal is down; but a worker (eager start)
        # needs a connected client.
        temporal = await connect(settings, lazy=not settings.api_eager)
        workers = AsyncExitStack()
        if settings.api_eager:
            await workers.enter_async_context(eager_workers(temporal, settings))
        app.state.backends = Backends(
            engine=engine,
            temporal=temporal,
            settings=settings,
            admission=SubmissionGate(
                settings.api_max_concurrent_submissions, settings.api_submission_wait_seconds
            ),
        )
        app.state.api_keys = ApiKeyCache(engine, settings.api_key_cache_seconds)
        app.state.rate_limiter = RateLimiter(settings.redis_url)
        revocations = revocation_listener(settings.listen_url, app.state.api_keys)
        revocations.start()
        app.state.revocations = revocations
        # The intake's latest template versions are remembered while this listens.
        templates = template_listener(settings.listen_url)
        templates.start()
        # One LISTEN connection feeds every inbox stream of this process.
        app.state.inbox_hub = InboxHub(settings.listen_url)
        app.state.inbox_hub.start()
        app.state.inbox_origins = OriginCache(engine)
        # The retrying gauges the alerts read (herald/backlog.py).
        retrying = asyncio.create_task(
            backlog.sample_forever(engine, settings.backlog_sample_seconds)
        )
        yield
        retrying.cancel()
        await workers.aclose()
        await app.state.inbox_hub.stop()
        await revocations.stop()
        await templates.stop()
        await app.state.rate_limiter.close()
        await engine.dispose()

    app = FastAPI(
        title="Herald",
        version="1.0",
        summary="Durable email, SMS and push notifications.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (users.router, templates.router, notifications.router, health.router):
        app.include_router(router)
    app.include_router(unsubscribe.router)
    app.include_router(api_keys.router)
    app.mount("/console", create_console(settings, app.state))
    app.include_router(receipt_routes.router)
    app.include_router(email_receipt_routes.router)
    app.include_router(vonage_receipt_routes.router)
    app.include_router(webhook_routes.router)
    app.include_router(integration_routes.router)
    for router in (batch.router, topics.router, broadcasts.router):
        app.include_router(router)
    app.include_router(flows.router)
    app.include_router(inbox_stream.router)
    app.include_router(inbox.router)
    # The Temporal UI's codec endpoint, with CORS for the UI's origin (api/routes/codec.py).
    app.mount("/codec", create_codec_app(settings))
    # Browsers ask for it at the root, whatever page (the console, the docs) they show.
    app.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)

    # The last added runs first: request ids on every answer, then metrics and the access
    # log around everything else, so the body limit's 413 is counted and logged too.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        bulk_max_bytes=settings.max_bulk_request_bytes,
        is_bulk=is_bulk_route,
    )
    app.add_middleware(inbox_stream.InboxCorsMiddleware)
    app.add_middleware(AccessMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


async def favicon() -> FileResponse:
    """Herald's icon, cached for a day."""
    return FileResponse(
        STATIC / "favicon.ico",
        media_type="image/x-icon",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def is_bulk_route(path: str) -> bool:
    """Whether a path takes many items at once (``HERALD_MAX_BULK_REQUEST_BYTES``)."""
    return (
        path in ("/v1/notifications/batch", "/v1/broadcasts")
        or (path.startswith("/v1/topics/") and path.endswith("/subscribers"))
        # ... and their console forms (up to 10,000 user ids typed or pasted).
        or path in ("/console/broadcasts", "/console/broadcasts/-/review")
        or (path.startswith("/console/topics/") and path.endswith("/subscribers"))
        # A trigger names up to 1,000 recipients.
        or (path.startswith("/v1/flows/") and path.endswith("/trigger"))
        # A page of the Temporal UI decodes many payloads (each up to Temporal's 2 MB).
        or path.startswith("/codec/")
    )


def app() -> FastAPI:
    """Factory for ``uvicorn --factory api.main:app``."""
    settings = get_settings()
    configure_logging(settings.log_level, component="api")
    application = create_app(settings)
    tune_gc()
    return application
