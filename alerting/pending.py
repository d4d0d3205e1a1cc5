"""The ingest write path's cheap parts: fingerprints of repeats, new alerts as plain rows, batched writes.

Prometheus re-posts every firing alert at each evaluation, so most of what arrives is a repeat with
nothing changed; those cost a dict lookup here and one executemany ``UPDATE`` per transaction. New alerts
are plain objects during the transaction and go to the table in one executemany ``INSERT`` (SQLAlchemy
Core), instead of one ORM object each.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import Table, and_, bindparam, case, false, func, insert, update
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
    ends_by_timeout: bool = False


StoredAlert = AlertRow | PendingAlert
_PENDING_FIELDS = tuple(f.name for f in fields(PendingAlert))
_PENDING_VALUES = operator.attrgetter(*_PENDING_FIELDS)  # in C: a getattr per field per alert was 3x slower


def insert_pending(session: Session, alerts: Sequence[PendingAlert]) -> None:
    """Write new alerts in one executemany, after the ORM flushed the incidents they point to."""
    if alerts:
        session.flush()
        session.connection().execute(
            insert(_ALERTS), [dict(zip(_PENDING_FIELDS, _PENDING_VALUES(a), strict=True)) for a in alerts]
        )


@dataclass(slots=True)
class Repeat:
    """An alert seen again with its status unchanged: only these columns move."""

    fingerprint: str
    ends_at: datetime | None
    annotations: dict[str, str]
    score: float | None
    generator_url: str
    timeout: bool  # its endsAt is a resolve timeout (``Alert.timeout``), as the newer post's mark stays


_ENDS = bindparam("b_ends_at", type_=_ALERTS.c.ends_at.type)
_REPEAT = (
    update(_ALERTS)
    .where(_ALERTS.c.fingerprint == bindparam("b_fingerprint"))
    .values(
        # ``spans.merged_ends`` in SQL (a repeat keeps its status): the later endsAt of an overlap stays,
        # unless the stored one is a resolve timeout.
        ends_at=case(
            (
                and_(
                    _ALERTS.c.ends_by_timeout.is_(false()),
                    _ENDS.is_not(None),
                    _ALERTS.c.ends_at.is_not(None),
                    _ALERTS.c.starts_at < _ENDS,
                    _ALERTS.c.ends_at > _ENDS,
                ),
                _ALERTS.c.ends_at,
            ),
            else_=_ENDS,
        ),
        annotations=bindparam("b_annotations", type_=_ALERTS.c.annotations.type),
        generator_url=bindparam("b_generator_url", type_=_ALERTS.c.generator_url.type),
        score=func.coalesce(bindparam("b_score", type_=_ALERTS.c.score.type), _ALERTS.c.score),
        last_seen=bindparam("b_last_seen", type_=_ALERTS.c.last_seen.type),
        receive_count=_ALERTS.c.receive_count + 1,
        ends_by_timeout=bindparam("b_timeout", type_=_ALERTS.c.ends_by_timeout.type),
    )
)


def update_repeats(session: Session, repeats: Sequence[Repeat], now: datetime) -> None:
    """Record repeats (endsAt as ``spans.merged_ends``, annotations, generatorURL, score, last seen, receive
    count, whether the end is a resolve timeout) in one executemany."""
    if not repeats:
        return
    params: list[dict[str, Any]] = [
        {
            "b_fingerprint": r.fingerprint,
            "b_ends_at": r.ends_at,
            "b_annotations": r.annotations,
            "b_generator_url": r.generator_url,
            "b_score": r.score,
            "b_last_seen": now,
            "b_timeout": r.timeout,
        }
        for r in repeats
    ]
    session.connection().execute(_REPEAT, params)


_FNV64_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV64_PRIME = np.uint64(0x100000001B3)
_VECTOR_FROM = 32  # fewer label sets than this: hashing them one by one is cheaper than numpy's set-up


def _fingerprint_bytes(labels: Mapping[str, str]) -> bytes:
    """What Alertmanager hashes: each name and value in name order, each followed by 0xFF."""
    parts: list[bytes] = []
    for name in sorted(labels):
        parts += (name.encode(), labels[name].encode())
    return b"\xff".join(parts) + b"\xff" if parts else b""


def fingerprints(label_sets: Sequence[Mapping[str, str]]) -> list[str]:
    """``label_fingerprint`` of many label sets at once: FNV-1a 64 run over all of them together.

    Byte ``j`` of every label set long enough is hashed in one numpy step (sets sorted longest first, so
    those still going are a prefix), instead of a Python loop per byte per alert: new alerts arrive by
    thousands in a storm, and hashing them byte by byte was a tenth of the applier's time.
    """
    if len(label_sets) < _VECTOR_FROM:
        return [label_fingerprint(labels) for labels in label_sets]
    data = [_fingerprint_bytes(labels) for labels in label_sets]
    lengths = np.fromiter((len(d) for d in data), dtype=np.int64, count=len(data))
    order = np.argsort(-lengths, kind="stable")
    lengths = lengths[order]
    width = int(lengths[0]) if len(lengths) else 0
    table = np.zeros((len(data), width), dtype=np.uint8)
    table[np.arange(width) < lengths[:, None]] = np.frombuffer(b"".join(data[i] for i in order), np.uint8)
    still = np.searchsorted(-lengths, -np.arange(width), side="left")  # sets longer than j, per j
    h = np.full(len(data), _FNV64_OFFSET, dtype=np.uint64)
    for j in range(width):
        k = int(still[j])
        h[:k] = (h[:k] ^ table[:k, j]) * _FNV64_PRIME
    out = [""] * len(data)
    for position, value in zip(order.tolist(), h.tolist(), strict=True):
        out[position] = f"{value:016x}"
    return out


class FingerprintCache:
    """Label set → Alertmanager fingerprint, so a repeated alert is not hashed byte by byte again.

    Bounded: past ``size`` entries it starts over (a cold entry costs one fingerprint, nothing else).
    """

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._known: dict[tuple[tuple[str, str], ...], str] = {}

    def fingerprint(self, labels: Mapping[str, str]) -> str:
        """The fingerprint of ``labels``."""
        return self.fingerprint_all([labels])[0]

    def fingerprint_all(self, label_sets: Sequence[Mapping[str, str]]) -> list[str]:
        """The fingerprints of many label sets; those not cached are hashed together."""
        keys = [tuple(sorted(labels.items())) for labels in label_sets]
        known = self._known
        missing = {key: labels for key, labels in zip(keys, label_sets, strict=True) if key not in known}
        if not missing:
            return [known[key] for key in keys]
        fresh = dict(zip(missing, fingerprints(list(missing.values())), strict=True))
        out = [fresh.get(key) or known[key] for key in keys]
        if len(known) + len(fresh) > self.size:
            known.clear()
        known.update(fresh)
        return out
