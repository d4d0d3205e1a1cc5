"""Telling listeners (the Slack outbox, webhooks) what changed, after each commit.

``IncidentAnnouncing`` (mixed into the engine) holds a new incident back for the announce delay, as
Alertmanager's group_wait does: one merged or resolved before then is never announced, and what changes
meanwhile folds into its announcement. After a restart, incidents a previous process may have announced are
announced again first; listeners such as the outbox dedupe them by the event's idempotency key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from alerting.batch import OpenIncident
from alerting.silences import Silence, incident_silenced_until
from alerting.store import IncidentStore
from alerting.store_models import TimelineRow
from alerting.subscriptions import ChangeKind, IncidentChange, IncidentListener
from gpuwarden.clock import Clock
from gpuwarden.model import Incident, IncidentState, RecommendedAction

logger = logging.getLogger(__name__)
# Recommended actions, the most drastic first: the order a person reads them in.
_URGENCY = tuple(
    a.value
    for a in (
        RecommendedAction.RESTART_NODE,
        RecommendedAction.DRAIN_AND_RESET,
        RecommendedAction.RESET_GPU,
        RecommendedAction.CORDON_AND_DRAIN,
        RecommendedAction.RESTART_APP,
        RecommendedAction.SCALE_OUT,
        RecommendedAction.CONTACT_SUPPORT,
        RecommendedAction.INVESTIGATE,
    )
)


class IncidentAnnouncing:
    """The engine's listeners and held announcements; see the module docstring."""

    clock: Clock
    store: IncidentStore
    counters: dict[str, int]
    _lock: threading.RLock
    _listeners: list[IncidentListener]
    _open: dict[str, OpenIncident]
    _silences: list[Silence]
    _hold: timedelta
    _unannounced: dict[str, datetime]  # held incidents: when they opened
    _announced: set[str]  # open incidents this process has announced
    _reannounce: set[str]  # held at start, announced by an earlier process maybe: announced again

    # --- subscriptions --------------------------------------------------------------------------

    def subscribe(self, listener: IncidentListener) -> None:
        """Call ``listener`` after each committed change."""
        with self._lock:
            self._listeners.append(listener)

    def _notify(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        """Tell listeners, holding back new incidents for the announce delay (like Alertmanager's group_wait).

        An incident merged or resolved before its announcement is never announced; changes of a held
        incident fold into its announcement.
        """
        out: list[tuple[str, ChangeKind, TimelineRow]] = []
        for incident_id, kind, event in changes:
            if kind is ChangeKind.OPENED and self._hold > timedelta(0):
                self._unannounced[incident_id] = event.at
            elif incident_id in self._unannounced and incident_id not in self._reannounce:
                if kind is ChangeKind.RESOLVED:
                    del self._unannounced[incident_id]
            else:
                if incident_id in self._reannounce:
                    # Announced by the process before this one, maybe not (it stopped during the hold):
                    # announced again first (the outbox dedupes it), then the change.
                    self._emit(out)
                    out = []
                    self._announce(incident_id, event.at)
                if kind is ChangeKind.RESOLVED:
                    self._unannounced.pop(incident_id, None)
                if kind in (ChangeKind.OPENED, ChangeKind.REOPENED):  # a reopened one was announced
                    self._announced.add(incident_id)
                elif kind is ChangeKind.RESOLVED:
                    self._announced.discard(incident_id)
                out.append((incident_id, kind, event))
        self._emit(out)

    def _emit(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        if not self._listeners or not changes:
            return
        cache: dict[str, Incident] = {}
        now = self.clock.now()
        for incident_id, kind, event in changes:
            if incident_id not in cache:
                cache[incident_id] = self.store.get(incident_id)
            incident = cache[incident_id]
            match = next((e for e in incident.timeline if e.at == event.at and e.kind == event.kind), None)
            change = IncidentChange(
                kind,
                incident,
                match or incident.timeline[-1],
                self._recommended(incident_id),
                incident_silenced_until(self._silences, incident_id, now),
            )
            self._call_listeners(change)

    def _recommended(self, incident_id: str) -> tuple[str, ...]:
        """What the incident's firing alerts recommend, the most drastic first ("ignore" is no advice)."""
        inc = self._open.get(incident_id)
        if inc is None:
            return ()
        actions = {m.recommended_action for m in inc.members.values() if m.firing} - {
            RecommendedAction.NONE.value,
            RecommendedAction.IGNORE.value,
        }
        return tuple(
            sorted(actions, key=lambda a: (_URGENCY.index(a) if a in _URGENCY else len(_URGENCY), a))
        )

    def _call_listeners(self, change: IncidentChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # loop boundary: a listener must never break ingest
                self.counters["listener_errors"] += 1
                logger.exception("incident listener failed", extra={"incident_id": change.incident.id})

    def _announce_due(self, now: datetime) -> None:
        """Announce held incidents whose delay has passed, as they are now."""
        due = [i for i, at in self._unannounced.items() if now - at >= self._hold]
        for incident_id in due:
            self._announce(incident_id, now)

    def _announce(self, incident_id: str, now: datetime) -> None:
        """Tell listeners a held incident opened, as it is now (unless it resolved meanwhile)."""
        del self._unannounced[incident_id]
        self._reannounce.discard(incident_id)
        self._announced.add(incident_id)
        if not self._listeners:
            return
        incident = self.store.get(incident_id)
        if incident.state is IncidentState.RESOLVED:
            return
        opened = next((e for e in incident.timeline if e.kind == "opened"), incident.timeline[0])
        silenced_until = incident_silenced_until(self._silences, incident_id, now)
        self._call_listeners(
            IncidentChange(
                ChangeKind.OPENED, incident, opened, self._recommended(incident_id), silenced_until
            )
        )
