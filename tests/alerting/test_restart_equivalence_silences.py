"""A restart of ``serve`` changes nothing about silences: an incident resolved as its silence ended, which
silence mutes an alert, journal records applied after a silence ended or was set (run live and
restarted, as in ``test_restart_equivalence``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from alerting import scenarios as sc
from alerting.matchers import parse_matcher
from tests.alerting.restart_serves import _DOWN, Serve, _both, _lost, _resolved


def _silenced_and_resolved(serve: Serve, seconds: int) -> None:
    """Node r03-n02 down (its incident), the incident silenced for ``seconds`` by carol, and its alert
    resolved, all at one instant."""
    serve.engine.ingest([_DOWN])
    (incident_id,) = serve.engine.open_incident_ids()
    serve.engine.silence_incident(incident_id, seconds, "carol")
    serve.engine.ingest([_resolved(_DOWN)])


def _assert_reopened_alike(live: Serve, restarted: Serve) -> None:
    """The first incident resolved and then reopened, and the restarted serve's timeline of it and what it
    told are live's."""
    kinds = [s.kinds()[0] for s in (live, restarted)]
    assert kinds[0][-2:] == ["resolved", "reopened"]
    assert kinds[1] == kinds[0]
    assert restarted.told() == live.told()


def test_an_incident_resolved_when_its_silence_ended_catches_up_on_nothing_after_a_restart(
    tmp_path: Path,
) -> None:
    # Its silence ended while it was resolved: the tick dropped it. It reopened; a restarted serve read the
    # silence as still waiting (no silence_ended after it) and added a catch-up of everything since.
    def steps(serve: Serve, restart: bool) -> None:
        _silenced_and_resolved(serve, 120)
        serve.clock.advance(61)
        serve.engine.tick()  # resolved by the quiet period
        serve.clock.advance(60)
        serve.engine.tick()  # the silence ended
        serve.engine.ingest([_DOWN])  # reopened
        if restart:
            serve.restart()
        serve.clock.advance(5)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=60)
    _assert_reopened_alike(live, restarted)


def test_an_incident_resolved_while_silenced_at_a_restart_reopens_as_the_silence_ends_alike(
    tmp_path: Path,
) -> None:
    # serve restarted while the incident was resolved and its silence still ran; the silence ended and the
    # alert fired again before the next tick. Live still waited for that silence's end and caught up on what
    # it held back; a restarted serve tracked only open incidents' silences and added no catch-up. Since,
    # an incident resolved when its silence ended gets no catch-up at all, reopened by that tick or not (a
    # restart cannot know whether a tick saw the end: ``muting._resolved_at_end``); its reopening pages.
    def steps(serve: Serve, restart: bool) -> None:
        _silenced_and_resolved(serve, 300)
        serve.clock.advance(61)
        serve.engine.tick()  # resolved by the quiet period, still silenced
        if restart:
            serve.restart()
        serve.clock.advance(238)
        serve.engine.tick()
        serve.clock.advance(2)  # the silence ended; no tick yet
        serve.engine.ingest([_DOWN])  # reopened
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=60)
    _assert_reopened_alike(live, restarted)


def test_an_incident_the_tick_resolved_as_its_silence_ended_catches_up_on_nothing_after_a_restart(
    tmp_path: Path,
) -> None:
    # Its silence ended while it waited out its quiet period; the next tick resolved it first, then saw the
    # silence ended and dropped it. It reopened; a restarted serve read it as open at the silence's end, so
    # still waiting, and added a catch-up that live never adds.
    def steps(serve: Serve, restart: bool) -> None:
        _silenced_and_resolved(serve, 100)
        serve.clock.advance(130)
        serve.engine.tick()  # resolved by the quiet period; the silence ended at 100 s
        serve.clock.advance(5)
        serve.engine.ingest([_DOWN])  # reopened
        if restart:
            serve.restart()
        serve.clock.advance(5)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=120)
    _assert_reopened_alike(live, restarted)


