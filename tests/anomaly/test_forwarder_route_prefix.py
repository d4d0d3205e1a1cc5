"""`anomaly run` posts to a serve with ``api.route_prefix`` when ``anomaly.alert_url`` holds the prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from anomaly.forwarder import AlertForwarder
from gpuwarden.api import create_app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.anomaly.forwarder_serve import _xid
from tests.gpuwarden.api_client import TOKEN, TestClient, fleet_engine


def test_alerts_reach_serve_under_its_route_prefix(tmp_path: Path) -> None:
    clock = FakeClock()
    config = ApiConfig(token=SecretStr(TOKEN), route_prefix="/gpuwarden")
    with TestClient(create_app(fleet_engine(tmp_path), config), base_url="http://serve.test") as client:
        forwarder = AlertForwarder(
            "http://serve.test/gpuwarden/", TOKEN, clock, resend_seconds=30, client=client
        )
        forwarder.on_alert(_xid("3", clock))
        assert forwarder.flush()
        held = client.get("/gpuwarden/api/v2/alerts").json()
    assert [(a["labels"]["alertname"], a["labels"]["gpu"]) for a in held] == [("GpuXid", "3")]
