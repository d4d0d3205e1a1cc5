"""Reminding: an incident firing steadily, nobody taking it up, pages again from the tick every 4 h."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import alerting.db
from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from alerting.matchers import parse_matcher
from alerting.migrate import upgrade
from alerting.notifiers.base import Notification, build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import webhook_payload
from alerting.outbox import Outbox
from alerting.outbox_tables import DISCARDED, OutboxMessage
from alerting.reminders import TOLD_AT, last_page
from alerting.reminding import ParkedCheck, stored_pages, unsilenced_at
from alerting.silence_index import SilenceIndex
from alerting.silences import Silence
from alerting.store_models import IncidentRow, TimelineRow
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.notifiers.test_slack import Threads, deliver, notifier_for
from tests.alerting.outbox_only import Quiet
from tests.alerting.test_joining import _on
from tests.alerting.test_migrate import downgrade
from tests.alerting.test_restart_equivalence import Serve
from tests.migrated_store import migrated_sqlite

# A node fell off the fleet at 23:00 and stays down: its alert fires without a break all night.
_DOWN = Alert({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": "r05-n03"})
_NIGHT = 9 * 3600
_TICK = 1200  # serve ticks every 5 s; one each 20 minutes keeps the test cheap and the reminders on the hour


class _Serve(Serve):
    """``Serve`` on a copy of a migrated store (``migrated_sqlite``), not one migrated anew."""

    def __init__(self, path: Path, remind_after_seconds: float = 14400) -> None:
        path.mkdir()
        self.db = str(path / "incidents.db")
        migrated_sqlite(Path(self.db)).dispose()
        self.clock = FakeClock()
        self.config = AlertingConfig(remind_after_seconds=remind_after_seconds)
        self.inventory = sc.fleet_inventory()
        self.restart()


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


def _told(serve: Serve) -> list[Notification]:
    """Every change serve handed its outbox, in order."""
    return [Notification.model_validate_json(m.payload) for m in serve.outbox.messages()]


def _reminders(serve: Serve) -> list[Notification]:
    return [n for n in _told(serve) if n.event_kind == "reminder"]


def _advance_to(serve: Serve, start: datetime, second: float) -> None:
    """Move serve's clock to ``second`` seconds after ``start``."""
    serve.clock.advance(second - (serve.clock.now() - start).total_seconds())


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


@pytest.mark.parametrize("silenced", [True, False], ids=["silenced", "not-silenced"])
def test_an_escalation_while_a_silence_holds_the_incident_is_stored_as_paging_nobody(
    tmp_path: Path, silenced: bool
) -> None:
    # Node r01-n02 down (P2), then rack r01's power lost (P0). Told while silenced, the escalation paged
    # nobody: its event says so, and the reminders do not count it as a page (the silence's end pages).
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest(sc.node_failure(1, 2, serve.clock.now()))
    [incident_id] = serve.engine.open_incident_ids()
    if silenced:
        serve.engine.silence_incident(incident_id, 3600, "alice")
    serve.clock.advance(60)
    rack = {"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": "r01", "severity": "critical"}
    serve.engine.ingest([Alert(rack)])
    [rose] = [
        e for e in serve.engine.store.get(incident_id).timeline if e.kind == "priority" and e.data["from"]
    ]
    assert (rose.data["from"], rose.data["to"]) == ("P2", "P0")
    assert rose.data.get("silenced", False) is silenced


def _stored(
    session: Session,
    incident_id: str,
    into: str | None,
    *events: tuple[str, float, dict[str, object]],
    announced: float | None = None,
    opened: float = 0,
) -> None:
    """An incident (merged into ``into``, if set; opened ``opened`` hours after 23:00, and announced
    ``announced`` seconds after that, if set) and its events (kind, hours after 23:00, data), stored."""
    at = FakeClock().now()
    opened_at = at + timedelta(hours=opened)
    session.add(
        IncidentRow(
            id=incident_id,
            title="",
            priority="P1",
            state="resolved" if into else "triggered",
            root_kind="xid",
            root_target={},
            opened_at=opened_at,
            updated_at=at,
            last_alert_at=at,
            first_onset_at=at,
            impact={},
            merged_into=into,
            announced_at=None if announced is None else opened_at + timedelta(seconds=announced),
        )
    )
    session.flush()
    for kind, hours, data in events:
        session.add(
            TimelineRow(
                incident_id=incident_id, at=at + timedelta(hours=hours), kind=kind, message="", data=data
            )
        )
    session.flush()


