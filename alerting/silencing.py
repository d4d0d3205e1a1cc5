"""Silences and maintenance windows that people add, update, expire and list (Alertmanager's silence API and
``gpuwarden silences``), kept in the store and in memory.

``SilenceKeeping`` is the part of ``IncidentEngine`` that does it, under the engine's lock; the muting of
alerts by them is ``alerting.muting``'s.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.engine_lock import EngineLock
from alerting.matchers import Matcher
from alerting.silences import Silence, SilenceKind
from alerting.store import SilenceNotFound, silence_from_row
from alerting.store_models import SilenceRow
from gpuwarden.clock import Clock
from gpuwarden.errors import InputError


class SilenceKeeping:
    """Stored silences and maintenance windows; mixed into ``IncidentEngine`` (through
    ``IncidentLifecycle``), whose state it uses."""

    clock: Clock
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)
    _sessions: sessionmaker[Session]
    _silences: list[Silence]

    def add_silence(
        self,
        matchers: Sequence[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        *,
        comment: str = "",
        kind: SilenceKind | None = None,
        incident_id: str | None = None,
        update: str | None = None,
    ) -> str:
        """Store a silence or maintenance window; returns its id.

        With ``update``, the id of a stored silence, it is Alertmanager's update (``Silences.Set``): in place,
        keeping the id, when ``_updatable``; otherwise the old one expires and a new one, with a new id, takes
        over in the same transaction. A refused request (a bad time range, an unknown id) changes nothing.
        ``kind`` None: a silence, or on an update the kind of the one it updates (amtool and Grafana post
        back what they read, which does not say it is a maintenance window).
        """
        if ends_at <= starts_at:
            raise InputError("must be after startsAt", field="endsAt")
        if not matchers and incident_id is None:
            raise InputError("at least one matcher is required", field="matchers")
        with self._lock:
            now = self.clock.now()
            if ends_at <= now:  # as in Alertmanager: it would never mute anything
                raise InputError("can't be in the past", field="endsAt")
            expired = None
            with self._sessions() as session, session.begin():
                old = None if update is None else self._silence_row(session, update)
                if kind is None:
                    kind = SilenceKind(old.kind) if old is not None else SilenceKind.SILENCE
                silence = Silence(
                    f"sil-{uuid.uuid4().hex[:12]}",
                    tuple(matchers),
                    starts_at,
                    ends_at,
                    created_by,
                    comment,
                    kind,
                    incident_id,
                    updated_at=now,
                )
                if old is not None and _updatable(silence_from_row(old), silence, now):
                    silence = replace(silence, id=old.id)
                else:
                    if old is not None:
                        expire_row(old, now)
                        expired = silence_from_row(old)
                    # A new silence (or one taking over) starts now at the earliest, as Alertmanager's
                    # ``Silences.Set`` moves it: it mutes from when it was set, not before.
                    silence = replace(silence, starts_at=max(starts_at, now))
                last = session.scalar(select(func.max(SilenceRow.seq)))
                session.merge(  # the row of an update in place, or a new one
                    SilenceRow(
                        id=silence.id,
                        kind=kind.value,
                        matchers=[m.to_dict() for m in matchers],
                        starts_at=silence.starts_at,
                        ends_at=ends_at,
                        created_by=created_by,
                        comment=comment,
                        incident_id=incident_id,
                        seq=(last or 0) + 1,  # last in ``_silences`` too (see ``stored_silences``)
                        updated_at=now,
                    )
                )
            if expired is not None:
                self._silences = [expired if s.id == expired.id else s for s in self._silences]
            self._silences = [*(s for s in self._silences if s.id != silence.id), silence]
        return silence.id

    def silences(self) -> list[Silence]:
        """Silences and maintenance windows that are not yet expired."""
        now = self.clock.now()
        with self._lock:
            return [s for s in self._silences if s.state(now) != "expired"]

    def silenced_until(self) -> dict[str, datetime]:
        """When the active silences of each silenced incident end (the last of them), without the engine's
        lock (``incident_silences``)."""
        return {i: held[-1].ends_at for i, held in self.incident_silences().items()}

    def incident_silences(self) -> dict[str, list[Silence]]:
        """The active silences of each silenced incident, the one ending last last: its end is the
        incident's ``silenced_until``, and expiring each (``DELETE /api/v2/silence/{id}``) lifts its silence
        early.

        Without the engine's lock: a change replaces the list, never edits it, so the one read here is
        whole. The API's reads call this, and the applier holds the lock for a whole transaction (minutes
        for one record of 100,000 alerts), past the 10 s that reads promise to wait.
        """
        now = self.clock.now()
        held: dict[str, list[Silence]] = {}
        for s in self._silences:
            if s.incident_id is not None and s.state(now) == "active":
                held.setdefault(s.incident_id, []).append(s)
        return {i: sorted(ss, key=lambda s: s.ends_at) for i, ss in held.items()}

    def all_silences(self) -> list[Silence]:
        """Every stored silence, expired ones too until retention deletes them, and the config's windows."""
        with self._lock, self._sessions() as session:
            stored = [
                silence_from_row(r) for r in session.scalars(select(SilenceRow).order_by(SilenceRow.ends_at))
            ]
            configured = [s for s in self._silences if s.configured]
        return configured + stored

    def silence(self, silence_id: str) -> Silence:
        """One silence or window by id."""
        found = next((s for s in self.all_silences() if s.id == silence_id), None)
        if found is None:
            raise SilenceNotFound(silence_id)
        return found

    def expire_silence(self, silence_id: str) -> Silence:
        """End a silence now (Alertmanager's ``DELETE /api/v2/silence/{id}``).

        What it muted is released at the next tick. Expiring an expired silence changes nothing; a window of
        the configuration file is refused.
        """
        now = self.clock.now()
        with self._lock:
            with self._sessions() as session, session.begin():
                row = self._silence_row(session, silence_id)
                expire_row(row, now)
                expired = silence_from_row(row)
            self._silences = [expired if s.id == silence_id else s for s in self._silences]
        return expired

    def _silence_row(self, session: Session, silence_id: str) -> SilenceRow:
        """The stored silence; a window of the configuration file is refused, another id is not found."""
        row = session.get(SilenceRow, silence_id)
        if row is None:
            if any(s.id == silence_id and s.configured for s in self._silences):
                raise InputError(
                    "a maintenance window of the configuration file: edit it there", field="silenceID"
                )
            raise SilenceNotFound(silence_id)
        return row


