"""More submissions than the API may start at once are refused at once with 503 and
Retry-After, counted in /metrics; every one it accepted is still delivered."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.processes import ManagedProcess, herald_argv, wait_http
from devtools.sinks import Sinks
from herald.ports import free_port
from tests.harness import Stack, Tenant, wait_for_status

BURST = 60


@pytest.fixture(scope="module")
def narrow_api(stack: Stack, run_dir: Path) -> Iterator[str]:
    """A second API process of the session's Herald that starts one submission at a time
    and never waits for a slot."""
    settings = stack.settings.model_copy(
        update={
            "api_port": free_port(),
            "api_max_concurrent_submissions": 1,
            "api_submission_wait_seconds": 0.0,
        }
    )
    api = ManagedProcess("api-narrow", herald_argv("api"), settings.as_env(), run_dir / "logs")
    api.start()
    url = f"http://127.0.0.1:{settings.api_port}"
    wait_http(f"{url}/healthz")
    yield url
    api.stop(timeout=10)


def _refusals(metrics: str) -> float:
    found = re.search(r"^herald_api_overload_refusals_total (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_burst_beyond_the_admission_limit_is_refused_fast_and_the_rest_delivered(
    narrow_api: str, tenant: Tenant, sinks: Sinks
) -> None:
    users = [await tenant.user() for _ in range(BURST)]
    key = await tenant.template("email", "<p>Your code is ready.</p>", "Code")
    headers = {"Authorization": tenant.client.headers["Authorization"]}
    limits = httpx.Limits(max_connections=BURST)
    async with httpx.AsyncClient(
        base_url=narrow_api, headers=headers, timeout=30, limits=limits
    ) as client:
        # Open every connection first, so the burst arrives at once rather than as fast
        # as connections can be set up.
        await asyncio.gather(*(client.get("/healthz") for _ in range(BURST)))
        before = _refusals((await client.get("/metrics")).text)
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/notifications",
                    json={"channel": "email", "user_id": user["id"], "template": key},
                )
                for user in users
            )
        )
        after = _refusals((await client.get("/metrics")).text)

    accepted = [(a, u) for a, u in zip(answers, users, strict=True) if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 503]
    assert len(accepted) + len(refused) == BURST, [a.status_code for a in answers]
    assert accepted and refused  # one slot, sixty callers at once
    for answer in refused:
        assert answer.headers["Retry-After"] == "1"
        assert "retry" in answer.json()["detail"]
    assert after - before == len(refused)

    for answer, user in accepted:
        final = await wait_for_status(tenant.client, answer.json()["id"], timeout=60)
        assert final["status"] == "sent", final
        assert len(sinks.state.received("email", to=user["email"])) == 1
    delivered = {user["id"] for _, user in accepted}
    for user in users:
        if user["id"] not in delivered:  # refused: nothing of it was accepted
            assert sinks.state.received("email", to=user["email"]) == []
