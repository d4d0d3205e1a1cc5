"""A real Alertmanager: our fingerprint equals its fingerprint, and it routes to our webhook receiver."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpuwarden.model import label_fingerprint
from tests.integration import http_probe
from tests.integration.gpuwarden_server import TOKEN, gpuwarden_serve
from tests.integration.servers import free_port, require_binary, running

LABEL_SETS = [
    {"alertname": "NodeDown", "cluster": "c1", "rack": "r07", "node": "r07-n01", "severity": "critical"},
    {
        "alertname": "GPULost",
        "cluster": "c1",
        "rack": "r07",
        "Hostname": "r07-n02",
        "gpu": "3",
        "UUID": "GPU-x",
    },
    {"alertname": "Ünïcode ✓", "path": 'quote " and \\ backslash', "empty_next": "a"},
    {"alertname": "EmptyValue", "node": "n9", "blank": ""},  # both drop "blank" before fingerprinting
]


def _without_empty(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if v}


def alertmanager_config(receiver_url: str) -> dict[str, Any]:
    """Route everything to gpuwarden's webhook, grouped like a typical setup, with short timers."""
    return {
        "route": {
            "receiver": "gpuwarden",
            "group_by": ["alertname", "cluster"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "gpuwarden",
                "webhook_configs": [
                    {
                        "url": receiver_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": TOKEN}},
                    }
                ],
            }
        ],
    }


def wait_until(predicate: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.integration
def test_alertmanager_fingerprints_match_ours_and_its_webhook_reaches_gpuwarden(tmp_path: Path) -> None:
    binary = require_binary("prometheus-alertmanager")
    with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db")) as (gw_url, _):
        config = tmp_path / "am.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(f"{gw_url}/api/v1/webhook/alertmanager")))
        port = free_port()
        am_url = f"http://127.0.0.1:{port}"
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ]
        with running(argv, f"{am_url}/-/ready", tmp_path / "am.log"):
            now = datetime.now(UTC)
            posted = [
                {
                    "labels": labels,
                    "startsAt": now.isoformat(),
                    "endsAt": (now + timedelta(minutes=10)).isoformat(),
                }
                for labels in LABEL_SETS
            ]
            assert http_probe.post(f"{am_url}/api/v2/alerts", json=posted, timeout=10).status_code == 200
            got = wait_until(
                lambda: http_probe.get(f"{am_url}/api/v2/alerts", timeout=10).json(), "alerts in Alertmanager"
            )
            theirs = {a["fingerprint"]: a["labels"] for a in got}
            assert {label_fingerprint(_without_empty(labels)) for labels in LABEL_SETS} == set(theirs)
            for fingerprint, labels in theirs.items():
                assert label_fingerprint(labels) == fingerprint

            def stored() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = http_probe.get(f"{gw_url}/api/v1/incidents", timeout=10).json()
                return items if sum(i["alert_count"] for i in items) == len(LABEL_SETS) else []

            incidents = wait_until(stored, "Alertmanager's webhook to deliver all alerts to gpuwarden")
            # Alertmanager sends a firing alert's end as Go's zero time; its API never shows that.
            ends = [a["endsAt"] for a in http_probe.get(f"{gw_url}/api/v2/alerts", timeout=10).json()]
            assert len(ends) == len(LABEL_SETS) and all(e > now.isoformat()[:19] for e in ends), ends
            # One node down and a GPU lost on another node of the rack: two faults, two incidents.
            roots = sorted(
                (
                    i["root_cause"]["kind"],
                    i["root_cause"]["target"].get("name") or i["root_cause"]["target"]["node"],
                )
                for i in incidents
                if i["root_cause"]["target"].get("rack") == "r07"
                or i["root_cause"]["target"].get("node") == "r07-n02"
            )
            assert roots == [("gpu_lost", "r07-n02"), ("node_down", "r07-n01")]
            (node_incident,) = [i for i in incidents if i["root_cause"]["target"].get("name") == "r07-n01"]
            # The same body posted to gpuwarden: the same alerts, fingerprints and labels in its API v2
            # as in Alertmanager's, and no new alert beside the webhook's copies.
            auth = {"Authorization": f"Bearer {TOKEN}"}
            assert (
                http_probe.post(f"{gw_url}/api/v2/alerts", json=posted, headers=auth, timeout=10).status_code
                == 200
            )
            ours = {
                a["fingerprint"]: a["labels"]
                for a in http_probe.get(f"{gw_url}/api/v2/alerts", timeout=10).json()
            }
            assert ours == theirs

            assert sum(
                i["alert_count"] for i in http_probe.get(f"{gw_url}/api/v1/incidents", timeout=10).json()
            ) == len(LABEL_SETS)

            # Resolving in Alertmanager sends a resolved notification that gpuwarden records.
            ended = [dict(p, endsAt=datetime.now(UTC).isoformat()) for p in posted[:1]]
            assert http_probe.post(f"{am_url}/api/v2/alerts", json=ended, timeout=10).status_code == 200

            def resolved() -> bool:
                detail = http_probe.get(f"{gw_url}/api/v1/incidents/{node_incident['id']}", timeout=10).json()
                node = [a for a in detail["alerts"] if a["labels"].get("node") == "r07-n01"]
                return bool(node) and node[0]["status"] == "resolved"

            wait_until(resolved, "the resolved notification")
