"""Reminding an opening a silence held (parked): told when the silence ends, woken by silence changes, and
no first tell once the incident reopened."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import alerting.db
from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from alerting.matchers import parse_matcher
from alerting.notifiers.base import build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import webhook_payload
from alerting.reminding import ParkedCheck, unsilenced_at
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.joining_alerts import _on
from tests.alerting.notifiers.slack_threads import Threads, deliver, notifier_for
from tests.alerting.reminding_night import _DOWN, _advance_to, _past_due_muted, _reminders, _Serve, _told
from tests.alerting.restart_serves import Serve
from tests.migrated_store import migrated_sqlite


def _silenced_within_its_delay(serve: Serve) -> None:
    """The node's incident opens now and is silenced for 10 minutes by alice 5 s later, within its 10 s
    announce delay; serve's clock at the end of that delay."""
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    serve.clock.advance(5)
    serve.engine.silence_incident(incident_id, 600, "alice")
    serve.clock.advance(5)


def test_an_opening_told_while_silenced_paged_nobody_and_the_silences_end_starts_the_reminder_clock(
    tmp_path: Path,
) -> None:
    # The node's incident opens at 23:00; at 23:00:05, within its 10 s announce delay, someone silences it
    # for 10 minutes (the API, the CLI): its opening is told silenced, paging nobody, and the channel first
    # hears of it when the silence ends (23:10:05). Reminded 20 minutes after that, not 20 minutes after
    # an opening page that never was.
    serve = _Serve(tmp_path / "serve", remind_after_seconds=1200)
    start = serve.clock.now()
    _silenced_within_its_delay(serve)
    for _ in range(40):
        serve.engine.tick()
        serve.clock.advance(60)
    told = _told(serve)
    [opened] = [n for n in told if n.change.value == "opened"]
    assert opened.silenced_until is not None  # paged nobody
    reminders = _reminders(serve)
    assert [(n.event_at - start).total_seconds() for n in reminders][:1] == [1810]  # the first tick from 1805
    # The page is the silence's end as told, at the tick that saw it (23:10:10), when Slack posted the
    # incident's first message (its ``silence_ended`` event says so), not the silence's end itself.
    [ended] = [n for n in told if n.event_kind == "silence_ended"]
    assert ended.first_told and (ended.event_at - start).total_seconds() == 610
    assert reminders[0].reminder == 1810 - 610


@pytest.mark.parametrize(
    ("silences", "told"),
    [
        pytest.param([], 10, id="none"),
        pytest.param([(5, 600)], 600, id="set-within-the-delay"),
        pytest.param([(5, 600), (300, 900), (900, 1000)], 1000, id="extended-one-after-another"),
        pytest.param([(5, 8), (20, 600)], 10, id="ended-before-or-set-after"),
    ],
)
def test_an_opening_is_told_when_the_silences_holding_it_end(
    silences: list[tuple[int, int]], told: int
) -> None:
    at = FakeClock().now()
    spans = [(at + timedelta(seconds=a), at + timedelta(seconds=b)) for a, b in silences]
    assert unsilenced_at(at + timedelta(seconds=10), spans) == at + timedelta(seconds=told)


def _renew_silence(serve: _Serve, silence_id: str, count: int) -> int:
    """Renew the silence muting the parked incident ``count`` times, a tick after each: each time with a
    new start (now), its matchers and end as they were, which takes over with a new id and expires the old
    one (Alertmanager's update of a silence whose start changed). Each wakes the incident (a silence that
    held it ended), which is parked again until the same end. How many times it was looked at."""
    looked = [0]
    held_back = serve.engine._held_back

    def counted(inc: Any, now: Any, when: float) -> Any:
        looked[0] += 1
        return held_back(inc, now, when)

    serve.engine._held_back = counted  # type: ignore[method-assign]
    for _ in range(count):
        serve.clock.advance(5)
        old, now = serve.engine.silence(silence_id), serve.clock.now()
        silence_id = serve.engine.add_silence(old.matchers, now, old.ends_at, "alice", update=silence_id)
        serve.engine.tick()
    return looked[0]


