"""Webhooks through the outbox: what a receiver gets when messages are refused, left out or huge."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.outbox_tables import FAILED, SENT
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, WorkloadKind, WorkloadRef
from tests.alerting.notifiers.incidents import lifecycle


class LimitedReceiver:
    """A receiver that refuses bodies over ``limit`` bytes with 413 (and, while ``refusing``, everything
    with 400), keeping what it accepted."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self.refusing = False
        self.accepted: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.refusing:
            return httpx.Response(400)
        if len(request.content) > self.limit:
            return httpx.Response(413)
        self.accepted.append(json.loads(request.content))
        return httpx.Response(200)

    def hook(self, **kwargs: Any) -> WebhookNotifier:
        client = httpx.Client(transport=httpx.MockTransport(self))
        return WebhookNotifier("http://receiver/hook", name="webhook:r", client=client, **kwargs)


def storm(changes: list[IncidentChange]) -> list[IncidentChange]:
    """The same changes of an incident that touches 5,000 workloads, its title 20,000 characters long."""
    workloads = tuple(WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "ns", f"svc-{i:05d}") for i in range(5000))
    out = []
    for c in changes:
        impact = replace(c.incident.impact, workloads=workloads)
        out.append(replace(c, incident=replace(c.incident, title="r07 " * 5000, impact=impact)))
    return out


def test_a_huge_incident_reaches_a_receiver_that_refuses_big_bodies(sql: Engine) -> None:
    receiver = LimitedReceiver(limit=100_000)  # a probe's 204 KB body got 413 three times
    outbox = Outbox(sql, [receiver.hook()], FakeClock())
    for c in storm(lifecycle()):
        outbox(c)
    assert outbox.dispatch_due() == 5
    assert outbox.counts() == {SENT: 5}
    assert [b["change"] for b in receiver.accepted] == [
        *("opened", "priority_changed", "acknowledged", "mitigating", "resolved")
    ]
    assert {b["incident"]["affected_targets_total"] for b in receiver.accepted} == {5001}


def test_an_opened_refused_for_good_is_folded_into_the_next_message_delivered(sql: Engine) -> None:
    receiver = LimitedReceiver()
    outbox = Outbox(sql, [receiver.hook()], FakeClock())
    changes = lifecycle()
    receiver.refusing = True
    outbox(changes[0])
    outbox.dispatch_due()
    assert outbox.counts() == {FAILED: 1}
    receiver.refusing = False
    outbox(changes[1])
    outbox.dispatch_due()
    assert outbox.requeue_failed() == (0, 1)  # overtaken: it stays failed, by design
    [told] = receiver.accepted
    # The receiver never got "opened", so this one says it is the first, with the whole incident.
    assert (told["change"], told["first_for_receiver"]) == ("priority_changed", True)
    incident = told["incident"]
    assert (incident["id"], incident["priority"], incident["state"]) == ("inc-r07", "P1", "triggered")
    assert incident["title"] == changes[0].incident.title and incident["opened_at"]
    outbox(changes[2])
    outbox.dispatch_due()
    assert [b["first_for_receiver"] for b in receiver.accepted] == [True, False]


def test_priorities_choose_incidents_and_a_chosen_one_is_followed_to_its_end(sql: Engine) -> None:
    receiver = LimitedReceiver()
    outbox = Outbox(sql, [receiver.hook(priorities=["P1"])], FakeClock())
    changes = lifecycle()  # opened at P0, lowered to P1, acknowledged, mitigating, resolved
    changes[3].incident.priority = changes[4].incident.priority = changes[0].incident.priority  # P0 again
    for c in changes:
        outbox(c)
    outbox.dispatch_due()
    told = [(b["change"], b["incident"]["priority"], b["first_for_receiver"]) for b in receiver.accepted]
    assert told == [
        ("priority_changed", "P1", True),
        ("acknowledged", "P1", False),
        ("mitigating", "P0", False),
        ("resolved", "P0", False),
    ]
    assert outbox.stats.by_notifier_filtered == {"webhook:r": 1}
    assert len(outbox.messages()) == 4  # the one left out was never queued


def test_events_choose_the_changes_sent(sql: Engine) -> None:
    receiver = LimitedReceiver()
    outbox = Outbox(sql, [receiver.hook(events=["opened", "resolved"])], FakeClock())
    for c in lifecycle():
        outbox(c)
    outbox.dispatch_due()
    assert [(b["change"], b["first_for_receiver"]) for b in receiver.accepted] == [
        ("opened", True),
        ("resolved", False),
    ]


def test_a_receiver_is_told_which_alerts_of_an_incident_are_flapping(sql: Engine) -> None:
    # Slack's State named them ("triggered, flapping (GpuTemperatureHigh)"); the webhook body did not.
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0, flap_window_seconds=120, flap_start_transitions=4)
    engine = IncidentEngine(sql, clock, config)
    receiver = LimitedReceiver()
    outbox = Outbox(sql, [receiver.hook()], clock)
    engine.subscribe(outbox)
    hot = {"alertname": "GpuTemperatureHigh", "cluster": "c8", "node": "ff-n1", "gpu": "2"}
    steady = {**hot, "alertname": "GpuPowerHigh"}
    engine.ingest([Alert(hot), Alert(steady)])
    for status in (AlertStatus.RESOLVED, AlertStatus.FIRING) * 2:  # four transitions: flapping
        clock.advance(5)
        engine.ingest([Alert(hot, status=status)])
    [incident_id] = engine.open_incident_ids()
    engine.acknowledge(incident_id, by="alice")
    outbox.dispatch_due()
    first, *_, acked = receiver.accepted
    assert (first["incident"]["flapping"], first["incident"]["flapping_total"]) == ([], 0)
    assert acked["change"] == "acknowledged"
    assert (acked["incident"]["flapping"], acked["incident"]["flapping_total"]) == (["GpuTemperatureHigh"], 1)


