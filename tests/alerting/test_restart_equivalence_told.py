"""A restart of ``serve`` changes nothing about what is told: changes stored untold while the outbox was
unreachable, what a POST did besides, root causes and ranks moved in one POST (run live and restarted,
as in ``test_restart_equivalence``)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alerting import scenarios as sc
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from tests.alerting.restart_serves import _DOWN, Serve, _both, _lost, _resolved

# What the outbox tells of each change (not the title, root cause and impact: a change told late carries the
# incident's latest, see ``alerting.event_state``).
_TOLD = (
    "incident_id",
    "change",
    "priority",
    "state",
    "event_kind",
    "event_message",
    "escalated",
    "held",
    "also",
)


def _payloads(serve: Serve) -> list[dict[str, Any]]:
    """What the outbox tells of each change, incident ids named by their first appearance (each run draws
    its own)."""
    text = json.dumps([m.payload for m in serve.outbox.messages()])
    named: dict[str, str] = {}
    text = re.sub(r"inc-[0-9a-f]{12}", lambda m: named.setdefault(m[0], f"inc-{len(named)}"), text)
    return [{k: v for k, v in json.loads(p).items() if k in _TOLD} for p in json.loads(text)]


def _unreachable(change: object) -> int:
    raise OSError("the store dropped")


def test_an_incident_merged_away_as_it_escalated_pages_nobody_when_told_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A GPU lost on r01-n01 and node r01-n02 down, then rack r01's power loss: in that one POST both rose to
    # P0 and one took the other in. Its "priority P0" must not page, told live or, stored untold (the outbox
    # unreachable) and told after a restart together with a later POST of the same instant.
    start = FakeClock().now()
    lost = replace(_lost(sc.node_name(1, 1), 3), starts_at=start - timedelta(seconds=60))
    first = [lost, *sc.node_failure(1, 2, start)]
    labels = {"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": "r01", "severity": "critical"}
    rack = Alert(labels, starts_at=start + timedelta(seconds=30))

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest(first)
        serve.clock.advance(60)
        if restart:
            monkeypatch.setattr(serve.outbox, "enqueue", _unreachable)
        serve.engine.ingest([*first, rack])
        serve.engine.ingest([_resolved(lost)])  # another POST, same instant
        if restart:
            serve.restart()
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    told = _payloads(live)
    (gone,) = {p["incident_id"] for p in told if p["event_kind"] == "merged" and p["change"] == "resolved"}
    paged = [p for p in told if p["change"] == "priority_changed" and p["escalated"]]
    assert {(p["incident_id"] == gone, p["held"]) for p in paged} == {(True, True), (False, False)}
    assert _payloads(restarted) == told


def test_what_a_post_did_besides_its_told_change_is_said_alike_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GPU 3 of a node lost, a minute later GPU 4 of it: the root moved to the node, and only that was told;
    # the GPU that joined is said with it ("also"), decided by its POST, whether told live or after a restart
    # in one round with a later POST of the same instant (GPU 3's alert resolving).
    node = sc.node_name(1, 1)
    first, second = _lost(node, 3), _lost(node, 4)

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([first])
        serve.clock.advance(60)
        if restart:
            monkeypatch.setattr(serve.outbox, "enqueue", _unreachable)
        serve.engine.ingest([first, second])
        serve.engine.ingest([first, second])  # Prometheus sends them again: nothing new
        serve.engine.ingest([_resolved(first)])
        if restart:
            serve.restart()
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    told = _payloads(live)
    joined = f"alert GPULost ({node}, 4) firing"
    assert [p["event_kind"] for p in told if joined in p["also"]] == ["root_cause_changed"]
    assert _payloads(restarted) == told


@pytest.mark.parametrize("tick", ["announcement failed", "no tick"])
def test_an_incident_past_its_delay_unannounced_is_announced_at_its_next_change_as_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tick: str
) -> None:
    # Its announce delay passed and a change of it came before a tick announced it, because the tick's
    # announcement failed (the outbox unreachable: restart fuzz seed 10) or no tick came (seed 41 with a
    # symmetric correlation rule). Live held it for the next tick and folded the change into that
    # announcement; a restarted serve, which cannot know it was never announced, announced it at that change
    # and told the change too. Both do that now.
    node = sc.node_name(1, 1)

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_lost(node, 3)])
        serve.clock.advance(11)
        if tick == "announcement failed":
            with monkeypatch.context() as down:
                down.setattr(serve.outbox, "enqueue", _unreachable)
                serve.engine.tick()  # due: its announcement fails
        if restart:
            serve.restart()
        serve.engine.ingest([_lost(node, 3), _lost(node, 4)])  # a change of it, before the next tick

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=10)
    assert live.told()[:1] == ["opened"]
    assert restarted.told() == live.told()


def _resolved_in_an_outage(serve: Serve, monkeypatch: pytest.MonkeyPatch, restart: bool) -> None:
    """Node r03-n02 down (announce delay 30 s) and resolved by the quiet period (60 s) while the outbox is
    unreachable (its announcement failing at each tick), a restart with ``restart``, and 5 s later."""
    with monkeypatch.context() as down:
        down.setattr(serve.outbox, "enqueue", _unreachable)
        serve.engine.ingest([_DOWN])
        serve.clock.advance(31)
        serve.engine.tick()  # due: its announcement fails
        serve.engine.ingest([_resolved(_DOWN)])
        serve.clock.advance(61)
        serve.engine.tick()  # resolved by the quiet period: told to nobody yet
    if restart:
        serve.restart()
    serve.clock.advance(5)


def test_an_incident_resolved_while_its_announcement_failed_is_told_to_nobody_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restart fuzz seed 291: the outbox unreachable from the incident's opening to its resolution (its
    # announcement failed at each tick). Trying again, the engine found it resolved, never announced, and
    # dropped it from the held ones; that telling failed too, and live told its end to every listener once
    # the outbox was back, as one that had been announced. A restarted serve, which reads only open
    # incidents, did the same. Both tell it only to those that know it: here nobody.
    def steps(serve: Serve, restart: bool) -> None:
        _resolved_in_an_outage(serve, monkeypatch, restart)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=30, quiet_period_seconds=60)
    assert [kinds[-1] for kinds in live.kinds()] == ["resolved"]
    assert live.told() == []
    assert restarted.told() == live.told()


def test_an_opening_left_untold_by_an_outage_is_told_as_it_opened_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restart fuzz seed 860: no announce delay, the outbox unreachable as the incident opened, acknowledged
    # after a restart. Live told the stored "opened" as the incident was then (triggered); a restarted serve
    # held it to be announced again and announced it as it was at the acknowledgement, whose "opened" the
    # outbox kept (the same event, so the same key) in place of the stored one's.
    def steps(serve: Serve, restart: bool) -> None:
        with monkeypatch.context() as down:
            down.setattr(serve.outbox, "enqueue", _unreachable)
            serve.engine.ingest([_DOWN])
        if restart:
            serve.restart()
        serve.clock.advance(5)
        [incident_id] = serve.engine.open_incident_ids()
        serve.engine.acknowledge(incident_id, "alice")

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    told = _payloads(live)
    assert [(p["change"], p["state"]) for p in told] == [
        ("opened", "triggered"),
        ("acknowledged", "acknowledged"),
    ]
    assert _payloads(restarted) == told


def test_an_unannounced_incident_resolved_in_an_outage_and_reopened_is_announced_first_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restart fuzz seed 1184's shape: the outbox unreachable from the incident's opening to its resolution
    # (its announcement failing at each tick), then its alert fired again, with or without a restart
    # between. A restarted serve told the reopening as the first word; live did too when the tick's retry
    # had found the incident resolved and dropped it, and announced it first when it still held it. Now each
    # announces it first, as it is now, then tells what waited.
    def steps(serve: Serve, restart: bool) -> None:
        _resolved_in_an_outage(serve, monkeypatch, restart)
        serve.engine.ingest([_DOWN])  # reopened

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=30, quiet_period_seconds=60)
    told = _payloads(live)
    assert [(p["change"], p["state"]) for p in told][:1] == [("opened", "triggered")]
    assert [p["change"] for p in told][-1] == "reopened"
    assert _payloads(restarted) == told


def test_an_opening_whose_telling_failed_and_then_merged_away_is_told_alike_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restart fuzz seed 1502: no announce delay; a GPU ran hot and its incident resolved; llm-70b's ranks
    # stalled while the outbox was unreachable (a new incident, its telling failed); the GPU ran hot again,
    # reopening its incident, which took the stall in. Live kept what the failed telling decided (announced)
    # and told the stall's opening and merge once the outbox was back; a restarted serve, which reads no
    # announcement in the store, found it opened and merged away in what waited and told nobody. Live now
    # forgets what a failed telling decided, as a restart does.
    ranks = [
        Alert({"cluster": sc.CLUSTER, "alertname": "TrainingJobStalled", "slurm_job": "llm-70b", "rank": r})
        for r in ("1", "19", "66", "67")
    ]
    hot = Alert({**_lost(sc.node_name(7, 3), 1).labels, "alertname": "GPUTemperatureHigh"})

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([hot])
        serve.engine.ingest([_resolved(hot)])
        serve.clock.advance(61)
        serve.engine.tick()  # resolved by the quiet period
        with monkeypatch.context() as down:
            down.setattr(serve.outbox, "enqueue", _unreachable)
            serve.engine.ingest(ranks)  # opened: telling it fails
        if restart:
            serve.restart()
        serve.engine.ingest([hot])  # reopens the GPU's incident, which takes the stall in

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=60)
    told = _payloads(live)
    assert {p["incident_id"] for p in told} == {"inc-0"}
    assert [p["change"] for p in told][-2:] == ["reopened", "priority_changed"]
    assert len(live.engine.store.list_rows(include_merged=True)) == 2  # the stall's, merged away
    assert _payloads(restarted) == told


@pytest.mark.parametrize("silenced", [False, True])
def test_an_unannounced_incident_reopened_in_an_outage_is_announced_first_alike_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silenced: bool
) -> None:
    # Restart fuzz seed 1767: the outbox unreachable from the incident's opening through its resolution and
    # its reopening, a restart before it came back. Live announced it first, as it is now, at the first
    # change that waited; a restarted serve took the reopening, untold, for its announcement and told what
    # waited without it. And an incident silenced for a while: live announced it as silenced as of that
    # change, a silence that had ended since, which a restarted serve no longer holds.
    def steps(serve: Serve, restart: bool) -> None:
        with monkeypatch.context() as down:
            down.setattr(serve.outbox, "enqueue", _unreachable)
            serve.engine.ingest([_DOWN])
            if silenced:
                [incident_id] = serve.engine.open_incident_ids()
                serve.engine.silence_incident(incident_id, 120, "op")
            serve.clock.advance(31)
            serve.engine.tick()  # due: its announcement fails
            serve.engine.ingest([_resolved(_DOWN)])
            serve.clock.advance(61)
            serve.engine.tick()  # resolved by the quiet period
            serve.clock.advance(60)
            serve.engine.ingest([_DOWN])  # reopened, the silence over
        if restart:
            serve.restart()
        serve.clock.advance(5)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=30, quiet_period_seconds=60)
    told = _payloads(live)
    assert [(p["change"], p["state"]) for p in told][:1] == [("opened", "triggered")]
    assert "reopened" in [p["change"] for p in told]
    assert _payloads(restarted) == told
    silences = [
        [json.loads(m.payload)["silenced_until"] for m in s.outbox.messages()] for s in (live, restarted)
    ]
    assert silences[0] == silences[1] == [None] * len(told)


def test_an_incident_announced_by_its_reopening_whose_end_waited_untold_is_told_alike_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Restart fuzz seed 1829: an incident resolved by hand within its announce delay (never announced),
    # reopened (told at once: that announced it), then resolved while the outbox was unreachable; after a
    # restart it reopened again. Live told the waiting end to everyone, as of an announced incident; the
    # restarted serve, which reads only open incidents, found its opening never announced in the store and
    # announced it first.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_DOWN])
        [incident_id] = serve.engine.open_incident_ids()
        serve.engine.ingest([_resolved(_DOWN)])
        serve.engine.resolve(incident_id, "alice")  # within the delay: never announced
        serve.engine.ingest([_DOWN])  # reopened: told
        with monkeypatch.context() as down:
            down.setattr(serve.outbox, "enqueue", _unreachable)
            serve.engine.ingest([_resolved(_DOWN)])
            serve.clock.advance(61)
            serve.engine.tick()  # resolved by the quiet period: told to nobody yet
        if restart:
            serve.restart()
        serve.engine.ingest([_DOWN])  # reopened again

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=10, quiet_period_seconds=60)
    told = _payloads(live)
    assert [p["change"] for p in told] == ["reopened", "updated", "resolved", "reopened"]
    assert _payloads(restarted) == told


def test_a_change_left_untold_by_an_outage_is_told_at_an_inventory_refresh_alike_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Found by the restart fuzz (seed 16): a refresh with an unchanged inventory returned early in a serve
    # that had assessed with it already, but a restarted serve assesses at its first refresh and told what
    # waited untold then; the running one told it only at its next tick.
    def steps(serve: Serve, restart: bool) -> None:
        serve.refresh(sc.fleet_inventory())
        serve.engine.ingest([_DOWN])
        if restart:
            serve.restart()
        serve.clock.advance(30)
        with monkeypatch.context() as down:
            down.setattr(serve.outbox, "enqueue", _unreachable)
            serve.engine.ingest([_lost(sc.node_name(1, 1), 3)])  # stored untold: the outbox is unreachable
        serve.refresh(sc.fleet_inventory())

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    assert live.told() == restarted.told() == ["opened", "opened"]


def _timelines(serve: Serve) -> list[str]:
    """Every incident's timeline (kinds, messages, data), incident ids blanked (each run draws its own)."""
    rows = serve.engine.store.list_rows(include_merged=True)
    said = [[(e.kind, e.message, e.data) for e in serve.engine.store.get(r.id).timeline] for r, _ in rows]
    return sorted(re.sub(r"inc-[0-9a-f]{12}", "inc-?", json.dumps(t, sort_keys=True)) for t in said)


