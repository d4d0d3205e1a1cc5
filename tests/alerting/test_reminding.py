"""Reminding: an incident firing steadily, nobody taking it up, pages again from the tick every 4 h; across
restarts, the upgrade to 0019 and openings the outbox took before a crash."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

import alerting.db
from alerting.migrate import upgrade
from alerting.notifiers.webhook import webhook_payload
from alerting.outbox_tables import DISCARDED, OutboxMessage
from alerting.store_models import IncidentRow
from gpuwarden.config import AlertingConfig
from tests.alerting.migrate_steps import downgrade
from tests.alerting.outbox_only import Quiet
from tests.alerting.reminding_night import (
    _DOWN,
    _NIGHT,
    _TICK,
    _advance_to,
    _failing_store,
    _reminders,
    _Serve,
    _told,
    a_restart_offers_the_outbox_no_opening_the_store_says_was_announced,
    an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay,
)
from tests.alerting.restart_serves import Serve
from tests.migrated_store import migrated_sqlite


def _night(serve: Serve, *, restart_at: int | None = None, by: str = "", silence: float = 0) -> None:
    """The alert fires at 23:00 and all night, announced at 23:00:10; from then the tick runs every 20
    minutes. At 01:00 someone takes the incident up (``by``: acknowledged, mitigating) or silences it for
    ``silence`` seconds; at ``restart_at`` (seconds from 23:00:10) serve restarts."""
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    serve.clock.advance(serve.config.announce_delay_seconds)  # announced: its page
    serve.engine.tick()
    for at in range(_TICK, _NIGHT + 1, _TICK):
        serve.clock.advance(_TICK)
        if at == restart_at:
            serve.restart()
        if at == 7200 and by == "acknowledged":
            serve.engine.acknowledge(incident_id, "alice")
        if at == 7200 and by == "mitigating":
            serve.engine.mark_mitigating(incident_id, "alice", "drain_node")
        if at == 7200 and silence:
            serve.engine.silence_incident(incident_id, silence, "alice")
        serve.engine.tick()


@pytest.mark.parametrize(
    ("remind_after", "by", "silence", "hours", "ages"),
    [
        pytest.param(14400, "", 0, [4, 8], [4, 4], id="reminded-at-4h-and-8h"),
        pytest.param(14400, "acknowledged", 0, [], [], id="acknowledged-after-its-page"),
        pytest.param(14400, "mitigating", 0, [], [], id="mitigating-after-its-page"),
        pytest.param(14400, "", 8 * 3600, [], [], id="silenced-all-night"),
        # Silenced from 01:00 to 04:00: none at 03:00; at 04:00, as the silence ends, 5 h after the opening.
        pytest.param(14400, "", 3 * 3600, [5, 9], [5, 4], id="silenced-past-4h-reminded-as-it-ends"),
        pytest.param(0, "", 0, [], [], id="never-as-before"),
    ],
)
def test_an_incident_firing_steadily_pages_again_as_a_reminder_every_4h_unless_taken_up(
    tmp_path: Path, remind_after: float, by: str, silence: float, hours: list[int], ages: list[int]
) -> None:
    # The alert never resolves, so the incident never reopens: no reopening's reminder comes. The tick pages
    # it again once its last page (the opening, told at 23:00:10 after the 10 s announce delay) is 4 h old,
    # then 4 h after that reminder, as Alertmanager's repeat_interval would: 2 reminders in 9 h.
    serve = _Serve(tmp_path / "serve", remind_after_seconds=remind_after)
    start = serve.clock.now()
    _night(serve, by=by, silence=silence)
    reminders = _reminders(serve)
    told = start + timedelta(seconds=serve.config.announce_delay_seconds)  # the opening's page
    assert [(n.event_at - told).total_seconds() / 3600 for n in reminders] == hours
    assert [n.reminder for n in reminders] == [age * 3600.0 for age in ages]
    for n in reminders:
        assert n.pages and n.needs_attention  # a channel broadcast, as a paged reopening
        assert n.event_message.startswith("still firing ")
        assert n.event_message.endswith(" after the last page, not acknowledged: reminding")
        event = webhook_payload(n, first_for_receiver=False)["event"]
        assert event["pages"] is True and event["reminder"] == {"last_page_seconds": n.reminder}
    assert (
        reminders[:1] == []
        or reminders[0].event_message
        == f"still firing {ages[0]}h after the last page, not acknowledged: reminding"
    )


@pytest.mark.parametrize("restart_at", [4 * 3600 + _TICK, 6 * 3600], ids=["just-after-a-reminder", "between"])
def test_a_restart_between_reminders_reminds_alike_and_never_twice(tmp_path: Path, restart_at: int) -> None:
    # A restarted serve knows nothing of the reminder before it but what the store holds: it decides from
    # the stored timeline, so reminds at 8 h as a running one does, and does not remind again at once.
    live, restarted = _Serve(tmp_path / "live"), _Serve(tmp_path / "restarted")
    _night(live)
    _night(restarted, restart_at=restart_at)
    assert len(_reminders(live)) == 2
    said = [
        [(n.event_at, n.event_message, n.reminder, n.pages) for n in _reminders(s)] for s in (live, restarted)
    ]
    assert said[1] == said[0]
    assert (
        restarted.kinds() == live.kinds()
    )  # one reminder event each at 4 h and 8 h: none again at the restart
    assert restarted.told() == live.told()


def _announced_unstored(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[_Serve, str]:
    """A serve whose node incident opened at its start and was announced 10 s later by a tick that could
    not store when (the store failed, or serve died, just after the outbox took it); that incident."""
    serve = _Serve(path)
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    serve.clock.advance(10)
    monkeypatch.setattr(serve.engine, "_store_announced", _failing_store)
    serve.engine.tick()
    return serve, incident_id


def test_an_announcement_whose_time_could_not_be_stored_is_announced_again_to_store_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store fails just after the tick handed the opening to the outbox: when is not stored, so the next
    # tick announces it again (the outbox dedupes it) and stores when the outbox says it took it: the page.
    serve, incident_id = _announced_unstored(tmp_path / "serve", monkeypatch)
    start = serve.clock.now() - timedelta(seconds=10)
    monkeypatch.undo()  # the store is back
    serve.clock.advance(5)
    serve.engine.tick()
    told = _told(serve)
    assert [n.change.value for n in told] == ["opened"]  # once
    with Session(alerting.db.make_engine(serve.db)) as session:
        announced = session.get(IncidentRow, incident_id)
        assert announced is not None and announced.announced_at == start + timedelta(seconds=10)


def _announced_before_0019(serve: Serve) -> datetime:
    """The node's incident opens now and is announced at the end of its announce delay by a release before
    0019 (the store taken back to 0018, as that release left it, and upgraded again); when it opened."""
    start = serve.clock.now()
    serve.engine.ingest([_DOWN])
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()
    store = alerting.db.make_engine(serve.db)
    downgrade(store, "0018_silences_incident_index")
    upgrade(store)
    store.dispose()
    return start


def test_an_incident_announced_before_the_upgrade_to_0019_is_reminded_from_its_page_not_the_restart(
    tmp_path: Path,
) -> None:
    # The node's incident opens at 23:00 and is announced at 23:00:10 by a release before 0019 (which
    # stores no announced_at); serve restarts on the upgraded store at 00:00:10 and announces it again at
    # its first tick (the outbox dedupes it: nobody is paged then). The reminder comes 4 h after the page,
    # as before the upgrade, not 4 h after the restart.
    serve = _Serve(tmp_path / "serve")
    start = _announced_before_0019(serve)
    for at in range(_TICK, 5 * 3600, _TICK):
        serve.clock.advance(_TICK)
        if at == 3600:
            serve.restart()
        serve.engine.tick()
    assert [((n.event_at - start).total_seconds(), n.reminder) for n in _reminders(serve)] == [
        (14410, 14400.0)
    ]


@pytest.mark.parametrize("delay", [10, 0], ids=["delay-10s", "no-delay"])
@pytest.mark.parametrize("stored_before_0019", [False, True], ids=["announced", "stored-before-0019"])
def test_a_restart_offers_the_outbox_no_opening_the_store_says_was_announced(
    tmp_path: Path, delay: float, stored_before_0019: bool
) -> None:
    db = tmp_path / "incidents.db"
    migrated_sqlite(db).dispose()
    restart = (
        an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay
        if stored_before_0019
        else a_restart_offers_the_outbox_no_opening_the_store_says_was_announced
    )
    restart(str(db), delay)


@pytest.mark.parametrize("delay", [10, 0], ids=["delay-10s", "no-delay"])
def test_an_incident_of_before_0019_is_offered_to_the_outbox_at_one_start_only_and_reminded_as_before(
    tmp_path: Path, delay: float
) -> None:
    # The node's incident opens at 23:00 and is announced by a release before 0019; the upgrade stores its
    # opening's time as its announcement (whether it was told is not known). The first serve after the
    # upgrade offers it to the outbox again (deduped); every start after that did too, until it resolved.
    # The first offer settles it; the reminder still counts from the end of the announce delay.
    serve = _Serve(tmp_path / "serve")
    serve.config = AlertingConfig(announce_delay_seconds=delay)
    serve.restart()
    start = _announced_before_0019(serve)
    offered: list[int] = []
    for at in range(_TICK, 5 * 3600, _TICK):
        serve.clock.advance(_TICK)
        if at in (3600, 7200):
            serve.restart()
        serve.engine.tick()
        if at in (3600, 7200):
            offered.append(serve.outbox.stats.duplicates)
    assert offered == [1, 0]
    assert [n.change.value for n in _told(serve)].count("opened") == 1
    assert [((n.event_at - start).total_seconds(), n.reminder) for n in _reminders(serve)] == [
        (14400 + delay, 14400.0)
    ]


def test_an_incident_held_in_its_delay_at_the_upgrade_to_0019_is_still_announced(tmp_path: Path) -> None:
    # serve stopped 5 s into the node incident's 10 s announce delay, and the upgrade to 0019 stored its
    # opening's time as its announcement (as for every incident before it: whether one was told is not
    # known). The next serve still announces it, as it announces again every incident of before 0019.
    serve = _Serve(tmp_path / "serve")
    start = serve.clock.now()
    serve.engine.ingest([_DOWN])
    serve.clock.advance(5)
    serve.engine.tick()
    store = alerting.db.make_engine(serve.db)
    downgrade(store, "0018_silences_incident_index")
    upgrade(store)
    store.dispose()
    serve.clock.advance(60)
    serve.restart()
    serve.engine.tick()
    assert [(n.change.value, (n.event_at - start).total_seconds()) for n in _told(serve)] == [("opened", 0)]


class _Webhook(Quiet):
    """A second notifier, configured only for the next serve."""

    name = "webhook"


@pytest.mark.parametrize("added", [False, True], ids=["same-notifiers", "notifier-added"])
def test_an_opening_the_outbox_took_before_a_crash_counts_from_when_it_took_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, added: bool
) -> None:
    # The tick of 23:00:10 hands the opening to the outbox (the page) and serve dies before storing when.
    # The next serve, at 00:00:10, announces it again (the outbox drops the duplicate) and stored its own
    # time: the reminder came at 04:00:10, an hour late, "4h after the last page" 5 h after it. The outbox
    # says when it took the opening: that is stored. Also when a notifier was added to the configuration
    # meanwhile (a webhook): it takes the opening now, but Slack paged at 23:00:10.
    serve, incident_id = _announced_unstored(tmp_path / "serve", monkeypatch)
    start = serve.clock.now() - timedelta(seconds=10)
    serve.clock.advance(3600)
    serve.restart(Quiet(), *([_Webhook()] if added else []))
    serve.engine.tick()
    with Session(alerting.db.make_engine(serve.db)) as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None and row.announced_at == start + timedelta(seconds=10)
    for at in (14409, 14410):
        _advance_to(serve, start, at)
        serve.engine.tick()
    # One reminder for each notifier: a set would also take a reminder told twice (under two keys) for one.
    assert [((n.event_at - start).total_seconds(), n.reminder) for n in _reminders(serve)] == [
        (14410, 14400.0)
    ] * (2 if added else 1)


def test_an_opening_whose_only_message_was_discarded_counts_from_the_notifier_that_takes_it_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As above, but the opening's message was discarded unsent (``outbox discard`` while its notifier was
    # out of the configuration): nobody was paged when the outbox took it. The webhook configured since
    # takes it an hour later, the first page: that is stored, not the time of a message never sent (the
    # reminder came an hour early, "4h after the last page" 3 h after the only one).
    serve, incident_id = _announced_unstored(tmp_path / "serve", monkeypatch)
    with Session(alerting.db.make_engine(serve.db)) as session, session.begin():
        session.execute(update(OutboxMessage).values(status=DISCARDED))
    serve.clock.advance(3600)
    paged = serve.clock.now()
    serve.restart(Quiet(), _Webhook())
    serve.engine.tick()
    with Session(alerting.db.make_engine(serve.db)) as session:
        row = session.get(IncidentRow, incident_id)
        assert row is not None and row.announced_at == paged