@pytest.mark.parametrize(
    ("announced", "merged", "page", "taken"),
    [
        pytest.param(10, 60, 1.5 * 3600 + 10, None, id="announced"),
        # 0019 stored the opening's own time for incidents of before it: read as told at the end of the delay.
        pytest.param(0, 60, 1.5 * 3600 + 10, None, id="stored-before-0019"),
        pytest.param(None, 5, 3600, None, id="never-announced"),
        # Past its delay but never announced (the serve holding it stopped; the next merged it before its
        # first tick): it paged nobody either.
        pytest.param(None, 60, 3600, None, id="never-announced-merged-after-its-delay"),
        # The outbox took its opening 10 s after it opened, and storing when failed (the store dropped, or
        # serve died); it was merged before it was announced again: it paged, when the outbox took it.
        pytest.param(None, 60, 1.5 * 3600 + 10, 10, id="taken-by-the-outbox-unstored"),
    ],
)
def test_the_pages_of_an_incident_merged_in_count_as_the_incidents_own(
    tmp_path: Path, announced: float | None, merged: float, page: float, taken: float | None
) -> None:
    # inc-a paged at its opening (23:00) and an escalation (00:00); inc-b opened at 01:30, was told after
    # the 10 s announce delay and paged, then merged into inc-a at 01:31: inc-a's fault was paged then. One
    # merged 5 s after it opened was never announced: it paged nobody.
    with Session(migrated_sqlite(tmp_path / "incidents.db")) as session:
        _stored(session, "inc-a", None, ("opened", 0, {}), ("priority", 1, {"from": "P2", "to": "P1"}))
        b_merged = ("merged", 1.5 + merged / 3600, {"into": "inc-a"})
        _stored(session, "inc-b", "inc-a", ("opened", 1.5, {}), b_merged, announced=announced, opened=1.5)
        if taken is not None:  # its opening for two notifiers, then its merge (told: the outbox knew it)
            at = FakeClock().time() + 1.5 * 3600 + taken
            for notifier, key, after in (("slack", "o", 0), ("webhook:ops", "o", 0), ("slack", "m", 50)):
                session.add(
                    OutboxMessage(
                        notifier=notifier,
                        incident_id="inc-b",
                        idempotency_key=key,
                        payload="{}",
                        status="sent",
                        created_at=at + after,
                        next_attempt_at=at + after,
                    )
                )
            session.flush()
        events = stored_pages(session, ["inc-a"], 10)["inc-a"]
        last, taken_up = last_page(events, FakeClock().now(), 10)
    assert (last - FakeClock().now()).total_seconds() == page
    assert not taken_up


@pytest.mark.parametrize(
    ("announced", "told"),
    [
        pytest.param(None, 10, id="stored-before-0019-at-the-end-of-its-delay"),
        pytest.param(3605, 3605, id="announced-an-hour-late"),
    ],
)
def test_an_opening_is_read_as_told_when_it_was_announced(
    tmp_path: Path, announced: float | None, told: int
) -> None:
    at = FakeClock().now()
    with Session(migrated_sqlite(tmp_path / "incidents.db")) as session:
        _stored(session, "inc-a", None, ("opened", 0, {}), announced=announced)
        [(kind, _, data)] = stored_pages(session, ["inc-a"], 10)["inc-a"]
    assert kind == "opened" and data[TOLD_AT] == at + timedelta(seconds=told)


@pytest.mark.parametrize(
    ("announced", "restart"),
    [
        # serve stopped 5 s after the opening, within its 10 s announce delay, and started an hour later.
        pytest.param(3605, True, id="serve-down-an-hour-during-the-announce-delay"),
        # a tick 30 s late (a slow store, a storm): the opening was handed to the outbox at +40 s.
        pytest.param(40, False, id="slow-tick"),
    ],
)
def test_the_reminder_clock_counts_from_when_the_opening_was_announced(
    tmp_path: Path, announced: int, restart: bool
) -> None:
    # The node's incident opens at 23:00; its opening is handed to the outbox (its page) only at
    # ``announced`` seconds: the first reminder is 4 h after that, saying so, not 4 h after the end of the
    # announce delay (which was 3 h after the page, or 30 s early). A restart after the announcement reads
    # the same time back from the store.
    serve = _Serve(tmp_path / "serve")
    start = serve.clock.now()
    serve.engine.ingest([_DOWN])
    serve.clock.advance(5)
    serve.engine.tick()  # within the delay: nothing told
    serve.clock.advance(announced - 5)
    if restart:
        serve.restart()
    serve.engine.tick()
    told = _told(serve)
    assert [(n.change.value, (n.event_at - start).total_seconds()) for n in told] == [("opened", 0)]
    for at in sorted((10 + 14400, 10000 + announced, announced + 14400 - 1, announced + 14400)):
        _advance_to(serve, start, at)
        if at == 10000 + announced and restart:
            serve.restart()
        serve.engine.tick()
    reminders = _reminders(serve)
    assert [((n.event_at - start).total_seconds(), n.reminder) for n in reminders] == [
        (announced + 14400, 14400.0)
    ]
    assert reminders[0].event_message == "still firing 4h after the last page, not acknowledged: reminding"


