"""An alert posted again: how its activity range merges with the stored one, as Alertmanager's does.

A pair of HA Prometheus servers evaluates the same rule seconds apart, so each posts the alert with its own
``startsAt`` (when it saw the rule start firing) and ``endsAt`` (its evaluation time plus four intervals).
Alertmanager merges a post whose range overlaps the stored one (its memory provider's overlap check, then
``types.Alert.Merge``): the earliest ``startsAt`` stays, and of two firing (or two resolved) posts the later
``endsAt``, so the replica that evaluated last does not end the alert early. A post whose status differs
takes its own ``endsAt`` (a resolution ends the alert; a re-fire starts again). A stored end that is a
resolve timeout (the last post had no ``endsAt``: ``Alert.timeout``, Alertmanager's ``Timeout``) yields to a
firing post's own ``endsAt``, earlier or not: a script that posted the alert open-ended and then says when
it ends is taken at its word, as Alertmanager takes it.

Alertmanager's webhook tells a resolved alert's range, so a firing notification of that same range is old
news (``replays_resolved``): the lagging peer of an HA pair sends the firing group it read before the
resolution, after its peer delivered the resolution.

The alerts of one POST are taken in the order what they say happened (``event_order``), not as the POST
lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gpuwarden.model import Alert, AlertSource, AlertStatus


def merged_ends(
    stored_starts: datetime,
    stored_ends: datetime | None,
    ends: datetime | None,
    stored_timeout: bool = False,
) -> datetime | None:
    """The ``endsAt`` of an alert posted again with its status unchanged: the stored one when it is later,
    the new one falls within the stored range (an overlap) and the stored one is no resolve timeout
    (``stored_timeout``), else the new one. ``None``, a webhook alert's open end, is no time to compare: the
    new value stands."""
    if (
        not stored_timeout
        and ends is not None
        and stored_ends is not None
        and stored_starts < ends < stored_ends
    ):
        return stored_ends
    return ends


def earlier_start(stored_starts: datetime, starts: datetime | None, ends: datetime | None) -> datetime | None:
    """The new ``startsAt`` when it is earlier than the stored one and the post overlaps the stored range
    (it ends after the stored start, or has no end); None when the stored one stays."""
    if starts is None or starts >= stored_starts:
        return None
    return starts if ends is None or ends > stored_starts else None


def replays_resolved(alert: Alert, stored_ends: datetime | None) -> bool:
    """A webhook alert firing from a ``startsAt`` that is no later than the end of the stored, resolved one:
    a notification of the activity already resolved, not a new one. The lagging peer of an Alertmanager HA
    pair waits (``--cluster.peer-timeout``, 15 s per peer before it) and then sends the firing group it
    read before the alert resolved, when the resolution it lost to has not yet reached its notification
    log's view of the group. A new activity after a resolution starts after it: Prometheus starts it at a
    later evaluation, and Alertmanager replaces a resolved alert whose range the new one does not overlap."""
    if alert.source is not AlertSource.WEBHOOK or alert.starts_at is None or stored_ends is None:
        return False
    return alert.starts_at <= stored_ends


def event_order(posted: Sequence[tuple[Alert, str]], at: datetime) -> list[tuple[Alert, str]]:
    """A POST's alerts, each with its fingerprint, in the order what they say happened: a firing alert at its
    ``startsAt``, a resolved one (it says so, or its ``endsAt`` passed by ``at``, when it was received) at its
    ``endsAt``, either without that time at ``at``. Alertmanager lists a group's alerts by their labels (job,
    instance, then the rest), Prometheus a rule group's in no set order: taken so, a fault that began later
    opened its incident first and what began before it on its node joined that, where posted one per POST as
    they began (or in one POST in onset order) the first opened the incident and rooted it (batch fuzz, one
    POST out of onset order: 99 of 250 storms grouped otherwise). Stable: alerts of one time keep the POST's
    order, and each fingerprint's posts (an HA pair's two, a firing and its resolution) keep theirs, all at
    the earliest time of them."""
    if len(posted) < 2:
        return list(posted)
    times: dict[str, datetime] = {}
    for alert, fp in posted:
        resolved = alert.status is AlertStatus.RESOLVED or (alert.ends_at is not None and alert.ends_at <= at)
        when = (alert.ends_at if resolved else alert.starts_at) or at
        if fp not in times or when < times[fp]:
            times[fp] = when
    return sorted(posted, key=lambda item: times[item[1]])
