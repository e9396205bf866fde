"""Admission control for submissions: start promptly or refuse at once.

When more notifications arrive than the stack can start, queueing them inside the API
only makes every caller wait longer (seconds, then tens of seconds) while the caller
cannot tell the API is overloaded. Instead, at most ``limit`` submissions are being
started at a time; a request that finds no free slot within ``wait_seconds`` is answered
``503`` with ``Retry-After`` straight away, nothing of it accepted, and counted in
``herald_api_overload_refusals_total``. Producers that retry after the hint keep what
they send; the ones already accepted are started and delivered as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import Counter

from api.errors import ApiError

OVERLOAD_REFUSALS = Counter(
    "herald_api_overload_refusals_total",
    "Submissions refused with 503 because the API was starting as many as it may at once",
)


class SubmissionGate:
    """Bounds how many submissions one API process starts at once."""

    def __init__(self, limit: int, wait_seconds: float, retry_after_seconds: int = 1) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._wait = wait_seconds
        self._retry_after = str(retry_after_seconds)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot while a submission is started; 503 if none frees up in time."""
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: taken without waiting
        else:
            try:
                await asyncio.wait_for(self._slots.acquire(), self._wait)
            except TimeoutError:
                OVERLOAD_REFUSALS.inc()
                raise ApiError(
                    503,
                    "Herald is accepting as many notifications as it can start right now; "
                    f"nothing was accepted, retry in {self._retry_after}s",
                    headers={"Retry-After": self._retry_after},
                ) from None
        try:
            yield
        finally:
            self._slots.release()
