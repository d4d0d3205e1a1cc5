"""The ingest write path's cheap parts: fingerprints of repeats, new alerts as plain rows, batched writes.

Prometheus re-posts every firing alert at each evaluation, so most of what arrives is a repeat with
nothing changed; those cost a dict lookup here and one executemany ``UPDATE`` per transaction. New alerts
are plain objects during the transaction and go to the table in one executemany ``INSERT`` (SQLAlchemy
Core), instead of one ORM object each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, update
from sqlalchemy.orm import Session

from alerting.store_models import AlertRow
from gpuwarden.model import label_fingerprint

_ALERTS = cast(Table, AlertRow.__table__)


@dataclass(slots=True)
class PendingAlert:
    """A new alert during the transaction that stores it; the same attributes as ``AlertRow``."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    status: str
    starts_at: datetime
    ends_at: datetime | None
    source: str
    generator_url: str
    score: float | None
    recommended_action: str
    first_seen: datetime
    last_seen: datetime
    receive_count: int = 1
    incident_id: str | None = None
    muted_by: str | None = None
    flapping: bool = False
    transitions: list[float] = field(default_factory=list)


StoredAlert = AlertRow | PendingAlert
_PENDING_FIELDS = tuple(f.name for f in fields(PendingAlert))


def insert_pending(session: Session, alerts: Sequence[PendingAlert]) -> None:
    """Write new alerts in one executemany, after the ORM flushed the incidents they point to."""
    if alerts:
        session.flush()
        session.connection().execute(
            insert(_ALERTS), [{name: getattr(a, name) for name in _PENDING_FIELDS} for a in alerts]
        )


@dataclass(slots=True)
class Repeat:
    """An alert seen again with its status unchanged: only these columns move."""

    fingerprint: str
    ends_at: datetime | None
    annotations: dict[str, str]
    score: float | None


_REPEAT = (
    update(_ALERTS)
    .where(_ALERTS.c.fingerprint == bindparam("b_fingerprint"))
    .values(
        ends_at=bindparam("b_ends_at", type_=_ALERTS.c.ends_at.type),
        annotations=bindparam("b_annotations", type_=_ALERTS.c.annotations.type),
        score=func.coalesce(bindparam("b_score", type_=_ALERTS.c.score.type), _ALERTS.c.score),
        last_seen=bindparam("b_last_seen", type_=_ALERTS.c.last_seen.type),
        receive_count=_ALERTS.c.receive_count + 1,
    )
)


def update_repeats(session: Session, repeats: Sequence[Repeat], now: datetime) -> None:
    """Record repeats (endsAt, annotations, score, last seen, receive count) in one executemany."""
    if not repeats:
        return
    params: list[dict[str, Any]] = [
        {
            "b_fingerprint": r.fingerprint,
            "b_ends_at": r.ends_at,
            "b_annotations": r.annotations,
            "b_score": r.score,
            "b_last_seen": now,
        }
        for r in repeats
    ]
    session.connection().execute(_REPEAT, params)


class FingerprintCache:
    """Label set → Alertmanager fingerprint, so a repeated alert is not hashed byte by byte again.

    Bounded: past ``size`` entries it starts over (a cold entry costs one fingerprint, nothing else).
    """

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._known: dict[tuple[tuple[str, str], ...], str] = {}

    def fingerprint(self, labels: Mapping[str, str]) -> str:
        """The fingerprint of ``labels``."""
        key = tuple(sorted(labels.items()))
        fp = self._known.get(key)
        if fp is None:
            if len(self._known) >= self.size:
                self._known.clear()
            fp = self._known[key] = label_fingerprint(labels)
        return fp