def test_a_root_cause_moved_several_times_in_one_post_is_told_alike_after_restarts(tmp_path: Path) -> None:
    # The POST's coalesced "root cause is now ..." (one entry, rewritten as the root moved on) and the ranks
    # it moved together are stored and told alike, serve restarted before each POST and after it or not.
    def steps(serve: Serve, restart: bool) -> None:
        storm = sc.rack_failure(7, serve.clock.now())
        serve.engine.ingest(storm)
        serve.clock.advance(60)
        serve.engine.ingest(
            [Alert(a.labels, starts_at=a.starts_at, ends_at=serve.clock.now()) for a in storm]
        )
        serve.clock.advance(60)
        serve.engine.tick()
        serve.clock.advance(60)
        for alerts in (
            sc.nvlink_switch_failure(8, 3, serve.clock.now()),
            sc.driver_rollout_xids((7, 8), serve.clock.now() - timedelta(seconds=40)),
        ):
            if restart:
                serve.restart()
            serve.engine.ingest(alerts)
            serve.clock.advance(60)
        if restart:
            serve.restart()
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=20)
    told = _payloads(live)
    roots = [p["event_message"] for p in told if p["event_kind"] == "root_cause_changed"]
    # The rollout's POST moves the root three times, told once. (Before fix/batch3 took a POST's alerts in
    # onset order, the rack storm's POST, listed node by node, also told "root cause is now rack down on rack
    # r07"; in onset order its incidents open with their roots and none moves.)
    assert roots == ["root cause is now XID on cluster c1"], roots
    assert _timelines(restarted) == _timelines(live)
    assert _payloads(restarted) == told


def test_ranks_moved_together_are_one_entry_and_told_alike_after_a_restart(tmp_path: Path) -> None:
    # A driver rollout reaching a dead rack's job moves its stalled ranks in one entry each side, with or
    # without a restart before and after the POST.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest(sc.rack_failure(7, serve.clock.now()))
        serve.clock.advance(30)
        if restart:
            serve.restart()
        serve.engine.ingest(sc.driver_rollout_xids((7, 8), serve.clock.now()))
        serve.clock.advance(10)
        if restart:
            serve.restart()
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    told = _payloads(live)
    moved = [line for p in told for line in p["also"] if " moved to " in line]
    assert moved and all(line.split(" ", 1)[0] != "1" for line in moved), moved
    assert _timelines(restarted) == _timelines(live)
    assert _payloads(restarted) == told
