"""A body over the limit is refused with 413 and still counted and logged like every
other answer: the request metrics and the access log see every request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.in_process import in_process_client, in_process_settings

LIMIT = 1024


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # The body limit answers before authentication, so no database or key is needed.
    async with in_process_client(in_process_settings(max_request_bytes=LIMIT)) as made:
        yield made


async def requests_counted(client: httpx.AsyncClient, route: str, status: str) -> float:
    """``herald_api_requests_total`` for POST ``route`` answered ``status``, from /metrics.

    The body limit answers before routing, so a 413 is under the route ``unmatched``.
    """
    exposition = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(exposition):
        if family.name == "herald_api_requests":
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and (
                    labels["method"],
                    labels["route"],
                    labels["status"],
                ) == ("POST", route, status):
                    return float(sample.value)
    return 0.0


async def _streamed(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 256):
        yield body[start : start + 256]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_413_is_counted_in_the_request_metrics_and_logged_once(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, declared: bool
) -> None:
    body = b'{"data": "' + b"x" * (2 * LIMIT) + b'"}'
    before = await requests_counted(client, "unmatched", "413")
    caplog.set_level(logging.INFO, logger="api.access")

    response = await client.post(
        "/v1/notifications",
        content=body if declared else _streamed(body),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["detail"]
    assert response.headers["x-request-id"]
    assert await requests_counted(client, "unmatched", "413") == before + 1
    logged = [
        record
        for record in caplog.records
        if record.name == "api.access" and getattr(record, "status", None) == 413
    ]
    assert [(r.method, r.route) for r in logged] == [("POST", "unmatched")]  # type: ignore[attr-defined]