def test_an_incident_woken_while_parked_is_reminded_once_when_its_silence_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parked until its silence's end, the incident is woken by each renewal of that silence and parked
    # again until the same end (a silence set elsewhere woke it too, before fix/remind4): each time one
    # more entry for that end. At the end each entry made it due again
    # in the same tick, and where its copies fell in two of ``_still_open``'s IN lists (513 due incidents
    # or more: 600 muted incidents and two unrelated silences gave 602 reminders), it was reminded twice.
    # IN lists of one value stand for that many here.
    serve, incident_id, silence_id = _past_due_muted(tmp_path)
    assert _renew_silence(serve, silence_id, 2) == 2
    monkeypatch.setattr(alerting.db, "IN_LIST_SIZES", (1,))
    serve.clock.advance(8 * 3600)  # past the silence's end (23:01 + 12 h)
    serve.engine.tick()
    assert [n.incident_id for n in _reminders(serve)] == [incident_id]


def test_a_parked_incident_woken_by_many_silence_changes_leaves_no_pile_of_stale_checks(
    tmp_path: Path,
) -> None:
    # Each renewal of its silence wakes the parked incident and parks it again (as each silence set
    # elsewhere did before fix/remind4): one more heap entry each time until its silence ends (skipped
    # when popped, but 10,000 parked incidents and a hundred changes a day held a million). The stale ones
    # are dropped once they outnumber the current ones.
    serve, incident_id, silence_id = _past_due_muted(tmp_path)
    assert _renew_silence(serve, silence_id, 80) == 80  # past the 2 x 1 + 64 entries that compact it
    assert len(serve.engine._remind_heap) <= 2 * len(serve.engine._remind_checks) + 64
    serve.clock.advance(12 * 3600)  # past the silence's end: reminded once, as before
    serve.engine.tick()
    assert [n.incident_id for n in _reminders(serve)] == [incident_id]


def _parked_after_change(serve: _Serve, change: Any) -> list[str]:
    """The incidents ``_held_back`` looks at in the tick after ``change`` (a call on the engine)."""
    looked: list[str] = []
    held_back = serve.engine._held_back

    def counted(inc: Any, now: Any, when: float) -> Any:
        looked.append(inc.id)
        return held_back(inc, now, when)

    serve.engine._held_back = counted  # type: ignore[method-assign]
    change()
    serve.clock.advance(5)
    serve.engine.tick()
    return looked


def test_a_silence_set_or_extended_elsewhere_wakes_no_parked_incident(tmp_path: Path) -> None:
    # A silence set (or one extended) can only mute more: no incident it did not hold can be freed by it.
    # Every parked incident was looked at again at the tick after any such change (10,000 muted incidents:
    # 400-900 ms, as every tick cost before they were parked).
    serve, _, silence_id = _past_due_muted(tmp_path)
    now = serve.clock.now()
    unrelated = [parse_matcher('alertname="Unrelated"')]
    assert (
        _parked_after_change(
            serve, lambda: serve.engine.add_silence(unrelated, now, now + timedelta(hours=1), "bob")
        )
        == []
    )
    own = serve.engine.silence(silence_id)
    extended = lambda: serve.engine.add_silence(  # noqa: E731
        own.matchers, own.starts_at, own.ends_at + timedelta(hours=1), "alice", update=silence_id
    )
    assert _parked_after_change(serve, extended) == []
    assert _reminders(serve) == []


@pytest.mark.parametrize("change", ["shortened", "matchers-changed", "expired-elsewhere-too"])
def test_a_parked_incident_is_woken_when_a_silence_holding_it_may_mute_less(
    tmp_path: Path, change: str
) -> None:
    # Its own silence (its alert's labels) ends sooner, or takes over with matchers that no longer match its
    # alert: the reminder comes at the first tick nothing mutes it, as a restarted serve would remind.
    serve, incident_id, silence_id = _past_due_muted(tmp_path)
    own = serve.engine.silence(silence_id)
    now = serve.clock.now()
    if change == "shortened":
        new = serve.engine.add_silence(
            own.matchers, own.starts_at, now + timedelta(seconds=3), "a", update=silence_id
        )
        assert new == silence_id  # updated in place
    elif change == "matchers-changed":
        other = [parse_matcher('alertname="NodeDown"'), parse_matcher('node="r05-n04"')]
        serve.engine.add_silence(other, now, own.ends_at, "alice", update=silence_id)
    else:
        serve.engine.add_silence(
            [parse_matcher('alertname="Unrelated"')], now, now + timedelta(hours=1), "bob"
        )
        serve.engine.expire_silence(silence_id)
    before = serve.clock.now()
    serve.clock.advance(5)
    serve.engine.tick()
    [reminder] = _reminders(serve)
    assert reminder.incident_id == incident_id and before < reminder.event_at <= serve.clock.now()


