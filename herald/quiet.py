"""Quiet hours: when a message that is due now may reach the user.

A user's ``quiet_hours`` are a daily window of wall-clock times in their ``timezone``
(IANA, through ``zoneinfo``): ``22:00``-``08:00`` crosses midnight, ``13:00``-``14:00``
does not, and a window whose start equals its end is empty. Inside the window, a
notification that is not urgent waits until the window ends.

"The window ends" is read on the user's clock, so daylight-saving changes move it with
them: the night the clocks go forward is an hour shorter in real time, the night they go
back an hour longer. When the end time does not exist that day (it falls in the hour
skipped in spring), the window ends as the clock jumps past it; when it occurs twice (the
hour repeated in autumn), at its first occurrence after now.

Pure and deterministic: workflows call it with ``workflow.now()``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from herald.contracts import Priority, QuietHours

__all__ = ["quiet_until"]

# How precisely the end of a window is found when it falls into a skipped hour.
_PRECISION = timedelta(seconds=1)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _inside(local: time, start: time, end: time) -> bool:
    """Whether a wall-clock time is inside the window ``[start, end)``."""
    if start < end:
        return start <= local < end
    return local >= start or local < end  # crosses midnight


def _end_instant(day: date, end: time, zone: ZoneInfo, now: datetime) -> datetime:
    """The first instant after ``now`` at which the wall clock of ``zone`` reads ``end``
    on ``day``, or, if it never does (a skipped hour), the instant it jumps past it."""
    wall = datetime.combine(day, end)
    # fold=0 is the first reading of a repeated time; fold=1 the second.
    for fold in (0, 1):
        candidate = wall.replace(tzinfo=zone, fold=fold)
        instant = candidate.astimezone(UTC)
        exists = instant.astimezone(zone).replace(tzinfo=None) == wall
        if exists and instant > now:
            return instant
    # ``end`` falls into a gap: the clock is before it at the fold=1 reading and past it
    # at the fold=0 reading; the jump lies between, found by bisection.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if before > after:
        before, after = after, before
    while after - before > _PRECISION:
        middle = before + (after - before) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            after = middle
        else:
            before = middle
    return max(after, now)


def quiet_until(
    quiet_hours: QuietHours | None,
    timezone: str | None,
    now: datetime,
    priority: Priority = Priority.normal,
) -> datetime | None:
    """When the quiet window ``now`` falls in ends (in UTC), or None: send now.

    None when the message is urgent, the user has no quiet hours (or an empty window),
    or ``now`` is outside them. A user without a timezone keeps quiet hours in UTC.
    ``now`` must be timezone-aware.
    """
    if priority is Priority.urgent or quiet_hours is None:
        return None
    start, end = _clock(quiet_hours.start), _clock(quiet_hours.end)
    if start == end:
        return None
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(timezone or "UTC")
    local = now.astimezone(zone)
    if not _inside(local.time(), start, end):
        return None
    # The window ends today, or (past a start that crosses midnight) tomorrow.
    day = local.date()
    if start > end and local.time() >= start:
        day += timedelta(days=1)
    return _end_instant(day, end, zone, now.astimezone(UTC))