def _reopened_by_a_record_from_before_the_end(serve: Serve, restart: bool, tick_at_end: bool) -> None:
    """The incident silenced for 300 s and resolved by its quiet period; a journal record of its alert from
    5 s before the silence ended, applied at the end (after a tick there with ``tick_at_end``), reopens it;
    a restart just before the apply with ``restart`` (and none with ``tick_at_end``: just after it)."""
    _silenced_and_resolved(serve, 300)
    serve.clock.advance(61)
    serve.engine.tick()  # resolved by the quiet period, still silenced
    serve.clock.advance(234)
    serve.engine.tick()
    serve.clock.advance(5)  # the silence ends now
    if tick_at_end:
        serve.engine.tick()  # sees it end while the incident is resolved
    elif restart:
        serve.restart()
    at = serve.clock.now()
    serve.engine.apply_accepted([(at - timedelta(seconds=5), [_DOWN]), (at, [])], lambda _session: None)
    if tick_at_end and restart:
        serve.restart()
    serve.clock.advance(5)
    serve.engine.tick()


def test_an_incident_a_record_from_before_its_silence_ended_reopens_catches_up_alike_after_a_restart(
    tmp_path: Path,
) -> None:
    # Seed 376: serve restarted as the silence ended, before a tick saw the end, and the record reopened the
    # incident as of before the end. Live still waited for that end (no tick had seen it) and caught up on
    # what the silence held back; a restarted serve tracked only running silences and open incidents, and
    # did not.
    def steps(serve: Serve, restart: bool) -> None:
        _reopened_by_a_record_from_before_the_end(serve, restart, tick_at_end=False)

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=60)
    assert live.kinds()[0][-2:] == ["reopened", "silence_ended"]
    assert restarted.kinds() == live.kinds() and restarted.told() == live.told()


def test_an_incident_a_record_from_before_its_silence_ended_reopens_catches_up_whether_a_tick_saw_the_end(
    tmp_path: Path,
) -> None:
    # As above, a tick seeing the end (the incident resolved then) before the record is applied: live had
    # dropped it and never caught up, while a restart after the reopening reads the timeline (open when the
    # silence ended) and caught up. The reopening reads it as the restart does.
    def steps(serve: Serve, restart: bool) -> None:
        _reopened_by_a_record_from_before_the_end(serve, restart, tick_at_end=True)

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=60)
    assert live.kinds()[0][-2:] == ["reopened", "silence_ended"]
    assert restarted.kinds() == live.kinds() and restarted.told() == live.told()


def test_an_alert_two_silences_mute_names_the_same_one_after_a_restart(tmp_path: Path) -> None:
    # Live names the first silence set of those that match; a restarted serve read the silences in the
    # store's order (by their end) and named the one ending first.

    def steps(serve: Serve, restart: bool) -> None:
        now = serve.clock.now()
        for matcher, seconds in (('node="r03-n02"', 600), ('alertname="NodeDown"', 60)):
            serve.engine.add_silence([parse_matcher(matcher)], now, now + timedelta(seconds=seconds), "dave")
        if restart:
            serve.restart()
        serve.engine.ingest([_DOWN])

    live, restarted = _both(tmp_path, steps)
    muted_by = []
    for serve in (live, restarted):
        row = serve.engine.store.alert(_DOWN.fingerprint)
        assert row is not None and row.muted_by is not None
        (silence,) = [s for s in serve.engine.silences() if row.muted_by.endswith(s.id)]
        muted_by.append(silence.matchers)
    assert muted_by[0] == (parse_matcher('node="r03-n02"'),)
    assert muted_by[1] == muted_by[0]


def test_a_journal_record_applied_after_its_silence_ended_pages_alike_after_a_restart(tmp_path: Path) -> None:
    # Seed 86 of ``benchmarks/restart_fuzz.py``: a record received a second before a silence ended, applied
    # after the tick that saw the end. Live it was muted by the ended silence (the tick that frees what a
    # silence muted had passed); a restarted serve had dropped that silence and opened the incident.
    def steps(serve: Serve, restart: bool) -> None:
        now = serve.clock.now()
        serve.engine.add_silence(
            [parse_matcher('alertname="NodeDown"')], now, now + timedelta(seconds=60), "dave"
        )
        serve.clock.advance(60)
        serve.engine.tick()
        if restart:
            serve.restart()
        at = serve.clock.now()
        serve.engine.apply_accepted([(at - timedelta(seconds=1), [_DOWN]), (at, [])], lambda _session: None)

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    for serve in (live, restarted):
        row = serve.engine.store.alert(_DOWN.fingerprint)
        assert row is not None and (row.status, row.muted_by) == ("firing", None)
        assert serve.engine.muted_count() == 0
    assert [kinds[0] for kinds in live.kinds()] == ["opened"]
    assert restarted.incidents() == live.incidents() and restarted.told() == live.told()