def test_an_opening_announced_late_while_a_silence_held_it_is_first_told_at_the_silences_end(
    tmp_path: Path,
) -> None:
    # The node's incident opens at 23:00; its 10 s announce delay ends with no tick, someone silences it at
    # 23:00:20 for 10 minutes, and the late tick of 23:00:40 announces it silenced: Slack posts nothing, the
    # channel first hears of it when the silence's end is told (23:10:25, marked ``first_told``, a page on
    # the webhook), and the reminder comes 20 minutes after that, not 20 minutes after 23:00:10.
    serve = _Serve(tmp_path / "serve", remind_after_seconds=1200)
    start = serve.clock.now()
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    for second in (20, 40, 625, 1824, 1825):
        _advance_to(serve, start, second)
        if second == 20:
            serve.engine.silence_incident(incident_id, 600, "alice")
        else:
            serve.engine.tick()
    told = _told(serve)
    [opened] = [n for n in told if n.change.value == "opened"]
    assert opened.silenced_until is not None  # paged nobody
    [ended] = [n for n in told if n.event_kind == "silence_ended"]
    assert (ended.event_at - start).total_seconds() == 625 and ended.first_told and ended.pages
    assert [((n.event_at - start).total_seconds(), n.reminder) for n in _reminders(serve)] == [(1825, 1200.0)]


def _failing_store(incident_ids: Any) -> None:
    """``_store_announced`` as the store answers when it fails just after the outbox took an opening."""
    if incident_ids:
        raise OperationalError("UPDATE", None, Exception("store down"))


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


def _announced(sql: Engine, delay: float) -> tuple[FakeClock, AlertingConfig]:
    """A serve on ``sql`` whose node incident opens at 23:00 and is announced ``delay`` seconds later (stored:
    announced_at); its clock and configuration, for the restarts that follow."""
    clock, config = FakeClock(), AlertingConfig(announce_delay_seconds=delay)
    engine = IncidentEngine(sql, clock, config, sc.fleet_inventory())
    engine.subscribe(Outbox(sql, [Quiet()], clock))
    engine.ingest([_DOWN])
    clock.advance(delay)
    engine.tick()
    return clock, config


def a_restart_offers_the_outbox_no_opening_the_store_says_was_announced(db: str, delay: float) -> None:
    """The node's incident opens at 23:00 and is announced ``delay`` seconds later (stored: announced_at).
    serve restarts an hour later: its first tick announced it again, the outbox dropping the duplicate by its
    key, for every open incident (10,000 read and offered at start); the store says it was announced, so
    nothing is. With no delay it is announced in the instant it opened (a clock that did not move, or was set
    back): stored as its opening's time, it read as stored before 0019, offered again at every start."""
    sql = alerting.db.make_engine(db)
    try:
        clock, config = _announced(sql, delay)
        start = clock.now() - timedelta(seconds=delay)
        clock.advance(3600)
        engine = IncidentEngine(sql, clock, config, sc.fleet_inventory())  # the restart
        outbox = Outbox(sql, [Quiet()], clock)
        heard: list[IncidentChange] = []
        engine.subscribe(outbox)
        engine.subscribe(heard.append)
        clock.advance(5)
        engine.tick()
        assert heard == []
        assert outbox.stats.duplicates == 0
        told = [Notification.model_validate_json(m.payload).change.value for m in outbox.messages()]
        assert told == ["opened"]
        with Session(sql) as session:
            (announced,) = session.scalars(select(IncidentRow.announced_at))
        assert announced is not None and announced - start == timedelta(seconds=delay or 1e-6)
    finally:
        sql.dispose()


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


