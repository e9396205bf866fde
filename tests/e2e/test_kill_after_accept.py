"""SIGKILLs aimed at the email worker just after the SMTP server accepted a message:
the worker dies before or after it recorded ``sent``, while other sends of the same
worker are in flight. Whatever the moment, no event follows a notification's terminal
one, PostgreSQL's attempt count equals Temporal's, and a kill after ``sent`` was recorded
never causes a second copy.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from devtools.sinks import Rule, Sinks
from herald.contracts import workflow_id_for
from herald.settings import Settings
from herald.temporal import connect
from tests.harness import Stack, Tenant, events, wait_for_status

ROUNDS = 4
PER_ROUND = 3
TERMINAL = {"sent", "failed", "cancelled", "suppressed"}


class AimedKill:
    """Kills once, ``delay`` seconds after the first acceptance it is told of: from
    before the worker read the ``250`` to after it recorded ``sent``."""

    def __init__(self, kill: Callable[[], object], delay: float) -> None:
        self._kill = kill
        self._delay = delay
        self._armed = threading.Event()
        self.killed_at: list[float] = []

    def arm(self, _recipient: str) -> None:
        if not self._armed.is_set():
            self._armed.set()
            threading.Timer(self._delay, self._fire).start()

    def _fire(self) -> None:
        self.killed_at.append(time.time())
        self._kill()


async def test_kills_right_after_the_provider_accepted_neither_double_nor_confuse(
    tenant: Tenant, sinks: Sinks, stack: Stack, settings: Settings
) -> None:
    worker = stack.processes["worker-email"]
    template = await tenant.template("email", "<p>Receipt {{ n }}</p>", "Receipt")
    chance = random.Random(7)
    outcomes = []
    for round_ in range(ROUNDS):
        domain = f"r{round_}-{uuid.uuid4().hex[:6]}.example"
        aim = AimedKill(worker.kill, chance.uniform(0.0, 0.04))
        sinks.state.add_rule(Rule(match=f"@{domain}", on_accept=aim.arm))
        users = [await tenant.user(email=f"u{i}@{domain}") for i in range(PER_ROUND)]
        ids = [
            await tenant.send("email", user["id"], template, {"n": i})
            for i, user in enumerate(users)
        ]
        for _ in range(600):
            if aim.killed_at:
                break
            await asyncio.sleep(0.05)
        assert aim.killed_at, "no message of the round reached the sink"
        worker.start()
        for nid, user in zip(ids, users, strict=True):
            final = await wait_for_status(tenant.client, nid, timeout=120)
            outcomes.append((nid, user["email"], final, aim.killed_at[0]))
        await asyncio.to_thread(stack.wait_ready, "worker-email")

    client = await connect(settings)
    after_recorded = 0
    for nid, address, final, kill_time in outcomes:
        assert final["status"] == "sent", final
        log = await events(tenant.client, nid)
        statuses = [e["status"] for e in log]
        terminal_at = next(i for i, status in enumerate(statuses) if status in TERMINAL)
        assert terminal_at == len(statuses) - 1, (nid, statuses)
        result = await client.get_workflow_handle(workflow_id_for(nid)).result()
        assert result["attempts"] == final["attempts"], (nid, result, final)
        sent_at = datetime.fromisoformat(log[terminal_at]["at"]).timestamp()
        copies = sinks.state.received("email", to=address)
        if sent_at < kill_time:
            after_recorded += 1
            assert len(copies) == 1, (nid, len(copies))
        assert {copy.message_id for copy in copies} == {f"<{nid}@localhost>"}
    # The aim hit both sides of the write at least once over the rounds.
    assert after_recorded >= 1
