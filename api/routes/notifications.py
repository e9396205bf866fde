"""``/v1/notifications``: submit, read, list, cancel, resend."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import BackendsDep, EngineDep, ReadOrSendTenantDep, SendTenantDep
from api.schemas.notifications import (
    EventOut,
    NotificationAccepted,
    NotificationOut,
    NotificationPage,
)
from api.services import notifications
from herald.contracts import Channel, NotificationBody, NotificationRequest, Status, Text
from herald.tenants import TenantContext

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Same key and body → the first notification (200); other body → 409.",
    ),
]


async def _submit(
    body: NotificationRequest,
    request: Request,
    response: Response,
    backends: BackendsDep,
    tenant: TenantContext,
    idempotency_key: str | None,
) -> NotificationAccepted:
    outcome = await notifications.submit(
        backends,
        tenant,
        body,
        idempotency_key=idempotency_key,
        request_id=getattr(request.state, "request_id", None),
    )
    status_url = str(request.url_for("get_notification", notification_id=outcome.notification.id))
    response.status_code = 202 if outcome.created else 200
    response.headers["Location"] = status_url
    return NotificationAccepted(
        id=outcome.notification.id, status=outcome.notification.status, status_url=status_url
    )


_ACCEPTED = {
    "status_code": 202,
    "responses": {
        200: {"description": "Replay of an earlier request with the same Idempotency-Key"}
    },
}


@router.post("", **_ACCEPTED)  # type: ignore[arg-type]
async def submit(
    body: NotificationRequest,
    request: Request,
    response: Response,
    backends: BackendsDep,
    tenant: SendTenantDep,
    idempotency_key: IdempotencyKey = None,
) -> NotificationAccepted:
    """Send a notification on the channel named in the body."""
    return await _submit(body, request, response, backends, tenant, idempotency_key)


def _channel_route(channel: Channel) -> None:
    async def submit_on_channel(
        body: NotificationBody,
        request: Request,
        response: Response,
        backends: BackendsDep,
        tenant: SendTenantDep,
        idempotency_key: IdempotencyKey = None,
    ) -> NotificationAccepted:
        try:
            full = NotificationRequest(channel=channel, **body.model_dump())
        except ValidationError as err:  # e.g. a fallback that repeats the path's channel
            raise RequestValidationError(
                [{**error, "loc": ("body", "fallback")} for error in err.errors()]
            ) from err
        return await _submit(full, request, response, backends, tenant, idempotency_key)

    submit_on_channel.__doc__ = f"Send a notification by {channel.value}."
    router.add_api_route(
        f"/{channel.value}",
        submit_on_channel,
        methods=["POST"],
        name=f"submit_{channel.value}",
        **_ACCEPTED,  # type: ignore[arg-type]
    )


for _channel in Channel:
    _channel_route(_channel)


@router.get("")
async def list_notifications(
    engine: EngineDep,
    tenant: ReadOrSendTenantDep,
    status: Status | None = None,
    channel: Channel | None = None,
    user_id: Annotated[Text | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[Text | None, Query(max_length=512)] = None,
    template: Annotated[Text | None, Query(max_length=128)] = None,
    broadcast_id: uuid.UUID | None = None,
) -> NotificationPage:
    """Newest first, filtered by status, channel, user, template and broadcast."""
    return await notifications.list_notifications(
        engine,
        tenant,
        status=status,
        channel=channel,
        user_id=user_id,
        limit=limit,
        cursor=cursor,
        template=template,
        broadcast_id=broadcast_id,
    )


@router.get("/{notification_id}", name="get_notification")
async def get_notification(
    notification_id: uuid.UUID, engine: EngineDep, tenant: ReadOrSendTenantDep
) -> NotificationOut:
    """Where the notification is now."""
    return await notifications.get_notification(engine, tenant, notification_id)


@router.get("/{notification_id}/events")
async def list_events(
    notification_id: uuid.UUID, engine: EngineDep, tenant: ReadOrSendTenantDep
) -> list[EventOut]:
    """Every transition, oldest first."""
    return await notifications.list_events(engine, tenant, notification_id)


@router.post("/{notification_id}/cancel", status_code=202)
async def cancel(
    notification_id: uuid.UUID, backends: BackendsDep, tenant: SendTenantDep
) -> NotificationOut:
    """Stop the notification if it has not been sent; 409 if it already ended."""
    return await notifications.cancel(backends, tenant, notification_id)


@router.post("/{notification_id}/resend", status_code=202)
async def resend(
    notification_id: uuid.UUID, backends: BackendsDep, tenant: SendTenantDep
) -> NotificationOut:
    """Send again a notification that has ended (a new send cycle, logged)."""
    return await notifications.resend(backends, tenant, notification_id)