def test_a_hold_said_to_end_in_the_past_is_looked_at_again_at_the_next_tick_not_in_a_loop(
    tmp_path: Path,
) -> None:
    # ``_held_back`` answers a time that has passed (an inconsistency, a clock set back): parked until then,
    # the incident was popped again in the same tick, for ever: the tick never returned.
    serve = _Serve(tmp_path / "serve", remind_after_seconds=600)
    serve.engine.ingest([_DOWN])
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()
    serve.clock.advance(700)
    looked: list[float] = []
    holds = [True]

    def held_in_the_past(inc: Any, now: Any, when: float) -> ParkedCheck | None:
        looked.append(now.timestamp())
        assert len(looked) < 20, "looked at again and again in one tick"
        return ParkedCheck(when, now.timestamp() - 60, False, False) if holds[0] else None

    serve.engine._held_back = held_in_the_past  # type: ignore[method-assign]
    serve.engine.tick()
    assert len(looked) == 1 and _reminders(serve) == []
    holds[0] = False  # what held it has let go: reminded at the next tick
    serve.clock.advance(5)
    serve.engine.tick()
    assert len(looked) == 2 and len(_reminders(serve)) == 1


@pytest.mark.parametrize(
    ("silenced_at", "pages"),
    [
        pytest.param(5, True, id="silenced-within-the-delay-first-told-at-its-end"),
        pytest.param(60, False, id="silenced-after-the-opening-paged"),
    ],
)
def test_the_end_of_a_silence_that_held_the_opening_pages_on_the_webhook_as_slack_posts_it(
    tmp_path: Path, silenced_at: int, pages: bool
) -> None:
    # Silenced 5 s after it opened, within its 10 s announce delay: Slack posted nothing at the opening (told
    # silenced) and posts the incident's first message, a new one in the channel, at the silence's end; the
    # webhook heard of it first then too, its ``pages`` said false. Silenced after its opening paged: the
    # end is an update, as before.
    serve = _Serve(tmp_path / "serve")
    start = serve.clock.now()
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    for second in (0, 5, 10, 15, 60, 65, 605, 610, 660, 665):  # ticks around the changes: its end at 605+
        _advance_to(serve, start, second)
        if second == silenced_at:
            serve.engine.silence_incident(incident_id, 600, "alice")
        serve.engine.tick()
    told = _told(serve)
    [ended] = [n for n in told if n.event_kind == "silence_ended"]
    with SlackRecorder() as recorder:
        notifier, threads = notifier_for(recorder), Threads()
        for n in told:
            before = len(recorder.channel_messages())
            deliver(notifier, threads, n)
            if n is ended:
                slack_posted = len(recorder.channel_messages()) > before
    assert slack_posted is pages
    assert ended.pages is pages
    assert webhook_payload(ended, first_for_receiver=pages)["event"]["pages"] is pages


