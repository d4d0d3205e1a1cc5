"""The engine's session: incidents opened in a transaction are found by ``get`` before they are flushed.

Ingest runs without autoflush, and every incident it opens was flushed at once so that ``session.get``
(root cause and impact, merges, silences: a dozen sites) would find it: an ORM flush of its own, then an
``UPDATE`` of the title and impact its first assessment gives it, in every transaction that opened one
(Prometheus' small POST of one new fault: two flushes where one does; benchmarks/README.md, "Single
ingest"). ``get`` now answers from the rows the transaction opened, the very objects the flush would
have put in the identity map, and the transaction's next flush inserts them whole, before the alerts and
timeline rows that point to them: the unit of work orders tables by relationships (``AlertRow.incident``,
declared for that alone), otherwise by class name (IncidentRow before TimelineRow; a relationship there
cost every flush that writes timeline rows more than it saved).

What a flush would have changed for anything else in the transaction: SQL that reads the ``incidents``
table itself. Ingest reads it (the recurrence of resolved incidents, a silence's announcement time) only
where an incident opened in that transaction is not asked for or reads as not there and as unannounced
alike, and flushes before its one ``UPDATE`` of it (a merge's ``merged_into``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from alerting.store_models import IncidentRow

_OPENED = "gpuwarden.opened_incidents"  # Session.info key: id -> the row of an incident opened, not flushed


class IngestSession(Session):
    """A ``Session`` whose ``get`` of an incident this transaction opened returns its row unflushed."""

    def get(self, entity: Any, ident: Any, **options: Any) -> Any:
        """``Session.get``; a plain get of an incident row added by ``add_opened`` is that row."""
        if entity is IncidentRow and not options:
            opened: dict[object, IncidentRow] | None = self.info.get(_OPENED)
            if opened is not None and ident in opened:
                return opened[ident]
        return super().get(entity, ident, **options)


def add_opened(session: Session, row: IncidentRow) -> None:
    """Add the row of an incident just opened; flushed at once unless ``session`` is an ``IngestSession``,
    whose ``get`` finds it (and whose next flush inserts it)."""
    session.add(row)
    if isinstance(session, IngestSession):
        session.info.setdefault(_OPENED, {})[row.id] = row
    else:
        session.flush()


@event.listens_for(IngestSession, "after_transaction_end")
def _forget_opened(session: Session, transaction: SessionTransaction) -> None:
    """At the end of the transaction the rows were opened in: flushed and stored, or rolled back and gone."""
    if transaction.parent is None:
        session.info.pop(_OPENED, None)
