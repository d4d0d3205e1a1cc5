"""`serve --route-prefix /gpuwarden`, as behind a proxy forwarding `/gpuwarden/...` unstripped: the real
amtool (`--alertmanager.url=http://host/gpuwarden/`), a real Prometheus (its alerting `path_prefix`) and the
CLI reach it there; the probes answer under the prefix only, as Alertmanager's under its route prefix."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.integration import http_probe
from tests.integration.gpuwarden_server import TOKEN, gpuwarden_argv, gpuwarden_serve
from tests.integration.servers import free_port, require_binary, running
from tests.integration.test_amtool import amtool, json_of
from tests.integration.test_prometheus_to_gpuwarden import RULES

PREFIX = "/gpuwarden"


def _prometheus(tmp_path: Path, target: str) -> tuple[list[str], str]:
    """A Prometheus sending its rule alerts to serve at ``target`` under the prefix (``path_prefix``), and
    its readiness URL."""
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(RULES))
    alertmanager = {
        "api_version": "v2",
        "path_prefix": PREFIX,
        "static_configs": [{"targets": [target]}],
        "authorization": {"type": "Bearer", "credentials": TOKEN},
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"evaluation_interval": "1s", "scrape_interval": "15s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [alertmanager]},
            }
        )
    )
    port = free_port()
    argv = [
        require_binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s",  # the first send can race the notifier's discovery
    ]
    return argv, f"http://127.0.0.1:{port}/-/ready"


@pytest.mark.integration
def test_amtool_prometheus_and_the_cli_reach_serve_under_its_route_prefix(tmp_path: Path) -> None:
    http_config = tmp_path / "http.yml"
    http_config.write_text(f"authorization:\n  credentials: {TOKEN}\n")
    args = ["--route-prefix", PREFIX]
    serving = gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=args, ready=f"{PREFIX}/-/ready")
    with serving as (root, _):
        url = f"{root}{PREFIX}"
        assert http_probe.get(f"{url}/-/healthy", timeout=10).status_code == 200
        assert http_probe.get(f"{root}/-/healthy", timeout=10).status_code == 404  # as Alertmanager's

        prometheus, prometheus_ready = _prometheus(tmp_path, urlparse(root).netloc)
        with running(prometheus, prometheus_ready, tmp_path / "prometheus.log"):
            incidents: list[dict[str, Any]] = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (incidents and incidents[0]["alert_count"] == 2):
                time.sleep(0.3)
                incidents = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
        assert [i["alert_count"] for i in incidents] == [2]

        amtool_url = f"{url}/"  # as an operator writes it
        queried = json_of(amtool(amtool_url, http_config, "alert", "query", "-o", "json"))
        assert sorted(a["labels"]["alertname"] for a in queried) == ["GPULost", "NodeDown"]
        added = amtool(
            amtool_url, http_config, "silence", "add", "node=r03-n05", "-d", "1h", "-c", "maintenance"
        )
        assert added.returncode == 0, added.stderr
        (shown,) = json_of(amtool(amtool_url, http_config, "silence", "query", "-o", "json"))
        assert shown["id"] == added.stdout.strip()
        assert amtool(amtool_url, http_config, "silence", "expire", shown["id"]).returncode == 0
        assert json_of(amtool(amtool_url, http_config, "silence", "query", "-o", "json")) == []

        listed = subprocess.run(
            [*gpuwarden_argv(), "incidents", "list", "-o", "json", "--url", url],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert [i["id"] for i in json.loads(listed.stdout)] == [incidents[0]["id"]]
