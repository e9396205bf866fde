"""``python -m tests.chaos.run [--full]``: run the chaos suite once and print its summary
as one JSON line (exit status 1 if a guarantee was broken)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tests.chaos.suite import ChaosConfig, run_chaos


def passed(summary: dict[str, object]) -> bool:
    """Whether the run kept every promise the suite checks."""
    return (
        summary["lost"] == 0
        and summary["agreement"] is True
        and summary["deliveries_match"] is True
        and summary["unexplained_duplicates"] == 0
        and summary["unknown_keys"] == 0
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="2,000 notifications, 2 kills each")
    parser.add_argument("--size", type=int, help="notifications to submit")
    parser.add_argument("--no-amqp", action="store_true", help="REST only (no bridge)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr)
    overrides: dict[str, object] = {"amqp": not args.no_amqp, "seed": args.seed}
    if args.size:
        overrides["size"] = args.size
    config = ChaosConfig.full(**overrides) if args.full else ChaosConfig(**overrides)  # type: ignore[arg-type]
    summary = run_chaos(config)
    print(json.dumps(summary, sort_keys=False))
    return 0 if passed(summary) else 1


if __name__ == "__main__":
    raise SystemExit(main())
