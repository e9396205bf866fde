"""The console's pages, one module each; ``ROUTERS`` is what the console serves (its
navigation is ``api/console/nav.py``)."""

from __future__ import annotations

from fastapi import APIRouter

from api.console.pages import (
    broadcasts,
    flows,
    health,
    integrations,
    keys,
    notifications,
    overview,
    signin,
    templates,
    topics,
    users,
    webhooks,
)

ROUTERS: tuple[APIRouter, ...] = (
    signin.router,
    overview.router,
    notifications.router,
    templates.router,
    users.router,
    keys.router,
    health.router,
    webhooks.router,
    integrations.router,
    topics.router,
    broadcasts.router,
    flows.router,
)
