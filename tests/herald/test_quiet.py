"""Quiet hours on the user's clock: windows within a day and across midnight, the
window's edges, daylight-saving changes in both directions, and urgent messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from herald.contracts import Priority, QuietHours
from herald.quiet import quiet_until

pytestmark = pytest.mark.fast

NEW_YORK = "America/New_York"
NIGHT = QuietHours(start="22:00", end="08:00")


def at(zone: str, *parts: int, fold: int = 0) -> datetime:
    """A wall-clock time in ``zone``."""
    return datetime(*parts, tzinfo=ZoneInfo(zone), fold=fold)  # type: ignore[misc]


def test_a_message_at_2330_waits_until_0800_the_next_morning() -> None:
    until = quiet_until(NIGHT, NEW_YORK, at(NEW_YORK, 2026, 1, 14, 23, 30))

    assert until == at(NEW_YORK, 2026, 1, 15, 8, 0)
    assert until is not None and until.tzinfo is UTC


def test_after_midnight_inside_the_window_waits_until_0800_the_same_day() -> None:
    assert quiet_until(NIGHT, NEW_YORK, at(NEW_YORK, 2026, 1, 15, 3, 0)) == at(
        NEW_YORK, 2026, 1, 15, 8, 0
    )


@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [
        (21, 59, False),
        (22, 0, True),  # the start is inside
        (7, 59, True),
        (8, 0, False),  # the end is not
        (12, 0, False),
    ],
)
def test_the_window_includes_its_start_and_excludes_its_end(
    hour: int, minute: int, quiet: bool
) -> None:
    now = at(NEW_YORK, 2026, 6, 10, hour, minute)
    assert (quiet_until(NIGHT, NEW_YORK, now) is not None) is quiet


def test_a_window_within_one_day() -> None:
    lunch = QuietHours(start="12:00", end="13:30")
    assert quiet_until(lunch, "Europe/Berlin", at("Europe/Berlin", 2026, 5, 4, 12, 15)) == at(
        "Europe/Berlin", 2026, 5, 4, 13, 30
    )
    assert quiet_until(lunch, "Europe/Berlin", at("Europe/Berlin", 2026, 5, 4, 23, 0)) is None


def test_the_window_is_read_on_the_users_clock_not_the_servers() -> None:
    # 04:30 UTC is 23:30 the evening before in New York (quiet), 13:30 in Tokyo (not).
    now = datetime(2026, 1, 15, 4, 30, tzinfo=UTC)
    assert quiet_until(NIGHT, NEW_YORK, now) == datetime(2026, 1, 15, 13, 0, tzinfo=UTC)
    assert quiet_until(NIGHT, "Asia/Tokyo", now) is None


def test_across_the_march_change_the_night_is_an_hour_shorter() -> None:
    # Clocks go from 02:00 EST to 03:00 EDT on 8 March 2026.
    now = at(NEW_YORK, 2026, 3, 7, 23, 30)
    until = quiet_until(NIGHT, NEW_YORK, now)

    assert until == at(NEW_YORK, 2026, 3, 8, 8, 0)
    assert until == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert until - now == timedelta(hours=7, minutes=30)


def test_across_the_november_change_the_night_is_an_hour_longer() -> None:
    # Clocks go from 02:00 EDT back to 01:00 EST on 1 November 2026.
    now = at(NEW_YORK, 2026, 10, 31, 23, 30)
    until = quiet_until(NIGHT, NEW_YORK, now)

    assert until == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    assert until - now == timedelta(hours=9, minutes=30)


def test_an_end_inside_the_skipped_hour_ends_when_the_clock_jumps_past_it() -> None:
    # 02:30 does not exist on 8 March 2026 in New York: at 07:00 UTC the clock reads
    # 01:59:59 EST, then 03:00 EDT.
    until = quiet_until(
        QuietHours(start="23:00", end="02:30"), NEW_YORK, at(NEW_YORK, 2026, 3, 8, 1, 0)
    )
    assert until == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)


def test_an_end_inside_the_repeated_hour_ends_at_its_next_occurrence() -> None:
    window = QuietHours(start="23:00", end="01:30")
    # First pass through 01:00-02:00 (EDT): ends at the first 01:30.
    first = quiet_until(window, NEW_YORK, at(NEW_YORK, 2026, 11, 1, 1, 10, fold=0))
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    # Second pass (EST, the clock read 01:10 an hour ago too): ends at the second 01:30.
    second = quiet_until(window, NEW_YORK, at(NEW_YORK, 2026, 11, 1, 1, 10, fold=1))
    assert second == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_a_start_in_the_skipped_hour_still_starts_the_window() -> None:
    window = QuietHours(start="02:30", end="06:00")
    # 03:10 EDT, just after the jump over 02:30: inside.
    assert quiet_until(window, NEW_YORK, at(NEW_YORK, 2026, 3, 8, 3, 10)) == at(
        NEW_YORK, 2026, 3, 8, 6, 0
    )


def test_a_southern_hemisphere_change_too() -> None:
    # Sydney goes from 03:00 AEDT back to 02:00 AEST on 5 April 2026.
    sydney = "Australia/Sydney"
    now = at(sydney, 2026, 4, 4, 22, 30)
    until = quiet_until(NIGHT, sydney, now)
    assert until == at(sydney, 2026, 4, 5, 8, 0)
    assert until is not None and until - now == timedelta(hours=10, minutes=30)


def test_urgent_messages_and_users_without_quiet_hours_go_now() -> None:
    now = at(NEW_YORK, 2026, 1, 14, 23, 30)
    assert quiet_until(NIGHT, NEW_YORK, now, Priority.urgent) is None
    assert quiet_until(None, NEW_YORK, now) is None
    assert quiet_until(QuietHours(start="22:00", end="22:00"), NEW_YORK, now) is None


def test_without_a_timezone_quiet_hours_are_in_utc() -> None:
    now = datetime(2026, 1, 14, 23, 30, tzinfo=UTC)
    assert quiet_until(NIGHT, None, now) == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


def test_the_result_is_always_after_now_for_every_minute_of_a_dst_day() -> None:
    window = QuietHours(start="01:15", end="02:45")
    start = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)
    for minute in range(0, 24 * 60, 5):
        now = start + timedelta(minutes=minute)
        until = quiet_until(window, NEW_YORK, now)
        if until is not None:
            assert until > now
            # The wall clock at the end is outside the window.
            local = until.astimezone(ZoneInfo(NEW_YORK))
            assert not (
                (local.hour, local.minute) >= (1, 15) and (local.hour, local.minute) < (2, 45)
            )


def test_clock_times_are_validated() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        QuietHours(start="24:00", end="08:00")
    with pytest.raises(ValueError, match="HH:MM"):
        QuietHours(start="7:00", end="08:00")
