"""The chaos suite at CI size: 300 notifications (half REST, half RabbitMQ) while every
Herald process type (API, bridge, four workers, bounces, webhooks) is SIGKILLed once and
RabbitMQ and the Temporal server restart once.

``HERALD_CHAOS_FULL=1`` runs the full size (2,000 notifications, two kills of each);
``python -m tests.chaos.run --full`` does the same outside pytest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.chaos.run import passed
from tests.chaos.suite import ChaosConfig, run_chaos


@pytest.mark.timeout(1800)
def test_no_notification_is_lost_or_sent_twice_under_chaos(tmp_path: Path) -> None:
    full = os.environ.get("HERALD_CHAOS_FULL") == "1"
    config = ChaosConfig.full(work_dir=tmp_path) if full else ChaosConfig(work_dir=tmp_path)
    summary = run_chaos(config)
    print(json.dumps(summary))
    assert summary["accepted"] == config.size
    assert summary["lost"] == 0, summary["lost_ids"]
    assert summary["agreement"], summary["agreement_examples"]
    assert summary["deliveries_match"], summary
    assert summary["unexplained_duplicates"] == 0 and summary["unknown_keys"] == 0
    assert all(count >= config.kills_per_process for count in summary["kills"].values())
    # Every Herald process type: API, bridge, the six workers, bounces and webhooks.
    assert len(summary["kills"]) == 10
    assert summary["restarts"] == {"rabbitmq": 1, "temporal": 1}
    assert passed(summary)
