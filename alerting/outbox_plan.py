"""Which incident's messages the outbox sends next: ``plan`` orders the (notifier, incident) groups with
waiting messages, ``overtaken`` says whether one stored since goes before the next group.

Incidents are served most urgent first (the most urgent priority among their waiting messages), then oldest
first: after an outage, a new P0's page goes before a backlog of P3 updates. For a notifier that threads
an incident's timeline under its first message (``ThreadOpeningNotifier``: Slack), every incident whose
message is not posted yet comes before all of that: it is *opened* first (``OutboxDelivery._open_group``
posts only that message), most urgent first, and the rest of its messages go in their turn after. On a
rate-limited channel (Slack: one post a second) the 200th incident of a storm was paged after the 599
posts of the 199 before it (their "opened" replies, their acknowledgements), at 596 s; it is paged after
200 posts. Each incident's messages still go in order.

When a message goes: ``Backoff`` after a failure; an edit held for a later one (``waited_on``,
``stands_in``: ``OutboxDelivery._superseded``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from alerting.notifiers.base import Notification
from alerting.outbox_tables import WAITING, NotificationThread, OutboxMessage

URGENCY_UNKNOWN = 4
"""Where a message stored without a priority (before revision 0013) comes: after P3."""


def urgency(priority: str | None) -> int:
    """0 for P0 (the most urgent) to 3 for P3; ``URGENCY_UNKNOWN`` for none or one not known."""
    if priority is not None and len(priority) == 2 and priority[0] == "P" and priority[1] in "0123":
        return int(priority[1])
    return URGENCY_UNKNOWN


class Group(NamedTuple):
    """One incident's waiting messages for one notifier, where they come in the plan."""

    notifier: str
    incident_id: str
    urgency: int
    opens: bool  # its first message (the thread's top) is to be posted alone, before the others (``plan``)

    @property
    def rank(self) -> tuple[int, int]:
        """What orders the groups: the most urgent first, and of one priority the ones to open before the
        others (a new P3 waits behind a P0's update; a new P0 never waits behind a P3's)."""
        return self.urgency, 0 if self.opens else 1


def _waiting(notifier: str | None) -> Select[str, str, str | None, int, str | None]:
    """The waiting messages, with their incident's thread's ``ts`` for their notifier (None: none yet)."""
    query = (
        select(
            OutboxMessage.notifier,
            OutboxMessage.incident_id,
            OutboxMessage.priority,
            OutboxMessage.id,
            NotificationThread.ts,
        )
        .outerjoin(
            NotificationThread,
            and_(
                NotificationThread.notifier == OutboxMessage.notifier,
                NotificationThread.incident_id == OutboxMessage.incident_id,
            ),
        )
        .where(OutboxMessage.status.in_(WAITING))
    )
    if notifier is not None:
        query = query.where(OutboxMessage.notifier == notifier)
    return query


def _groups(
    rows: Collection[tuple[str, str, str | None, int, str | None]],
    openers: Collection[str],
    opened: Collection[tuple[str, str]],
) -> list[Group]:
    """The groups of ``rows`` (by id: the oldest message's place kept among equals), in the plan's order.
    ``openers``: the notifiers that open threads; ``opened``: groups tried so already (not again)."""
    urgent: dict[tuple[str, str], int] = {}
    opens: dict[tuple[str, str], bool] = {}
    for name, incident_id, priority, _, ts in rows:  # dicts keep the first (oldest) message's place
        key = (name, incident_id)
        urgent[key] = min(urgent.get(key, URGENCY_UNKNOWN), urgency(priority))
        opens[key] = ts is None and name in openers and key not in opened
    groups = [Group(*key, urgent[key], opens[key]) for key in urgent]
    return sorted(groups, key=lambda group: group.rank)  # stable: oldest first among equals


def plan(
    session: Session, notifier: str | None, openers: Collection[str], opened: Collection[tuple[str, str]]
) -> tuple[list[Group], int]:
    """The groups with waiting messages (of one notifier, or of all) in the order they go, and the newest
    waiting message's id (``overtaken``'s mark)."""
    rows = [tuple(row) for row in session.execute(_waiting(notifier).order_by(OutboxMessage.id))]
    return _groups(rows, openers, opened), (int(rows[-1][3]) if rows else 0)  # type: ignore[arg-type]


def overtaken(
    session: Session,
    notifier: str | None,
    newest: int,
    upcoming: Group,
    *,
    openers: Collection[str],
    opened: Collection[tuple[str, str]],
) -> bool:
    """Whether a message stored since the plan (id past ``newest``) goes before group ``upcoming``: the first
    of an incident to open while ``upcoming`` is none, or one more urgent of the same kind."""
    later = [tuple(row) for row in session.execute(_waiting(notifier).where(OutboxMessage.id > newest))]
    return any(group.rank < upcoming.rank for group in _groups(later, openers, opened))  # type: ignore[arg-type]


def stands_in(later: Notification, edit: Notification) -> bool:
    """Whether ``later`` shows what ``edit`` would: not when a silence holds it and held nothing of the
    edit (a webhook posts nothing for a silenced incident; the receiver would keep the edit's old figures
    until the silence ends)."""
    return later.silenced_until is None or edit.silenced_until is not None


def waited_on(edit: Notification, rows: Sequence[OutboxMessage]) -> bool:
    """Whether ``edit``, held for a later one (``Outbox._edit_due``) and not set aside for the message after
    it (``rows[1]``), goes now: that message is no edit, so it goes at once, and it waits behind the edit (a
    change told under a silence that came after the edit, a resolution behind it: not held 5 minutes)."""
    if not edit.edit_only or len(rows) < 2:
        return False
    return not Notification.model_validate_json(rows[1].payload).edit_only


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between attempts of one message, capped; no attempt limit."""

    initial_seconds: float = 2.0
    factor: float = 2.0
    max_seconds: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self.max_seconds, self.initial_seconds * self.factor ** max(0, attempts - 1)))
