"""A real Prometheus, with `alerting.alertmanagers` pointing at gpuwarden, delivers rule alerts to it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.integration import http_probe
from tests.integration.gpuwarden_server import TOKEN, gpuwarden_serve
from tests.integration.servers import free_port, require_binary, running

RULES = {
    "groups": [
        {
            "name": "gpu",
            "interval": "1s",
            "rules": [
                {
                    "alert": "NodeDown",
                    "expr": "vector(1) > 0",
                    "labels": {"cluster": "c1", "rack": "r03", "node": "r03-n05", "severity": "critical"},
                    "annotations": {"summary": "node r03-n05 is down"},
                },
                {
                    "alert": "GPULost",
                    "expr": "vector(1) > 0",
                    "labels": {"cluster": "c1", "rack": "r03", "Hostname": "r03-n05", "gpu": "2"},
                },
            ],
        }
    ]
}


@pytest.mark.integration
def test_prometheus_rule_alerts_arrive_as_one_incident(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db")) as (gw_url, _):
        rules = tmp_path / "rules.yml"
        rules.write_text(yaml.safe_dump(RULES))
        config = {
            "global": {"evaluation_interval": "1s", "scrape_interval": "15s"},
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [
                    {
                        "api_version": "v2",
                        "static_configs": [{"targets": [urlparse(gw_url).netloc]}],
                        "authorization": {"type": "Bearer", "credentials": TOKEN},
                    }
                ]
            },
        }
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config))
        port = free_port()
        argv = [
            binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # The first send can race the notifier's discovery; resend soon instead of after 1 minute.
            "--rules.alert.resend-delay=1s",
        ]
        with running(argv, f"http://127.0.0.1:{port}/-/ready", tmp_path / "prometheus.log"):
            incidents: list[dict[str, Any]] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                incidents = http_probe.get(f"{gw_url}/api/v1/incidents", timeout=10).json()
                if incidents and incidents[0]["alert_count"] == 2:
                    break
                time.sleep(0.3)
            assert len(incidents) == 1, incidents
            (incident,) = incidents
            assert incident["alert_count"] == 2
            assert incident["root_cause"] == {
                "kind": "node_down",
                "target": {"type": "node", "cluster": "c1", "rack": "r03", "name": "r03-n05"},
                "cluster": "",  # named only in a fleet of more than one cluster
            }
            detail = http_probe.get(f"{gw_url}/api/v1/incidents/{incident['id']}", timeout=10).json()
            by_name = {a["labels"]["alertname"]: a for a in detail["alerts"]}
            # Prometheus re-sends firing alerts with endsAt in the future; gpuwarden dedups them.
            assert by_name["NodeDown"]["status"] == "firing"
            assert by_name["NodeDown"]["endsAt"] is not None
            metrics = http_probe.get(f"{gw_url}/metrics", timeout=10).text
            assert 'route="/api/v2/alerts"' in metrics
