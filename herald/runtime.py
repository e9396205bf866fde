"""Process-wide tuning for Herald's long-running services (API, workers, bridge)."""

from __future__ import annotations

import gc

# Objects allocated per request or task are mostly freed by reference counting, so the
# cyclic collector can look at young objects less often than CPython's default (every
# 700 allocations). The older generations keep their default ratios, so garbage that
# lived a while (an evicted workflow instance, say) is still collected as often as before.
_YOUNG_GENERATION_THRESHOLD = 10_000


def tune_gc() -> None:
    """Call once startup has imported everything: the startup heap (modules, classes,
    pydantic schemas, the Temporal SDK) moves out of the collector's reach, so full
    collections no longer walk it, and young collections run less often.

    Measured with interleaved runs of ``benchmarks/throughput.py``: 2-3 % more
    notifications per minute and about 0.5 ms less core-worker CPU per notification,
    with the same resident memory after 3,000 notifications.
    """
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(_YOUNG_GENERATION_THRESHOLD, middle, oldest)
