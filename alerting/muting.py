"""Muting: which firing alerts a silence, maintenance window or inhibition holds back, and their release.

Alertmanager notifies a muted alert once what muted it ends. ``MuteTracking`` (mixed into the engine) keeps
the muted firing alerts in memory; each tick frees those no longer muted and sends them through ingest again,
past the repeat fast path, so they join or open an incident as if they had just fired.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.batch import IngestResult
from alerting.inhibition import Inhibitor
from alerting.pending import StoredAlert
from alerting.silences import Silence, muting_silence
from alerting.store import alert_from_row
from alerting.store_models import AlertRow
from gpuwarden.clock import Clock
from gpuwarden.model import Alert, AlertStatus


class MuteTracking:
    """The engine's muted firing alerts; see the module docstring."""

    clock: Clock
    _lock: threading.RLock
    _sessions: sessionmaker[Session]
    _silences: list[Silence]
    _inhibitor: Inhibitor
    # fingerprint -> (labels, incident id) of each firing alert that is muted
    _muted: dict[str, tuple[dict[str, str], str | None]]
    _recheck: set[str]  # fingerprints whose next repeat takes the slow path

    def ingest(self, alerts: Sequence[Alert]) -> IngestResult:
        raise NotImplementedError  # the engine's

    def muted_count(self) -> int:
        """How many firing alerts a silence, maintenance window or inhibition holds back now."""
        with self._lock:
            return len(self._muted)

    def mute_state(
        self, fingerprint: str, labels: dict[str, str], incident_id: str | None = None
    ) -> tuple[list[str], list[str]]:
        """What mutes an alert now: the ids of the silences (and windows), and the inhibition rules."""
        now = self.clock.now()
        with self._lock:
            silenced = [s.id for s in self._silences if s.mutes(labels, now, incident_id)]
            rule = self._inhibitor.inhibited_by(fingerprint, labels)
        return silenced, [] if rule is None else [rule or "inhibit_rule"]

    def _mute_reason(self, row: StoredAlert, now: datetime) -> str | None:
        return self._muted_by(row.fingerprint, row.labels, row.incident_id, now)

    def _muted_by(
        self, fingerprint: str, labels: dict[str, str], incident_id: str | None, now: datetime
    ) -> str | None:
        silence = muting_silence(self._silences, labels, now, incident_id)
        if silence is not None:
            return f"{silence.kind.value}:{silence.id}"
        rule = self._inhibitor.inhibited_by(fingerprint, labels)
        return f"inhibited:{rule}" if rule is not None else None

    def _release_unmuted(self, now: datetime) -> None:
        """Muted firing alerts whose silence or window ended, or whose inhibiting alert resolved, go on
        as if they had just fired (Alertmanager notifies them then): correlated into an incident."""
        freed = [
            fp for fp, (labels, inc) in self._muted.items() if self._muted_by(fp, labels, inc, now) is None
        ]
        if not freed:
            return
        with self._sessions() as session:
            rows = session.scalars(select(AlertRow).where(AlertRow.fingerprint.in_(freed))).all()
            alerts = [
                alert_from_row(r, AlertStatus.FIRING) for r in rows if r.status == AlertStatus.FIRING.value
            ]
        self._recheck.update(freed)
        self.ingest(alerts)