def an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay(db: str, delay: float) -> None:
    """The first start after the upgrade stores an incident of before 0019 (``announced_at`` its opening's
    time) as announced at the end of its delay, a microsecond after its opening with none; shared with the
    PostgreSQL test."""
    sql = alerting.db.make_engine(db)
    try:
        clock, config = _announced(sql, delay)
        start = clock.now() - timedelta(seconds=delay)
        with sql.begin() as connection:  # as 0019 stores an incident of before it
            connection.execute(update(IncidentRow).values(announced_at=IncidentRow.opened_at))
        for _ in range(2):
            clock.advance(3600)
            engine = IncidentEngine(sql, clock, config, sc.fleet_inventory())  # a restart
            outbox = Outbox(sql, [Quiet()], clock)
            engine.subscribe(outbox)
            engine.tick()
            with Session(sql) as session:
                (announced,) = session.scalars(select(IncidentRow.announced_at))
            assert announced - start == timedelta(seconds=delay or 1e-6)
        assert outbox.stats.duplicates == 0  # the second start offered it nothing
    finally:
        sql.dispose()


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


def _gpu_lost(node: str) -> Alert:
    labels = {"alertname": "GPULost", "Hostname": node, "gpu": "0", "UUID": sc.gpu_uuid(node, 0)}
    return Alert({"cluster": sc.CLUSTER, **labels})


