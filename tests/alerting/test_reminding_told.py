"""Reminding: when an opening counts as told, and the pages of incidents merged into another."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

import alerting.db
from alerting import scenarios as sc
from alerting.outbox_tables import DISCARDED, OutboxMessage
from alerting.reminders import TOLD_AT, last_page
from alerting.reminding import stored_pages
from alerting.store_models import IncidentRow, TimelineRow
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from tests.alerting.reminding_night import _DOWN, _advance_to, _failing_store, _reminders, _Serve, _told
from tests.migrated_store import migrated_sqlite


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
