"""Personal data never sits in Temporal in the clear: a real notification's history, as
``temporal workflow show`` prints it, holds no address, request data or rendered body;
Herald's codec endpoint turns its payloads back into the clear data, and the Temporal UI
(a real browser) shows the decoded input through it."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from devtools.devserver import TemporalDevServer, temporal_binary
from herald.codec import ENCODING
from herald.contracts import workflow_id_for
from herald.temporal import connect
from tests.e2e.test_temporal_cli import run_ok
from tests.harness import CHROMIUM, CHROMIUM_ARGS, Stack, Tenant, wait_for_status


class Sent:
    """One notification sent with recognisable personal data."""

    def __init__(
        self, notification_id: str, address: str, secret: str, subject: str, body: str
    ) -> None:
        self.id, self.address, self.secret = notification_id, address, secret
        self.subject, self.body = subject, body

    @property
    def needles(self) -> tuple[str, str, str]:
        """What must never show in the clear: the address, a data value, the rendered
        subject (the rendered body is not in the history at all)."""
        return self.address, self.secret, self.subject


async def send_personal(tenant: Tenant) -> Sent:
    """An email whose address, data and rendered body are each unique to this call."""
    marker = uuid.uuid4().hex[:10]
    address = f"ada.private.{marker}@example.org"
    user = await tenant.user(email=address)
    template = await tenant.template(
        "email", "<p>Dear {{ name }}, your code is {{ code }}.</p>", subject="Code {{ code }}"
    )
    secret = f"s3cr3t-{marker}"
    nid = await tenant.send("email", user["id"], template, {"name": "Ada", "code": secret})
    assert (await wait_for_status(tenant.client, nid))["status"] == "sent"
    return Sent(nid, address, secret, f"Code {secret}", f"your code is {secret}.")


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def readable(cli_json: str) -> str:
    """The CLI's JSON with every base64 string also decoded: payload bytes are base64 in
    it, so data in the clear would be found only once decoded."""
    decoded = []
    for text in _strings(json.loads(cli_json)):
        try:
            decoded.append(base64.b64decode(text, validate=True).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            pass
    return "\n".join([cli_json, *decoded])


def show(server: TemporalDevServer, workflow_id: str, *extra: str) -> str:
    """``temporal workflow show`` of one notification, as JSON."""
    return run_ok(
        [
            temporal_binary(),
            "workflow",
            "show",
            "--workflow-id",
            workflow_id,
            "--address",
            server.address,
            "--output",
            "json",
            *extra,
        ]
    )


def input_payloads(history_json: str) -> list[dict[str, Any]]:
    """The payloads of the workflow's input, as the CLI printed them."""
    events = json.loads(history_json)["events"]
    started = events[0]["workflowExecutionStartedEventAttributes"]
    payloads: list[dict[str, Any]] = started["input"]["payloads"]
    return payloads


async def test_the_history_holds_no_personal_data_and_the_codec_endpoint_reads_it(
    tenant: Tenant, stack: Stack, temporal_server: TemporalDevServer
) -> None:
    sent = await send_personal(tenant)
    workflow_id = workflow_id_for(sent.id)

    shown = show(temporal_server, workflow_id)
    in_the_clear = readable(shown)
    for needle in sent.needles:
        assert needle not in in_the_clear, needle
    assert ENCODING.decode() in in_the_clear
    # Every payload of the history in raw bytes too, not only what the CLI prints.
    client = await connect(stack.settings)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    raw = b"".join(event.SerializeToString() for event in history.events)
    for needle in sent.needles:
        assert needle.encode() not in raw, needle

    # The codec endpoint, as the UI calls it, gives the input back in the clear.
    payloads = input_payloads(shown)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        decoded = await api.post("/codec/decode", json={"payloads": payloads})
    assert decoded.status_code == 200, decoded.text
    (clear,) = decoded.json()["payloads"]
    data = json.loads(base64.b64decode(clear["data"]))
    assert sent.secret in json.dumps(data)

    # And the CLI pointed at it shows the rendered subject and the address in the clear:
    # what the first check would have found without the codec.
    through = readable(
        show(temporal_server, workflow_id, "--codec-endpoint", f"{stack.api_url}/codec")
    )
    for needle in sent.needles:
        assert needle in through, needle
    # The rendered body stayed in the worker: no history holds it, even decoded.
    assert sent.body not in through


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Debian's chromium at {CHROMIUM}")
async def test_the_temporal_ui_shows_the_decoded_input(
    tenant: Tenant, stack: Stack, temporal_server: TemporalDevServer
) -> None:
    from playwright.async_api import async_playwright

    sent = await send_personal(tenant)
    url = f"{temporal_server.ui_url}/namespaces/default/workflows/{workflow_id_for(sent.id)}"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            decoded: list[str] = []
            page.on(
                "response",
                lambda response: (
                    decoded.append(response.url)
                    if urlsplit(response.url).path == "/codec/decode" and response.ok
                    else None
                ),
            )
            await page.goto(url)
            await page.get_by_text(sent.secret).first.wait_for(timeout=30_000)
        finally:
            await browser.close()
    # The UI decoded through Herald (it asks with ``?preserveStorageRefs=true``).
    assert decoded, "the UI never called the codec endpoint"
