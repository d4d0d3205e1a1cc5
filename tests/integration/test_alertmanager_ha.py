"""A real Alertmanager HA pair routing to gpuwarden's webhook: each fault pages once and resolves once,
though both peers deliver and the lagging one sends, after its peer's resolution, the firing group it read
before it."""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import http_probe
from tests.integration.gpuwarden_server import gpuwarden_serve
from tests.integration.servers import free_port, require_binary, running
from tests.integration.test_alertmanager_webhook import alertmanager_config, wait_until

PEER_TIMEOUT = 8  # seconds the second peer waits before it sends what it read
NODES = ["r01-n01", "r01-n02", "r01-n03"]


def _incidents(url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
    return items


@pytest.mark.integration
def test_an_alertmanager_ha_pair_pages_each_fault_once_and_its_late_peer_reopens_nothing(
    tmp_path: Path,
) -> None:
    binary = require_binary("prometheus-alertmanager")
    config = tmp_path / "gw.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"token": {"env": "GPUWARDEN_API_TOKEN"}},
                "alerting": {
                    "quiet_period_seconds": 1,
                    "announce_delay_seconds": 0,
                    "tick_interval_seconds": 0.5,
                },
            }
        )
    )
    with ExitStack() as stack:
        gw_url, _ = stack.enter_context(
            gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(config)])
        )
        am_config = alertmanager_config(f"{gw_url}/api/v1/webhook/alertmanager")
        am_config["route"]["group_by"] = ["..."]  # one group per alert: each its own race
        (tmp_path / "am.yml").write_text(yaml.safe_dump(am_config))
        web, cluster = [free_port(), free_port()], [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{port}" for port in web]
        for i in (0, 1):
            argv = [
                binary,
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / f'am{i}'}",
                f"--web.listen-address=127.0.0.1:{web[i]}",
                f"--cluster.listen-address=127.0.0.1:{cluster[i]}",
                f"--cluster.peer=127.0.0.1:{cluster[1 - i]}",
                f"--cluster.peer-timeout={PEER_TIMEOUT}s",
                "--cluster.gossip-interval=100ms",
                "--cluster.pushpull-interval=1s",
            ]
            stack.enter_context(running(argv, f"{urls[i]}/-/ready", tmp_path / f"am{i}.log"))
        now = datetime.now(UTC)
        alerts = [
            {
                "labels": {"alertname": "GpuThermalSlowdown", "cluster": "c1", "node": node, "gpu": "0"},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
            }
            for node in NODES
        ]
        for alert in alerts:  # apart, so that each group's timers race on their own
            for url in urls:  # as Prometheus sends to every Alertmanager it is given
                assert http_probe.post(f"{url}/api/v2/alerts", json=[alert], timeout=10).status_code == 200
            time.sleep(PEER_TIMEOUT / len(alerts))
        wait_until(lambda: len(_incidents(gw_url)) == len(NODES), "an incident per fault")
        time.sleep(2 * (PEER_TIMEOUT + 1))  # both peers deliver, the second one a peer timeout late
        ended = [dict(a, endsAt=datetime.now(UTC).isoformat()) for a in alerts]
        for url in urls:
            assert http_probe.post(f"{url}/api/v2/alerts", json=ended, timeout=10).status_code == 200
        wait_until(
            lambda: all(i["state"] == "resolved" for i in _incidents(gw_url)), "every incident resolved"
        )
        time.sleep(2 * (PEER_TIMEOUT + 1) + 2)  # the late peer's firing, read before, then its resolution
        incidents = _incidents(gw_url)
        assert len(incidents) == len(NODES)
        for incident in incidents:
            detail = http_probe.get(f"{gw_url}/api/v1/incidents/{incident['id']}", timeout=10).json()
            kinds = [e["kind"] for e in detail["timeline"]]
            told = [(e["at"], e["kind"], e["message"]) for e in detail["timeline"]]
            counts = [kinds.count(kind) for kind in ("opened", "reopened", "resolved")]
            assert (detail["state"], counts) == ("resolved", [1, 0, 1]), told
        sent = [
            sum(
                float(line.split()[-1])
                for line in http_probe.get(f"{url}/metrics", timeout=10).text.splitlines()
                if line.startswith('alertmanager_notifications_total{integration="webhook"}')
            )
            for url in urls
        ]
        assert all(sent), sent  # both peers delivered
