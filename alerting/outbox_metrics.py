"""Prometheus metrics of the notification outbox, by notifier (``slack``, ``webhook:<name>``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from alerting.outbox import Outbox
from alerting.outbox_tables import HELD, PENDING, STATUSES

logger = logging.getLogger(__name__)

DEPTHS = (PENDING, HELD, *(s for s in STATUSES if s != PENDING))
"""The ``status`` values of ``gpuwarden_outbox_messages``: every stored status, and ``held`` (pending messages
held on purpose, a webhook's ``reassessed`` update waiting out ``edit_interval_seconds``: not backlog)."""


class OutboxCollector:
    """Prometheus metrics of an outbox; register it on the registry that ``/metrics`` serves. Every
    notifier of the outbox has its series from the start (at 0), so a rate or an alert on one needs no
    first event."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        # The depth last read, shown while the store is away.
        self._last_counts: dict[tuple[str, str], int] | None = None

    def describe(self) -> Iterator[Metric]:
        """Nothing to describe up front: registering must not touch the database."""
        return iter(())

    def _by_notifier(self, name: str, documentation: str, counts: Mapping[str, int]) -> CounterMetricFamily:
        family = CounterMetricFamily(name, documentation, labels=["notifier"])
        for notifier in sorted({*self._outbox.notifier_names, *counts}):
            family.add_metric([notifier], counts.get(notifier, 0))
        return family

    def collect(self) -> Iterator[Metric]:
        """Counters from this process and the queue depth from the database."""
        stats = self._outbox.stats
        yield self._by_notifier(
            "gpuwarden_notifications_sent", "Notifications delivered, by notifier.", stats.by_notifier_sent
        )
        yield self._by_notifier(
            "gpuwarden_notification_retries",
            "Delivery attempts that failed and will be retried, by notifier.",
            stats.by_notifier_retried,
        )
        yield self._by_notifier(
            "gpuwarden_notification_failures",
            "Notifications refused for good (status failed), by notifier.",
            stats.by_notifier_failed,
        )
        yield self._by_notifier(
            "gpuwarden_notifications_filtered",
            "Incident changes a notifier's events or priorities left out (never queued), by notifier.",
            stats.by_notifier_filtered,
        )
        yield self._by_notifier(
            "gpuwarden_notifications_held",
            "Incident changes queued and then not sent, a silenced incident's, by notifier.",
            stats.by_notifier_held,
        )
        yield self._by_notifier(
            "gpuwarden_notifications_superseded",
            "Queued edits of an incident's message not sent, a later message of it showing it as it is,"
            " by notifier.",
            stats.by_notifier_superseded,
        )
        yield CounterMetricFamily(
            "gpuwarden_outbox_errors", "Unexpected errors in the outbox or a notifier.", value=stats.errors
        )
        paused = GaugeMetricFamily(
            "gpuwarden_notifier_paused_seconds",
            "Seconds left before the outbox calls a rate-limited notifier again (Retry-After); 0 when none.",
            labels=["notifier"],
        )
        for notifier in self._outbox.notifier_names:
            paused.add_metric([notifier], self._outbox.pause_left(notifier))
        yield paused
        blocked = GaugeMetricFamily(
            "gpuwarden_notifier_blocked",
            "1 while the notifier's far end refuses every call until someone acts (Slack: a revoked token):"
            " its messages are held, none failed; 0 otherwise.",
            labels=["notifier"],
        )
        for notifier in self._outbox.notifier_names:
            blocked.add_metric([notifier], 1 if notifier in self._outbox.blocked() else 0)
        yield blocked
        up = 1
        try:
            self._last_counts = self._outbox.counts_by_notifier()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database is away
            logger.warning("outbox depth unavailable, showing the last one read: %r", exc)
            up = 0
        yield GaugeMetricFamily(
            "gpuwarden_outbox_up",
            "1 when gpuwarden_outbox_messages was read at this scrape; 0: the last depth read is shown.",
            value=up,
        )
        counts = self._last_counts
        if counts is None:
            return
        depth = GaugeMetricFamily(
            "gpuwarden_outbox_messages",
            "Stored notifications by notifier and status; held: a webhook update waiting out its edit"
            " interval on purpose (not counted pending).",
            labels=["notifier", "status"],
        )
        for notifier in sorted({*self._outbox.notifier_names, *(n for n, _ in counts)}):
            for status in DEPTHS:
                depth.add_metric([notifier, status], counts.get((notifier, status), 0))
        yield depth