def test_retention_deleting_the_silence_that_held_the_opening_moves_no_reminder(tmp_path: Path) -> None:
    # The opening was told as its silence (set within the announce delay) ended, at the tick of 23:10:10.
    # Retention (here 0.01 day, 864 s) deletes that silence at 23:28:10 and serve restarts: the reminders
    # read the opening as told at 23:00:10 then (no silence held it any more), and reminded at once, "28m
    # after the last page", where a serve that pruned nothing reminded at 23:30:10, 20 minutes after it.
    said = []
    for pruned in (False, True):
        serve = _Serve(tmp_path / f"pruned-{pruned}", remind_after_seconds=1200)
        serve.config = AlertingConfig(remind_after_seconds=1200, retention_days=0.01)
        serve.restart()
        _silenced_within_its_delay(serve)
        for second in range(10, 2000, 120):
            if pruned and second == 1690:
                assert serve.engine.prune().silences == 1
                serve.restart()
            serve.engine.tick()
            serve.clock.advance(120)
        said.append([(n.event_at, n.reminder) for n in _reminders(serve)])
    assert said[1] == said[0] and said[0]


def test_a_later_silence_of_an_incident_reopened_since_its_held_opening_is_no_first_tell(
    tmp_path: Path,
) -> None:
    # Its opening held by a silence set within the announce delay, the incident resolved under it (nothing
    # told) and the silence ended while it was resolved (no ``silence_ended``); it reopened at 1000 s, the
    # first the channel heard of it (a page), and was silenced again from 1100 s to 2900 s. The end of that
    # second silence was taken as the first tell (``first_told``): a webhook page for an update, and a page
    # for the reminders, which put the reminder due at 2900 s (1900 s after the reopening) off to 4100 s.
    serve = _Serve(tmp_path / "serve", remind_after_seconds=1200)
    start = serve.clock.now()
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    for second in (0, 5, 10, 100, 105, 400, 405, 605, 610, 1000, 1005, 1100, 1105, 2900, 2905):
        _advance_to(serve, start, second)
        if second == 5:
            serve.engine.silence_incident(incident_id, 600, "alice")
        if second == 100:
            serve.engine.ingest([Alert(dict(_DOWN.labels), status=AlertStatus.RESOLVED)])
        if second == 1000:
            serve.engine.ingest([_DOWN])
        if second == 1100:
            serve.engine.silence_incident(incident_id, 1800, "bob")
        serve.engine.tick()
    told = _told(serve)
    [reopened] = [n for n in told if n.event_kind == "reopened"]
    assert reopened.pages and reopened.silenced_until is None  # the first the channel heard of it
    [ended] = [n for n in told if n.event_kind == "silence_ended"]
    assert not ended.first_told and not ended.pages
    [reminder] = _reminders(serve)
    assert reminder.event_at == ended.event_at and reminder.reminder == 1900


def test_a_silence_lifted_early_after_the_incident_reopened_since_its_held_opening_is_no_first_tell(
    tmp_path: Path,
) -> None:
    # As above, but the second silence ends early: an XID 79 on another GPU of the node joins the incident
    # (a fault beside the one it was set for, ``_lift_silences``). Read as stored, not as just expired in the
    # ingest's unflushed session, that silence still ran on, and its early end was taken for the first tell.
    clock = FakeClock()
    config = AlertingConfig(remind_after_seconds=1200)
    engine = IncidentEngine(
        migrated_sqlite(tmp_path / "i.db"), clock, config, sc.fleet_inventory(spare_gpus=8)
    )
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    start = clock.now()
    engine.ingest([_on(3, alertname="GpuLost")])
    [incident_id] = engine.open_incident_ids()
    for second in (5, 10, 100, 400, 605, 1000, 1100, 1500):
        clock.advance(second - (clock.now() - start).total_seconds())
        if second == 5:
            engine.silence_incident(incident_id, 600, "alice")
        if second == 100:
            engine.ingest([_on(3, AlertStatus.RESOLVED, alertname="GpuLost")])
        if second == 1000:
            engine.ingest([_on(3, alertname="GpuLost")])  # reopened: its first tell, a page
        if second == 1100:
            engine.silence_incident(incident_id, 1800, "bob")
        if second == 1500:
            engine.ingest([_on(5, alertname="GPUXid", xid="79")])
        engine.tick()
    notes = [build_notification(c) for c in told]
    [reopened] = [n for n in notes if n.event_kind == "reopened"]
    assert reopened.pages and reopened.silenced_until is None
    [ended] = [n for n in notes if n.event_kind == "silence_ended"]
    assert ended.event_message.startswith("silence ended early")
    assert not ended.first_told and not ended.pages
