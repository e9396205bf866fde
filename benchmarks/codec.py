"""What the payload codec (herald/codec.py) costs per notification, in CPU.

Every payload of a recorded clean email send (``tests/workflows/histories/``: workflow
input, local activity inputs and results, status events) is turned back into its value,
then encoded and decoded as the client and worker do it, once with the converter alone
and once with Herald's converter (converter + AES-256-GCM), in the same run.

    .venv/bin/python -m benchmarks.codec [--rounds 2000] [--history v2-clean-send]

Prints one JSON object: CPU microseconds per notification with and without the codec,
the codec's own share, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from herald.settings import Settings
from herald.temporal import data_converter

HISTORIES = Path(__file__).resolve().parents[1] / "tests" / "workflows" / "histories"


# Search attributes and headers do not go through the codec.
_NOT_ENCODED = ("searchAttributes", "header")


def _payloads(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``{"metadata": ..., "data": ...}`` in a history's JSON the codec encodes."""
    if isinstance(node, dict):
        if "metadata" in node and "data" in node:
            yield node
            return
        for key, value in node.items():
            if key not in _NOT_ENCODED:
                yield from _payloads(value)
    elif isinstance(node, list):
        for value in node:
            yield from _payloads(value)


def notification_values(history: str) -> list[Any]:
    """The values one notification of that history puts in Temporal."""
    events = json.loads((HISTORIES / f"{history}.json").read_text())
    return [json.loads(base64.b64decode(payload["data"])) for payload in _payloads(events)]


async def _cpu_per_round(converter: DataConverter, values: list[Any], rounds: int) -> float:
    """CPU seconds to encode and decode ``values`` once (the mean over ``rounds``)."""
    started = time.process_time()
    for _ in range(rounds):
        await converter.decode(await converter.encode(values))
    return (time.process_time() - started) / rounds


async def measure(history: str, rounds: int) -> dict[str, Any]:
    """The codec's cost on one notification's payloads."""
    values = notification_values(history)
    with_codec = data_converter(Settings())
    # Warm up both (imports, pydantic schemas, the AES context).
    await _cpu_per_round(pydantic_data_converter, values, 50)
    await _cpu_per_round(with_codec, values, 50)
    plain = await _cpu_per_round(pydantic_data_converter, values, rounds)
    encrypted = await _cpu_per_round(with_codec, values, rounds)
    size = sum(len(json.dumps(value)) for value in values)
    return {
        "history": history,
        "payloads_per_notification": len(values),
        "payload_bytes_per_notification": size,
        "rounds": rounds,
        "cpu_us_per_notification_without_codec": round(plain * 1e6, 1),
        "cpu_us_per_notification_with_codec": round(encrypted * 1e6, 1),
        "codec_cpu_us_per_notification": round((encrypted - plain) * 1e6, 1),
        "ratio": round(encrypted / plain, 2),
    }


def main() -> None:
    """Run and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--history", default="v2-clean-send")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.history, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
