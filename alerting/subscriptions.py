"""Seams between the incident engine and what reacts to it (notifiers, the outbox, Slack buttons)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from alerting.flapping import Folded
from gpuwarden.model import Incident, TimelineEvent

if TYPE_CHECKING:
    from alerting.outcomes import ActionOutcome


class ChangeKind(enum.StrEnum):
    """What happened to an incident."""

    OPENED = "opened"
    UPDATED = "updated"
    PRIORITY_CHANGED = "priority_changed"
    ACKNOWLEDGED = "acknowledged"
    MITIGATING = "mitigating"
    RESOLVED = "resolved"
    REOPENED = "reopened"


REASSESSED = "reassessed"
"""The timeline event of a change of what an incident shows that no other event tells (what its alerts
recommend, its impact): told as an update that edits what shows the incident, with no reply or page."""


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """One change of one incident, with the incident as it is after the change."""

    kind: ChangeKind
    incident: Incident
    event: TimelineEvent
    recommended: tuple[str, ...] = ()  # the recommended actions of its firing alerts
    # When the incident's silence ends, if one was in force when the change was told: notifiers page
    # nobody for it (Alertmanager's silenced alert notifies nobody); None when the incident is not silenced.
    silenced_until: datetime | None = None
    flapping: tuple[str, ...] = ()  # its flapping alerts' names: held open, without a page per flap
    # The end of an incident never announced here (merged or resolved before its announcement): a listener
    # passes it on only where the incident was told before (by a process that crashed before forgetting
    # it), so whoever heard "opened" hears the end, and nobody else hears of it.
    only_if_told: bool = False
    # The cluster people are told its root cause is in (``titles.root_cluster``): only in a fleet of more
    # than one cluster, where ``rack r07`` may be either's; empty otherwise.
    root_cluster: str = ""
    # How many earlier events of its incident's timeline are alike in time, kind and message (a note said
    # twice at one instant; a root cause that went A, B, A, B in one batch): each is a change a receiver
    # must hear, so its idempotency key tells it apart from them. 0 for nearly every change.
    repeat: int = 0
    # Decided by the transaction that made the change and stored with it (``alerting.handoff.Telling``), so
    # told alike after a restart. ``merging``: that transaction also merged the incident into another (a
    # rack's outage raised it to P0 and the rack's incident took it in): told, as it was, but it pages
    # nobody; the incident that goes on carries the fault and pages for it.
    merging: bool = False
    # What that transaction did to the incident that no change tells of its own (an alert that joined as
    # the root cause moved, an incident taken in as the priority rose), said with its first update.
    also: tuple[str, ...] = ()
    # A repeat of the incident's cycle (quiet again, the same alert firing again, nothing else between):
    # told by editing what shows the incident, with how often it cycled, never as a new reply or page.
    folded: Folded | None = None


class IncidentListener(Protocol):
    """Called by the engine after a change has been committed to the store."""

    def __call__(self, change: IncidentChange) -> datetime | None:
        """React to one committed change. What it raises makes the engine tell the change again later (to
        every listener: they dedupe by the event's idempotency key); ingest is never broken by it. A change
        marked ``only_if_told`` is passed on only where the listener told of the incident before. Returns
        when it took this very change before, if it had it already (the outbox: told again after a crash),
        which the engine stores as an opening's announcement; else None."""
        ...


class IncidentActions(Protocol):
    """What a person can do to an incident from Slack or the API."""

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        """Mark the incident acknowledged."""
        ...

    def approve_remediation(self, incident_id: str, by: str) -> Incident:
        """Record a person's approval for the pending remediation of the incident."""
        ...

    def acknowledge_outcome(self, incident_id: str, by: str) -> ActionOutcome:
        """``acknowledge``, saying why nothing changed when it was a repeat."""
        ...

    def approve_remediation_outcome(
        self, incident_id: str, by: str, root: str | None = None
    ) -> ActionOutcome:
        """``approve_remediation``, saying why nothing changed when it was a repeat; ``root``: the root cause
        the person was shown (``model.root_key``), refused when the incident's has changed since."""
        ...

    def silence_incident(self, incident_id: str, duration_seconds: float, by: str) -> Incident:
        """Silence the incident's alerts for a while."""
        ...

    def silence_incident_outcome(self, incident_id: str, duration_seconds: float, by: str) -> ActionOutcome:
        """``silence_incident``, saying whose silence holds when it was a repeat."""
        ...
