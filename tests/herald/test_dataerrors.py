"""Which database errors are the client's (``herald.dataerrors``): each value PostgreSQL or
its driver refuses, produced for real, is a data error with a readable reason; a
connection that cannot be made is not. The API answers such an error with a 422 naming
the query parameter that carried it, through its one error handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from api.errors import install_error_handlers
from herald.dataerrors import describe, is_data_error
from herald.ports import free_port

DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AsyncEngine]:
    made = create_async_engine(DATABASE, pool_size=1)
    yield made
    await made.dispose()


async def refusal(engine: AsyncEngine, sql: str, value: Any) -> Exception:
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql), {"x": value})
    except Exception as err:
        return err
    raise AssertionError(f"{sql} accepted {value!r}")


@pytest.mark.parametrize(
    ("sql", "value", "reason"),
    [
        ("SELECT CAST(:x AS text)", "a\x00b", "NUL"),
        ("SELECT CAST(:x AS jsonb)", '{"a": "\\u0000"}', "NUL"),
        ("SELECT CAST(:x AS text)", "a\ud800b", "UTF-8"),
        ("SELECT CAST(:x AS integer)", 2**40, "out of int32 range"),
        ("SELECT CAST(CAST(:x AS text) AS integer)", "12x", "invalid input syntax"),
        ("SELECT CAST(CAST(:x AS text) AS date)", "2020-13-45", "out of range"),
        ("SELECT CAST(:x AS uuid)", "not-a-uuid", "invalid UUID"),
        ("SELECT CAST(CAST(:x AS text) AS numeric(3, 0))", "123456", "overflow"),
    ],
)
async def test_values_the_database_refuses_are_the_clients_fault(
    engine: AsyncEngine, sql: str, value: Any, reason: str
) -> None:
    err = await refusal(engine, sql, value)

    assert is_data_error(err), repr(err)
    assert reason in describe(err).reason


async def test_a_database_that_cannot_be_reached_is_an_outage() -> None:
    nowhere = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x")
    try:
        err = await refusal(nowhere, "SELECT 1", None)
    finally:
        await nowhere.dispose()

    assert not is_data_error(err)


async def test_the_api_answers_a_refused_value_with_422_naming_the_query_parameter(
    engine: AsyncEngine,
) -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things")
    async def things(name: str, number: int = 0) -> None:
        # No edge validation here: the database is the only check.
        async with engine.connect() as conn:
            await conn.execute(
                text("SELECT CAST(:x AS text), CAST(:n AS integer)"), {"x": name, "n": number}
            )

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        nul = await client.get("/things?name=a%00b")
        huge = await client.get(f"/things?name=ok&number={2**40}")
        fine = await client.get("/things?name=ok")

    assert nul.status_code == 422
    assert nul.json()["detail"][0]["loc"] == ["query", "name"]
    assert "NUL" in nul.json()["detail"][0]["msg"]
    assert huge.status_code == 422
    assert "out of int32 range" in huge.json()["detail"][0]["msg"]
    assert fine.status_code == 200
