"""Schemathesis against the live API, from its ``/openapi.json`` with a real API key: whatever it
sends, no 5xx and no response outside the documented schema."""

from __future__ import annotations

import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.main import create_app
from herald.settings import Settings
from tests.harness import Stack, new_tenant

# Bounded for CI: examples per operation (about 20 operations).
MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
async def fuzz_key(stack: Stack) -> str:
    """A real API key of a tenant whose rate limit the fuzzer cannot reach."""
    tenant = await new_tenant(stack, f"fuzz-{uuid.uuid4().hex[:8]}", rate_limit_per_minute=10**6)
    await tenant.client.aclose()
    return str(tenant.client.headers["Authorization"]).removeprefix("Bearer ")


# The document the API serves (checked against the live one below), loaded at collection.
SPEC = create_app(Settings()).openapi()
schema = schemathesis.openapi.from_dict(SPEC)


def test_the_live_api_serves_this_schema(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/openapi.json").json() == SPEC


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case, stack: Stack, fuzz_key: str
) -> None:
    case.call_and_validate(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {fuzz_key}"},
        checks=[not_a_server_error, response_schema_conformance],
        timeout=30,
    )
