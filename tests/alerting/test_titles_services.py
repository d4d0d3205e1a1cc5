"""A degraded service's title says which of its series went wrong: latency, errors or throughput, on which
route and model; and an inference server's series scraped at its address is about the service, not a node."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import StaticInventory
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, FaultKind, WorkloadKind, WorkloadRef
from tests.migrated_store import migrated_sqlite

# `anomaly run`'s alert on an inference server's series, scraped by Prometheus at the server's pod IP.
ANOMALY = {"alertname": "GpuwardenAnomaly", "model": "adaptive", "deviation": "up", "job": "llama"}
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


def _scored(query: str, route: str = CHAT, **more: str) -> Alert:
    return Alert({**ANOMALY, "for": query, "instance": "10.1.2.3:8000", "route": route, **more})


def _titles(tmp_path: Path, alerts: list[Alert], inventory: StaticInventory | None = None) -> list[str]:
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), FakeClock(), config, inventory)
    engine.ingest(alerts)
    return sorted(row.title for row, _ in engine.store.list_rows())


def test_an_inference_server_scraped_at_a_pod_ip_is_a_degraded_service_not_a_node(tmp_path: Path) -> None:
    # It was "node 10.1.2.3 degraded", rooted at a NodeRef: a remediation policy keyed on node incidents
    # would drain a node that does not exist, and nobody could tell latency from errors.
    for inventory in (None, scenarios.fleet_inventory()):
        path = str(tmp_path / f"{inventory is None}.db")
        migrated_sqlite(Path(path)).dispose()
        engine = IncidentEngine(
            make_engine(path), FakeClock(), AlertingConfig(announce_delay_seconds=0), inventory
        )
        engine.ingest([_scored("inference_request_duration_p99")])
        ((row, _),) = engine.store.list_rows()
        incident = engine.store.get(row.id)
        assert incident.root_cause is not None
        assert incident.root_cause.kind is FaultKind.SERVICE_DEGRADED
        assert incident.root_cause.target == WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "default", "llama")
        assert (
            row.title
            == "inference service llama degraded (inference_request_duration_p99 on /v1/chat/completions)"
        )


def test_a_degraded_service_s_title_names_each_series_route_and_model_that_went_wrong(tmp_path: Path) -> None:
    alerts = [
        _scored("inference_request_duration_p99"),
        _scored("inference_error_ratio", COMPLETIONS),
        _scored("vllm_ttft_p95", "", job="mistral", model="mistral-7b", model_alias="adaptive"),
    ]
    assert _titles(tmp_path, alerts) == [
        "inference service llama degraded (inference_request_duration_p99 on /v1/chat/completions,"
        " inference_error_ratio on /v1/completions)",
        "inference service mistral degraded (vllm_ttft_p95 of model mistral-7b)",
    ]


def test_a_rule_alert_is_named_by_its_alert_name_and_many_series_are_counted(tmp_path: Path) -> None:
    rule = Alert({"alertname": "InferenceLatencyHigh", "service": "chat", "namespace": "prod"})
    routes = [f"/v1/route-{i}" for i in range(5)]
    # Each route's alert a minute after the one before: the title names the earliest.
    start = FakeClock().now()
    alerts = [rule] + [
        replace(
            _scored("inference_error_ratio", route, service="llama"), starts_at=start + timedelta(minutes=i)
        )
        for i, route in enumerate(routes)
    ]
    assert _titles(tmp_path, alerts) == [
        "inference service chat degraded (InferenceLatencyHigh)",
        "inference service llama degraded (inference_error_ratio on /v1/route-0, inference_error_ratio on"
        " /v1/route-1, and 3 more)",
    ]
