"""A Server-Sent Events client for the tests: what an ``EventSource`` receives, as
``Event``s on a queue, read in the background."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    """One event of the stream."""

    type: str
    id: str | None
    data: Any


class EventStream:
    """``async with EventStream(client, token, last_event_id=...) as stream``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: str,
        *,
        last_event_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._client = client
        self._params = {"token": token}
        self._headers = dict(headers or {})
        if last_event_id is not None:
            self._headers["Last-Event-ID"] = last_event_id
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.response: httpx.Response | None = None
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.comments = 0

    async def __aenter__(self) -> EventStream:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._opened.wait(), 10)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _read(self) -> None:
        async with self._client.stream(
            "GET", "/v1/inbox/stream", params=self._params, headers=self._headers
        ) as response:
            self.response = response
            self._opened.set()
            if response.status_code != 200:
                await response.aread()
                return
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    self.comments += 1
                elif line == "":
                    if "data" in fields:
                        self.events.put_nowait(
                            Event(
                                fields.get("event", "message"),
                                fields.get("id"),
                                json.loads(fields["data"]),
                            )
                        )
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")

    async def next(self, timeout: float = 10.0) -> Event:
        """The next event (AssertionError if none comes in time)."""
        try:
            return await asyncio.wait_for(self.events.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no event within {timeout} s") from None

    async def until(self, type_: str, count: int, timeout: float = 20.0) -> list[Event]:
        """Every event read until ``count`` of ``type_`` have come."""
        got: list[Event] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while sum(event.type == type_ for event in got) < count:
            left = deadline - asyncio.get_running_loop().time()
            got.append(await self.next(max(left, 0.01)))
        return got

    async def quiet(self, seconds: float) -> list[Event]:
        """Whatever comes within ``seconds``."""
        got: list[Event] = []
        with contextlib.suppress(AssertionError):
            while True:
                got.append(await self.next(seconds))
        return got
