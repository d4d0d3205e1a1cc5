"""What ``gpuwarden serve`` reports about itself on ``/metrics``: requests answered, alerts and incidents
counted by the engine, open incidents by priority, and when each inventory source was last read."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from alerting.engine import IncidentEngine
from gpuwarden.standby_api import standby_gauge


class ApiMetrics(Collector):
    """The API's own counters, rendered fresh on every scrape."""

    def __init__(self, engine: IncidentEngine) -> None:
        self.engine = engine
        self.requests: dict[tuple[str, str], int] = {}
        self.errors = 0
        self.truncated = 0
        self._lock = threading.Lock()

    def count(self, route: str, code: int) -> None:
        """Count one answered request."""
        with self._lock:
            key = (route, str(code))
            self.requests[key] = self.requests.get(key, 0) + 1

    def count_truncated(self, alerts: int) -> None:
        """Count alerts an Alertmanager webhook notification said it left out (``truncatedAlerts``)."""
        with self._lock:
            self.truncated += alerts

    def collect(self) -> Any:
        """Counters of requests, alerts and incidents; open incidents by priority."""
        requests = CounterMetricFamily(
            "gpuwarden_api_requests", "HTTP requests answered.", labels=["route", "code"]
        )
        with self._lock:
            for (route, code), n in sorted(self.requests.items()):
                requests.add_metric([route, code], n)
            errors, truncated = self.errors, self.truncated
        yield requests
        yield CounterMetricFamily(
            "gpuwarden_webhook_truncated_alerts",
            "Alerts Alertmanager left out of its webhook notifications (its max_alerts): they open nothing.",
            value=truncated,
        )
        yield CounterMetricFamily(
            "gpuwarden_api_internal_errors", "Requests that failed unexpectedly.", value=errors
        )
        c = dict(self.engine.counters)
        for name, help_text in (
            ("alerts_received", "Alerts accepted and stored."),
            ("alerts_muted", "Alerts muted by a silence, maintenance window or inhibition."),
            ("incidents_opened", "Incidents opened."),
            ("incidents_resolved", "Incidents resolved, after their quiet period or by hand."),
            ("listener_errors", "Incident listeners that raised."),
            ("incidents_pruned", "Resolved incidents deleted after the retention period."),
            ("alerts_pruned", "Resolved alerts deleted after the retention period."),
            (
                "inventory_refresh_failures",
                "Inventory re-reads (Slurm, Kubernetes) that failed; the last one stays.",
            ),
            (
                "inventory_relists",
                "Kubernetes lists started again at once because their continue token expired (HTTP 410).",
            ),
        ):
            yield CounterMetricFamily(f"gpuwarden_{name}", help_text, value=c.get(name, 0))
        yield standby_gauge(0)  # this is the active server (a standby answers 1)
        yield GaugeMetricFamily(
            "gpuwarden_alerts_muted_firing",
            "Firing alerts held back by a silence, maintenance window or inhibition (they open or join an "
            "incident when that ends).",
            value=self.engine.muted_count(),
        )
        inventory = self.engine.inventory
        yield GaugeMetricFamily(
            "gpuwarden_inventory_workloads",
            "Workloads (services, training jobs) the inventory places on GPUs.",
            value=len(inventory.workloads()) if inventory is not None else 0,
        )
        read = GaugeMetricFamily(
            "gpuwarden_inventory_last_read_timestamp_seconds",
            "When each refreshed inventory source (slurm, kubernetes) was last read (alert on time() - it).",
            labels=["source"],
        )
        failed = GaugeMetricFamily(
            "gpuwarden_inventory_last_failure_timestamp_seconds",
            "When a read of each refreshed inventory source last failed (0: never).",
            labels=["source"],
        )
        for name, times in list(self.engine.inventory_sources.items()):
            read_at, failed_at = times.get("read_at"), times.get("failed_at")
            read.add_metric([name], read_at.timestamp() if read_at is not None else 0.0)
            failed.add_metric([name], failed_at.timestamp() if failed_at is not None else 0.0)
        yield read
        yield failed
        gauge = GaugeMetricFamily("gpuwarden_incidents_open", "Incidents not resolved.", labels=["priority"])
        counts = {p: 0 for p in ("P0", "P1", "P2", "P3")}
        for priority in self.engine.open_priorities():
            counts[priority.value] += 1
        for p, n in counts.items():
            gauge.add_metric([p], n)
        yield gauge