def _accepted_beside(serve: Serve, restart: bool, between: Callable[[Serve, str], object]) -> str:
    """GPU 3 of r07-n01 lost (its incident); the journal accepts GPU 5 of the node lost (a fault beside the
    first), then ``between`` happens to the incident, a restart with ``restart``, and it is applied."""
    node = sc.node_name(7, 1)
    serve.engine.ingest([_lost(node, 3)])
    [incident_id] = serve.engine.open_incident_ids()
    accepted = serve.clock.now()
    between(serve, incident_id)
    if restart:
        serve.restart()
    serve.engine.apply_accepted([(accepted, [_lost(node, 5)])], lambda _session: None)
    return incident_id


def test_a_record_accepted_before_an_incident_silence_ended_and_applied_after_joins_alike_after_a_restart(
    tmp_path: Path,
) -> None:
    # The incident's silence ends between the record's accept and its apply, a tick seeing the end. Live the
    # ended silence was still held at the record's time, so the fault beside it "ended" it early a second
    # time (a second silence_ended, its end moved back to the record's time); a restarted serve had dropped
    # that silence and let the fault join. Both check the incident's silences when the record is applied.
    def ends(serve: Serve, incident_id: str) -> None:
        serve.engine.silence_incident(incident_id, 60, "op")
        serve.clock.advance(61)  # the silence ended a second ago, a tick saw it
        serve.engine.tick()

    def steps(serve: Serve, restart: bool) -> None:
        _accepted_beside(serve, restart, ends)

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    for serve in (live, restarted):
        [incident] = [serve.engine.store.get(r.id) for r, _ in serve.engine.store.list_rows()]
        assert [e.kind for e in incident.timeline].count("silence_ended") == 1
        [silence] = serve.engine.all_silences()
        assert silence.ends_at == silence.starts_at + timedelta(seconds=60)  # ended as set, not moved
    assert restarted.kinds() == live.kinds() and restarted.told() == live.told()


def test_a_fault_beside_accepted_before_its_incident_was_silenced_ends_the_silence_alike_after_a_restart(
    tmp_path: Path,
) -> None:
    # The incident is silenced between the record's accept and its apply. Checked at the record's time the
    # silence did not hold yet (pending then), so the fault beside it joined the silenced incident and was
    # told silenced: nobody paged for a fault the silence was not set for. Checked when applied, as the
    # record's alerts are, it holds, and the fault ends it early, with or without a restart in between.
    def silenced(serve: Serve, incident_id: str) -> None:
        serve.clock.advance(2)
        serve.engine.silence_incident(incident_id, 600, "op")
        serve.clock.advance(1)

    def steps(serve: Serve, restart: bool) -> None:
        _accepted_beside(serve, restart, silenced)

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    for serve in (live, restarted):
        [incident] = [serve.engine.store.get(r.id) for r, _ in serve.engine.store.list_rows()]
        ended = [e for e in incident.timeline if e.kind == "silence_ended"]
        assert [e.data.get("early", "")[:20] for e in ended] == ["GPULost (r07-n01, 5)"]
        assert serve.engine.silenced_until() == {}
        [silence] = serve.engine.all_silences()
        assert silence.starts_at <= silence.ends_at == serve.clock.now()  # ended when it was applied
    assert restarted.kinds() == live.kinds() and restarted.told() == live.told()


def test_a_silence_ending_is_told_alike_after_a_restart_when_a_late_record_adds_an_older_event(
    tmp_path: Path,
) -> None:
    # Restart fuzz seed 2142: an incident silenced for an hour; in its last half hour an alert joined it (an
    # event close to the end, whose message offers the extension), so the tick wrote no `silence_ending`;
    # then a journal record accepted long before was applied, its event dated at its accept. After a
    # restart the tick read the incident's last event, the old one, and wrote a `silence_ending` live did
    # not. Both read the latest time on its timeline now.
    node = sc.node_name(3, 2)

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_DOWN])
        [incident_id] = serve.engine.open_incident_ids()
        serve.engine.silence_incident(incident_id, 3600, "erin")
        accepted = serve.clock.now() + timedelta(seconds=10)
        serve.clock.advance(1801)  # its last half hour
        serve.engine.ingest([_lost(node, 1)])  # joins it: an event close to the end
        serve.engine.tick()
        serve.engine.apply_accepted([(accepted, [_lost(node, 2)])], lambda _session: None)
        if restart:
            serve.restart()
        serve.clock.advance(5)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    assert "silence_ending" not in live.kinds()[0]
    assert restarted.kinds() == live.kinds() and restarted.told() == live.told()