def stored_silences(session: Session, now: datetime) -> list[Silence]:
    """The stored silences not ended at ``now``, in the order they were set in, as the engine holds them
    (``SilenceKeeping.add_silence`` puts a new or updated one last): of those that match an alert, the first
    mutes it. Those stored before that order was (migration 0012) come first."""
    rows = session.scalars(select(SilenceRow).where(SilenceRow.ends_at > now)).all()
    return [silence_from_row(r) for r in sorted(rows, key=lambda r: (r.seq is not None, r.seq or 0))]


def _updatable(old: Silence, new: Silence, now: datetime) -> bool:
    """Alertmanager's ``canUpdate``: whether ``old`` can become ``new`` without rewriting what it muted.

    The matchers (and the kind) stay; an active silence keeps its start (to the second, as Alertmanager
    compares) and does not end in the past; a pending one does not start in the past; an expired one never.
    """
    if (old.matchers, old.kind, old.incident_id) != (new.matchers, new.kind, new.incident_id):
        return False
    state = old.state(now)
    if state == "active":
        return int(new.starts_at.timestamp()) == int(old.starts_at.timestamp()) and new.ends_at >= now
    if state == "pending":
        return new.starts_at >= now
    return False


def expire_row(row: SilenceRow, now: datetime) -> None:
    """End a stored silence now; an ended one stays as it is."""
    if row.ends_at > now:
        row.starts_at = min(row.starts_at, now)
        row.ends_at = now
        row.updated_at = now