@pytest.mark.parametrize("discarded", [False, True], ids=["kept", "discarded"])
@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "store-back"])
def test_an_incident_the_outbox_took_then_merged_before_it_was_announced_again_stores_that_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart: bool, discarded: bool
) -> None:
    # r07-n01's GPU is lost at 23:00 (paged 23:00:10), r07-n02's at 00:30; the tick of 00:30:10 hands that
    # opening to the outbox (its page) and the store fails before storing when (or serve dies). The whole
    # rack goes down at 00:31, before the next tick (or the restarted serve's first): the second incident
    # is merged into the first, never announced again, and its announced_at stayed NULL, read as never
    # handed to the outbox. The outbox's time is stored; the first incident is reminded 4 h after it.
    # ``discarded``: that message was discarded unsent (``outbox discard``): it paged nobody, as the outbox
    # itself answers for a discarded opening (``Outbox.__call__``); its time was stored all the same, and
    # the first incident's reminder came at 05:30:10, not 4 h after its own page (04:00:10).
    serve = _Serve(tmp_path / "serve")
    start = serve.clock.now()
    serve.engine.ingest([_gpu_lost("r07-n01")])
    [first] = serve.engine.open_incident_ids()
    serve.clock.advance(10)
    serve.engine.tick()
    _advance_to(serve, start, 5400)
    serve.engine.ingest([_gpu_lost("r07-n02")])
    [second] = set(serve.engine.open_incident_ids()) - {first}
    serve.clock.advance(10)
    monkeypatch.setattr(serve.engine, "_store_announced", _failing_store)
    serve.engine.tick()
    monkeypatch.undo()
    if discarded:
        with Session(alerting.db.make_engine(serve.db)) as session, session.begin():
            session.execute(
                update(OutboxMessage).where(OutboxMessage.incident_id == second).values(status=DISCARDED)
            )
    _advance_to(serve, start, 5460)
    if restart:
        serve.restart()
    serve.engine.ingest(
        [Alert({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": f"r07-n0{n}"}) for n in range(1, 9)]
    )
    assert serve.engine.open_incident_ids() == [first]
    with Session(alerting.db.make_engine(serve.db)) as session:
        row = session.get(IncidentRow, second)
        assert row is not None and row.merged_into == first
        assert row.announced_at == (None if discarded else start + timedelta(seconds=5410))
    for at in (9000, 14410, 19809, 19810):  # 14410: 4 h after the first incident's page
        _advance_to(serve, start, at)
        serve.engine.tick()
    assert [((n.event_at - start).total_seconds(), n.reminder) for n in _reminders(serve)] == [
        (14410, 14400.0) if discarded else (19810, 14400.0)
    ]


@pytest.mark.parametrize("resent", [True, False], ids=["resent", "not-resent"])
def test_an_incident_whose_only_firing_alert_a_silence_mutes_is_not_reminded(
    tmp_path: Path, resent: bool
) -> None:
    # At 01:00 someone silences the node's alert itself (an Alertmanager silence on its labels, not the
    # incident's): Alertmanager repeats no notification of a silenced alert, so no reminder comes while it
    # holds (01:00 to 09:00); Prometheus may resend the alert meanwhile or not.
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest([_DOWN])
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()
    for at in range(_TICK, _NIGHT + 1, _TICK):
        serve.clock.advance(_TICK)
        if at == 7200:
            now = serve.clock.now()
            matcher = parse_matcher('node="r05-n03"')
            serve.engine.add_silence([matcher], now, now + timedelta(hours=8), "alice")
        if resent:
            serve.engine.ingest([_DOWN])
        serve.engine.tick()
    assert _reminders(serve) == []


@pytest.mark.parametrize("by", ["acknowledged", "mitigating"])
def test_an_incident_taken_up_before_an_escalation_is_not_reminded_while_it_stays_taken_up(
    tmp_path: Path, by: str
) -> None:
    # Node r01-n02 down (P2) at 23:00, acknowledged (or a drain marked mitigating) at 23:01; rack r01's
    # power lost at 23:30 escalates it to P0, which pages. It stays acknowledged (mitigating): a reminder
    # at 03:30 saying "not acknowledged" would be false, and would page over a remediation in progress.
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest(sc.node_failure(1, 2, serve.clock.now()))
    [incident_id] = serve.engine.open_incident_ids()
    serve.clock.advance(60)
    serve.engine.tick()
    if by == "acknowledged":
        serve.engine.acknowledge(incident_id, "alice")
    else:
        serve.engine.mark_mitigating(incident_id, "alice", "drain_node")
    serve.clock.advance(1740)
    rack = {"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": "r01", "severity": "critical"}
    serve.engine.ingest([Alert(rack)])
    for _ in range(0, _NIGHT, _TICK):
        serve.clock.advance(_TICK)
        serve.engine.tick()
    incident = serve.engine.store.get(incident_id)
    assert incident.state.value == by and incident.priority.value == "P0"
    assert _reminders(serve) == []


def test_an_escalation_accepted_while_silenced_and_applied_after_the_silence_ended_is_a_page(
    tmp_path: Path,
) -> None:
    # The rack's power loss is accepted while a 60 s silence holds the node's incident and applied after a
    # tick saw the silence end. Silences are checked when a record is applied (``Batch.silence_time``): the
    # escalation is told unsilenced and pages, so its event must not say ``silenced`` (the reminders would
    # count no page there and remind 4 h after the opening, not after this escalation).
    serve = _Serve(tmp_path / "serve")
    serve.engine.ingest(sc.node_failure(1, 2, serve.clock.now()))
    [incident_id] = serve.engine.open_incident_ids()
    serve.engine.silence_incident(incident_id, 60, "alice")
    serve.clock.advance(30)
    accepted = serve.clock.now()
    serve.clock.advance(31)
    serve.engine.tick()
    rack = {"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": "r01", "severity": "critical"}
    serve.engine.apply_accepted([(accepted, [Alert(rack)])], lambda _session: None)
    [rose] = [
        e for e in serve.engine.store.get(incident_id).timeline if e.kind == "priority" and e.data["from"]
    ]
    told = _told(serve)
    [escalation] = [n for n in told if n.event_kind == "priority" and n.escalated]
    assert escalation.pages and escalation.silenced_until is None
    assert rose.data.get("silenced", False) is False


def _past_due_muted(tmp_path: Path, **config: object) -> tuple[_Serve, str, str]:
    """The node's incident, announced at 23:00:10; its alert silenced (its own labels, 12 h) at 23:01; then
    ticked at 03:01, past its reminder time but muted: the incident and the silence's ids."""
    serve = _Serve(tmp_path / "serve")
    if config:
        serve.config = AlertingConfig(**config)  # type: ignore[arg-type]
        serve.restart()
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()
    serve.clock.advance(60)
    now = serve.clock.now()
    matchers = [parse_matcher('alertname="NodeDown"'), parse_matcher('node="r05-n03"')]
    silence_id = serve.engine.add_silence(matchers, now, now + timedelta(hours=12), "alice")
    serve.clock.advance(4 * 3600)
    serve.engine.tick()
    assert _reminders(serve) == []
    return serve, incident_id, silence_id


def test_an_incident_muted_past_its_reminder_time_is_not_looked_at_again_at_every_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10,000 such incidents cost a quarter of a second a tick when each was matched against the silences
    # at every tick; the silence's end is known, so nothing of it is looked at before then.
    serve, _, _ = _past_due_muted(tmp_path)
    asked: list[object] = []
    muting = SilenceIndex.muting

    def counted(self: SilenceIndex, *args: Any, **kwargs: Any) -> list[Silence]:
        asked.append(args)
        return muting(self, *args, **kwargs)

    monkeypatch.setattr(SilenceIndex, "muting", counted)
    for _ in range(5):
        serve.clock.advance(5)
        serve.engine.tick()
    assert asked == []
    assert _reminders(serve) == []


@pytest.mark.parametrize(
    "freed",
    ["silence-expired", "silence-ran-out", "unmuted-alert-joined", "alert-fired-again"],
)
def test_an_incident_muted_past_its_reminder_time_is_reminded_at_the_first_tick_nothing_mutes_it(
    tmp_path: Path, freed: str
) -> None:
    # Looked at again only when what mutes it may end: its silence's end, or at once when the silences
    # change, or something of it changes (an alert joins that nothing mutes; a quiet incident's alert fires
    # again): the reminder comes at the first tick after, as a restarted serve would remind.
    serve, incident_id, silence_id = _past_due_muted(tmp_path)
    for _ in range(3):
        serve.clock.advance(5)
        serve.engine.tick()
    if freed == "silence-expired":
        serve.engine.expire_silence(silence_id)
    elif freed == "silence-ran-out":
        serve.clock.advance(8 * 3600)
    elif freed == "unmuted-alert-joined":
        gpu = {"cluster": sc.CLUSTER, "alertname": "GpuFellOffBus", "node": "r05-n03", "gpu": "2"}
        serve.engine.ingest([Alert(gpu)])
        assert serve.engine.open_incident_ids() == [incident_id]
    else:  # the alert resolves, the silence is lifted, and the alert fires again within the quiet period
        serve.engine.ingest([Alert(dict(_DOWN.labels), status=AlertStatus.RESOLVED)])
        serve.engine.tick()
        serve.engine.expire_silence(silence_id)
        serve.clock.advance(5)
        serve.engine.tick()
        assert _reminders(serve) == []  # nothing of it fires
        serve.engine.ingest([_DOWN])
    before = serve.clock.now()
    serve.clock.advance(5)
    serve.engine.tick()
    [reminder] = _reminders(serve)
    assert reminder.incident_id == incident_id and before < reminder.event_at <= serve.clock.now()


def test_an_incident_inhibited_past_its_reminder_time_is_reminded_once_the_source_ends(
    tmp_path: Path,
) -> None:
    # A maintenance alert of another cluster inhibits every NodeDown (no ``equal``): the node's incident is
    # not reminded while it fires, and is at the first tick after it resolved.
    rule = {"source_matchers": ['alertname="FleetMaintenance"'], "target_matchers": ['alertname="NodeDown"']}
    serve = _Serve(tmp_path / "serve")
    serve.config = AlertingConfig(inhibit_rules=[rule])  # type: ignore[list-item]
    serve.restart()
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    source = Alert({"cluster": "elsewhere", "alertname": "FleetMaintenance"})
    serve.engine.ingest([source])
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()  # its opening announced: the page the reminder counts from
    serve.clock.advance(4 * 3600 + 60)
    serve.engine.tick()
    for _ in range(3):
        serve.clock.advance(5)
        serve.engine.tick()
    assert incident_id not in [n.incident_id for n in _reminders(serve)]
    serve.engine.ingest([Alert(dict(source.labels), status=AlertStatus.RESOLVED)])
    serve.clock.advance(5)
    serve.engine.tick()
    assert incident_id in [n.incident_id for n in _reminders(serve)]


@pytest.mark.parametrize("steady", [False, True], ids=["only-flapping", "one-firing-steadily"])
def test_a_reminder_of_an_incident_whose_alerts_only_flap_says_still_flapping(
    tmp_path: Path, steady: bool
) -> None:
    # The node's alert fires and resolves every minute from 23:00 (flapping from its sixth change: the
    # incident stays open); reminded of 10 minutes after its page, "still firing" would say what it is not
    # doing. With another alert of it firing steadily (a GPU of the node fell off the bus), it is firing.
    serve = _Serve(tmp_path / "serve", remind_after_seconds=600)
    gpu = Alert({"cluster": sc.CLUSTER, "alertname": "GpuFellOffBus", "node": "r05-n03", "gpu": "2"})
    serve.engine.ingest([_DOWN, gpu] if steady else [_DOWN])
    for change in range(1, 12):
        serve.clock.advance(60)
        status = AlertStatus.RESOLVED if change % 2 else AlertStatus.FIRING
        serve.engine.ingest([Alert(dict(_DOWN.labels), status=status)])
        serve.engine.tick()
    assert len(serve.engine.open_incident_ids()) == 1
    [reminder] = _reminders(serve)
    what = "firing" if steady else "flapping"
    assert reminder.event_message == f"still {what} 10m after the last page, not acknowledged: reminding"


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
