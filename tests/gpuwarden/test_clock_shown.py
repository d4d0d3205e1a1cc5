"""``clock.shown``: the one format of a time in text people read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gpuwarden.clock import shown, shown_text


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (datetime(2026, 12, 2, 16, 0, 5, 250_000, tzinfo=UTC), "2026-12-02T16:00:05Z"),
        (datetime(2026, 12, 2, 17, 0, 5, tzinfo=timezone(timedelta(hours=1))), "2026-12-02T16:00:05Z"),
        (datetime(2026, 12, 2, 16, 0, 5), "2026-12-02T16:00:05Z"),
    ],
    ids=["fraction", "another-zone", "naive-is-utc"],
)
def test_a_time_is_shown_in_utc_to_the_second_with_its_zone(at: datetime, text: str) -> None:
    assert shown(at) == text


def test_an_api_time_is_shown_alike_and_other_text_as_it_is() -> None:
    assert shown_text("2026-12-02T16:00:05.250000Z") == "2026-12-02T16:00:05Z"
    assert shown_text("2026-12-02T16:00:05+00:00") == "2026-12-02T16:00:05Z"
    assert shown_text("never") == "never"