def test_an_incident_resolved_while_silenced_still_closes_the_receivers_ticket(sql: Engine) -> None:
    # A receiver told "opened" heard nothing more once the incident was silenced: its resolution was
    # dropped like a page, and no silence end follows a resolved incident, so the ticket stayed open.
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=0))
    receiver = LimitedReceiver()
    outbox = Outbox(sql, [receiver.hook()], clock)
    engine.subscribe(outbox)
    lost = {"alertname": "GPULost", "cluster": "c8", "node": "ff-n1", "gpu": "2"}
    engine.ingest([Alert(lost)])
    [incident_id] = engine.open_incident_ids()
    outbox.dispatch_due()
    engine.silence_incident(incident_id, 3600, by="alice")
    engine.add_note(incident_id, by="bob", text="muted while we look")
    clock.advance(5)
    engine.ingest([Alert(lost, status=AlertStatus.RESOLVED)])
    engine.tick()
    outbox.dispatch_due()
    assert engine.store.get(incident_id).state.value == "resolved"
    told = [(b["change"], b["incident"]["state"]) for b in receiver.accepted]
    # The silence still holds back what is not the end (the note); the resolution goes, paging nobody.
    assert told == [("opened", "triggered"), ("resolved", "resolved")]
    # What the silence held back is counted as held, not as sent: the metric said 3 delivered for 2 POSTs.
    assert outbox.stats.by_notifier_sent == {"webhook:r": len(receiver.accepted)}
    assert outbox.stats.by_notifier_held.get("webhook:r", 0) >= 1


def test_the_flap_that_reopens_a_resolved_incident_reaches_a_receiver_as_reopened(sql: Engine) -> None:
    # The reopening a flap holds (no page in Slack) was told as "updated": a receiver choosing opened,
    # reopened and resolved never heard it, and kept its ticket closed while the incident was open.
    clock = FakeClock()
    config = AlertingConfig(
        announce_delay_seconds=0, quiet_period_seconds=0, flap_window_seconds=120, flap_start_transitions=6
    )
    engine = IncidentEngine(sql, clock, config)
    receiver = LimitedReceiver()
    outbox = Outbox(sql, [receiver.hook(events=["opened", "reopened", "resolved"])], clock)
    engine.subscribe(outbox)
    hot = {"alertname": "GpuTemperatureHigh", "cluster": "c8", "node": "ff-n1", "gpu": "2"}
    engine.ingest([Alert(hot)])
    for _ in range(3):  # R1 F2, R3 F4, R5 F6: the sixth transition makes it flapping
        clock.advance(8)
        engine.ingest([Alert(hot, status=AlertStatus.RESOLVED)])
        engine.tick()
        clock.advance(1)
        engine.ingest([Alert(hot)])
    outbox.dispatch_due()
    [incident_id] = engine.open_incident_ids()
    assert engine.store.get(incident_id).state.value == "triggered"
    told = [(b["change"], b["incident"]["state"]) for b in receiver.accepted]
    assert told == [("opened", "triggered"), *[("resolved", "resolved"), ("reopened", "triggered")] * 3]
    assert receiver.accepted[-1]["incident"]["flapping"] == ["GpuTemperatureHigh"]


def test_an_incident_reopened_within_its_silence_reopens_the_receivers_ticket_at_once(sql: Engine) -> None:
    # The receiver got "resolved" during the silence (so its ticket closed), but the reopening, by an alert
    # its root cause explains, was held back as a page and came at the silence's end as "updated": the
    # ticket stayed closed for the rest of the silence, and for good with a receiver choosing its events.
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=0))
    receiver = LimitedReceiver()
    outbox = Outbox(sql, [receiver.hook(events=["opened", "reopened", "resolved"])], clock)
    engine.subscribe(outbox)
    lost = {"alertname": "GPULost", "cluster": "c8", "node": "ff-n1", "gpu": "2"}
    engine.ingest([Alert(lost)])
    [incident_id] = engine.open_incident_ids()
    engine.silence_incident(incident_id, 3600, by="alice")
    clock.advance(5)
    engine.ingest([Alert(lost, status=AlertStatus.RESOLVED)])
    engine.tick()
    clock.advance(5)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c8", "node": "ff-n1"})])
    engine.tick()
    outbox.dispatch_due()
    assert engine.open_incident_ids() == [incident_id]
    told = [(b["change"], b["incident"]["state"]) for b in receiver.accepted]
    assert told == [("opened", "triggered"), ("resolved", "resolved"), ("reopened", "triggered")]
    # Still silenced: the body says until when, so a receiver that pages can hold its page.
    assert receiver.accepted[-1]["incident"]["silenced_until"] is not None
    assert receiver.accepted[0]["incident"]["silenced_until"] is None
