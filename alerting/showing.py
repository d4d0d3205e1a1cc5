"""Showing: what people and notifiers see of an incident's row, and the events that tell a change of it.

A change to what an incident shows (priority, title, root cause, impact: ``shown_of``) is stored; it is told
to listeners only when notifiers show it (``told_of``: Slack's message and the webhooks show neither the
figures behind the priority nor its peak). ``alerting.grouping`` tells a root cause that moved, once per
transaction (``tell_root_moved``), and any other change no event of the transaction tells, with an event of
its own (``tell_reassessed``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alerting.batch import Batch, ToldAs
from alerting.store_models import IncidentRow
from alerting.subscriptions import REASSESSED, ChangeKind


def shown_of(row: IncidentRow) -> tuple[object, ...]:
    """What people see of an incident: priority, title, root cause and impact (a change to none of them
    tells nobody)."""
    return (row.priority, row.title, row.root_kind, row.root_target, row.impact)


TOLD_IMPACT = ("summary", "parts", "gpus_affected", "nodes_affected", "workloads")
"""The parts of an incident's stored impact that Slack's message and the webhooks show."""


def told_of(row: IncidentRow) -> tuple[object, ...]:
    """What notifiers show of an incident's row, its title second: not the figures behind its priority
    (error ratio, burn rate, shares, the priority's reason, the peak), which neither Slack nor a webhook
    shows (a change of those alone is stored, and told to nobody)."""
    impact = row.impact or {}
    return (row.priority, row.title, row.root_kind, row.root_target, *(impact.get(k) for k in TOLD_IMPACT))


def tell_root_moved(
    batch: Batch,
    incident_id: str,
    message: str,
    data: dict[str, Any],
    shown: tuple[str, dict[str, Any], ToldAs],
) -> ToldAs | None:
    """Tell that the incident's root cause moved: once per transaction, the reply saying where it ended (a
    POST's alerts, grouped one by one, may move it several times). ``shown``: the root (kind, target) it
    showed before this move, with what it was told as then (``told_of`` and ``quiet_since``); one that
    ends where it was before the transaction (moved up by a merge, back by regrouping's moves) did not
    move: its event is taken back, and what it was told as before the move is returned (what the rest of
    the incident is weighed against: not what it showed halfway, never told)."""
    said = batch.root_said.get(incident_id)
    if said is None:
        event = batch.event(incident_id, "root_cause_changed", message, data, change=ChangeKind.UPDATED)
        batch.root_said[incident_id] = (event, shown)
        return None
    event, (kind, target, told) = said
    if data["kind"] == kind and same_target(target, data["target"]):
        batch.retract(event)
        del batch.root_said[incident_id]
        return told
    event.message, event.data = message, data
    return None


def tell_reassessed(batch: Batch, row: IncidentRow, title: str, recommended: Sequence[str]) -> None:
    """Tell a change of what an incident shows that no event of its transaction tells (an alert's repeat
    that changed what it recommends, an incident assessed again because another took replicas of its
    service, an inventory refresh), with an event of its own: told with the incident's last event, it had
    the idempotency key that event had when it was told as an update, the outbox took it for a repeat, and
    Slack and the webhooks kept what they showed. A new title is a ``retitled`` event (``title``: the one
    it had; Slack replies with it); anything else a ``reassessed`` one, which Slack shows by editing the
    incident's message alone, with no reply per change (``Notification.edit_only``)."""
    if row.title != title:
        data: dict[str, object] = {"from": title, "to": row.title}
        batch.event(row.id, "retitled", f"retitled: {row.title}", data, change=ChangeKind.UPDATED)
        return
    impact = str((row.impact or {}).get("summary") or "no capacity lost")
    advice = ", ".join(recommended) or "nothing"
    data = {"impact": impact, "recommended": list(recommended)}
    message = f"reassessed: impact {impact}; recommended: {advice}"
    batch.event(row.id, REASSESSED, message, data, change=ChangeKind.UPDATED)


def same_target(stored: Mapping[str, object] | None, new: Mapping[str, object]) -> bool:
    """Whether a stored root target is ``new``; one stored before workloads had clusters lacks the cluster
    (and is the same workload, not a root cause that changed)."""
    if stored is None:
        return False
    if stored.get("type") == "workload" and "cluster" not in stored:
        return dict(stored) == {k: v for k, v in new.items() if k != "cluster"}
    return dict(stored) == dict(new)
