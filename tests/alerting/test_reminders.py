"""Reminders: which events paged, and when a held reopening pages again as a reminder."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from alerting.reminders import held_text, reminder_due

_OPENED = datetime(2026, 1, 1, tzinfo=UTC)
_HELD = {"fingerprint": "a", "flapping": False, "cycling": 3}
_PAGED = {"fingerprint": "a", "flapping": False}  # a reopening that paged (the first of a run)
_FLAP = {"fingerprint": "a", "flapping": True}


def _at(hours: float) -> datetime:
    return _OPENED + timedelta(hours=hours)


@pytest.mark.parametrize(
    ("events", "after", "due"),
    [
        pytest.param([("reopened", 0.2, _PAGED), ("reopened", 2, _HELD)], 4, 4.8, id="page-old-enough"),
        pytest.param([("reopened", 1.5, _PAGED), ("reopened", 2, _HELD)], 4, None, id="page-too-recent"),
        pytest.param([("opened", 0, {}), ("reopened", 3, _FLAP)], 4, 5, id="a-flap-paged-nobody"),
        pytest.param([("reopened", 0.2, _PAGED), ("acknowledged", 1, {})], 4, None, id="acknowledged-since"),
        pytest.param(
            [("acknowledged", 0.1, {}), ("reopened", 0.2, _PAGED)], 4, 4.8, id="acknowledged-before"
        ),
        pytest.param([("reopened", 0.2, _PAGED), ("mitigating", 1, {})], 4, None, id="mitigating-since"),
        pytest.param(
            [("reopened", 0.2, _PAGED), ("reopened", 2, {**_HELD, "reminder": 1})], 4, None, id="reminded"
        ),
        pytest.param(
            [("opened", 0, {}), ("priority", 2, {"from": "P3", "to": "P1"})], 4, None, id="escalated"
        ),
        pytest.param([("opened", 0, {}), ("priority", 2, {"from": "P1", "to": "P3"})], 4, 5, id="lowered"),
        pytest.param(
            [("opened", 0, {}), ("silence_ended", 2, {"from": "P3", "to": "P0"})], 4, None, id="rose-silenced"
        ),
        pytest.param(
            [("opened", 0, {}), ("priority", 2, {"from": "P3", "to": "P1", "silenced": True})],
            4,
            5,
            id="escalated-while-silenced-paged-nobody",
        ),
        pytest.param(
            [("opened", 0, {}), ("reminder", 2, {"reminder": 7200.0})], 4, None, id="reminded-by-the-tick"
        ),
        pytest.param([("reopened", 0.2, _HELD)], 4, 5, id="no-page-on-the-timeline-its-opening"),
        pytest.param([("opened", 0, {})], 0, None, id="never"),
    ],
)
def test_a_held_reopening_reminds_once_the_last_page_is_old_and_nobody_took_the_incident_up_since(
    events: list[tuple[str, float, Mapping[str, object]]], after: float, due: float | None
) -> None:
    newest_first = [(kind, _at(hours), data) for kind, hours, data in reversed(events)]
    said = reminder_due(newest_first, _at(5), after * 3600, _OPENED)
    assert said == (None if due is None else due * 3600)


@pytest.mark.parametrize(
    ("flapping", "cycling", "reminder", "said"),
    [
        pytest.param(False, 0, None, "", id="pages-as-ever"),
        pytest.param(
            False, 3, None, " (cycling: reopened 3 times within 1h by this alert, no page)", id="cycling"
        ),
        pytest.param(True, 0, None, " (flapping: held, no page)", id="flapping"),
        pytest.param(
            False,
            18,
            14472.0,
            " (cycling: reopened 18 times within 1h by this alert;"
            " still cycling 4h1m after the last page, reminding)",
            id="cycling-reminder",
        ),
        pytest.param(
            True,
            0,
            4 * 3600 + 30,
            " (flapping: still flapping 4h after the last page, reminding)",
            id="flap-reminder",
        ),
    ],
)
def test_a_reopening_says_why_it_is_held_or_that_it_reminds(
    flapping: bool, cycling: int, reminder: float | None, said: str
) -> None:
    assert held_text(flapping, cycling, 3600, reminder) == said


@pytest.mark.parametrize(("seconds", "due"), [(14405, None), (14410, 14400.0)], ids=["before", "after"])
def test_an_opening_held_back_by_the_announce_delay_paged_when_told_not_at_its_event(
    seconds: int, due: float | None
) -> None:
    # Opened at 23:00, told (and so paged) at 23:00:10 with a 10 s announce delay: its page is 4 h old at
    # 03:00:10, not at 03:00.
    said = reminder_due([("opened", _OPENED, {})], _OPENED + timedelta(seconds=seconds), 14400, _OPENED, 10)
    assert said == due
