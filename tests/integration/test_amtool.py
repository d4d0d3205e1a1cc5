"""The real ``amtool`` (Debian ``prometheus-alertmanager``) against ``gpuwarden serve``: alert queries,
silence add / query / expire, config show, as an operator would use them at 3 a.m."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_serve
from tests.integration.servers import require_binary


def amtool(url: str, http_config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``amtool`` against ``url``, authenticated by ``http_config``: its answer, whatever its status."""
    argv = [require_binary("amtool"), f"--alertmanager.url={url}", f"--http.config.file={http_config}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON an ``amtool -o json`` call printed, once it exited 0."""
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.integration
def test_amtool_queries_alerts_and_adds_queries_and_expires_silences(tmp_path: Path) -> None:
    http_config = tmp_path / "http.yml"
    http_config.write_text(f"authorization:\n  credentials: {TOKEN}\n")
    wrong = tmp_path / "wrong.yml"
    wrong.write_text("authorization:\n  credentials: not-the-token\n")
    ends = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    alerts = [
        {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "n1"}, "endsAt": ends},
        {
            "labels": {"alertname": "GPUXid", "cluster": "c1", "node": "n2", "gpu": "1", "xid": "79"},
            "endsAt": ends,
        },
    ]
    with gpuwarden_serve(tmp_path, str(tmp_path / "amtool.db")) as (url, _):
        assert (
            http_probe.post(f"{url}/api/v2/alerts", json=alerts, headers=AUTH, timeout=10).status_code == 200
        )

        listed = json_of(amtool(url, http_config, "alert", "query", "-o", "json"))
        assert sorted(a["labels"]["node"] for a in listed) == ["n1", "n2"]
        assert {a["status"]["state"] for a in listed} == {"active"}
        assert [
            a["labels"]["node"]
            for a in json_of(amtool(url, http_config, "alert", "query", "-o", "json", "node=n2"))
        ] == ["n2"]

        refused = amtool(url, wrong, "silence", "add", "node=n1", "--duration=1h", "--comment=maintenance")
        assert refused.returncode != 0
        added = amtool(
            url, http_config, "silence", "add", "node=n1", "--duration=1h", "--comment=maintenance"
        )
        assert added.returncode == 0, added.stderr
        silence_id = added.stdout.strip()

        active = json_of(amtool(url, http_config, "alert", "query", "-o", "json"))
        assert [a["labels"]["node"] for a in active] == ["n2"]
        silenced = json_of(amtool(url, http_config, "alert", "query", "--silenced", "-o", "json", "node=n1"))
        assert [(a["status"]["state"], a["status"]["silencedBy"]) for a in silenced] == [
            ("suppressed", [silence_id])
        ]
        (shown,) = json_of(amtool(url, http_config, "silence", "query", "-o", "json"))
        assert (shown["id"], shown["status"]["state"], shown["comment"]) == (
            silence_id,
            "active",
            "maintenance",
        )
        assert shown["matchers"] == [{"name": "node", "value": "n1", "isRegex": False, "isEqual": True}]
        assert "correlation_window_seconds" in amtool(url, http_config, "config", "show").stdout
        routes = amtool(url, http_config, "config", "routes")
        assert routes.returncode == 0 and "gpuwarden" in routes.stdout, routes.stderr
        tested = amtool(url, http_config, "config", "routes", "test", "alertname=NodeDown")
        assert (tested.returncode, tested.stdout.strip()) == (0, "gpuwarden"), tested.stderr

        # Everything but the watchdog: only a negative matcher, which Alertmanager takes too.
        others = amtool(url, http_config, "silence", "add", 'alertname!="Watchdog"', "-d", "1h", "-c", "x")
        assert others.returncode == 0, others.stderr
        queried = json_of(amtool(url, http_config, "silence", "query", "-o", "json", "node=n1"))
        assert [s["id"] for s in queried] == [silence_id]  # the filter is applied, not ignored
        assert amtool(url, http_config, "silence", "expire", others.stdout.strip()).returncode == 0
        # A refusal reaches the operator as Alertmanager's does: its reason, not a JSON decoding error.
        bad = amtool(
            url, http_config, "alert", "add", "alertname=X", "--start=2030-01-02T00:00:00Z",
            "--end=2030-01-01T00:00:00Z",
        )  # fmt: skip
        assert bad.returncode != 0 and "endsAt" in bad.stderr and "unmarshal" not in bad.stderr, bad.stderr

        expired = amtool(url, http_config, "silence", "expire", silence_id)
        assert expired.returncode == 0, expired.stderr
        assert json_of(amtool(url, http_config, "silence", "query", "-o", "json")) == []
        (gone,) = json_of(amtool(url, http_config, "silence", "query", "--expired", "-o", "json", "node=n1"))
        assert (gone["id"], gone["status"]["state"]) == (silence_id, "expired")
        # The alert the silence held back reaches an incident at the engine's next tick (every 5 s).
        deadline = time.monotonic() + 20
        counted = 0
        while time.monotonic() < deadline and counted < 2:
            time.sleep(0.5)
            counted = sum(
                i["alert_count"] for i in http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
            )
        assert counted == 2
        assert {
            a["status"]["state"] for a in json_of(amtool(url, http_config, "alert", "query", "-o", "json"))
        } == {"active"}

        # An incident's silence mutes an incident, not labels: it is no Alertmanager silence, not listed.
        incident = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()[0]
        silenced_incident = http_probe.post(
            f"{url}/api/v1/incidents/{incident['id']}/silence",
            json={"duration": "1h", "by": "test"},
            headers=AUTH,
        )
        assert silenced_incident.status_code == 200
        assert json_of(amtool(url, http_config, "silence", "query", "-o", "json")) == []
        everything = json_of(amtool(url, http_config, "silence", "query", "--expired", "-o", "json"))
        assert all(s["matchers"] for s in everything) and silence_id in [s["id"] for s in everything]


@pytest.mark.integration
def test_the_status_config_is_one_alertmanager_checks_and_routes(tmp_path: Path) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(
        "alerting:\n"
        "  inhibit_rules:\n"
        "    - name: a node down mutes its GPUs\n"
        "      source_matchers: [alertname=NodeDown]\n"
        "      target_matchers: ['severity=~\"warning|critical\"']\n"
        "      equal: [node, cluster]\n"
    )
    http_config = tmp_path / "http.yml"
    http_config.write_text(f"authorization:\n  credentials: {TOKEN}\n")
    with gpuwarden_serve(tmp_path, str(tmp_path / "s.db"), extra_args=["--config", str(config)]) as (url, _):
        original = http_probe.get(f"{url}/api/v2/status", timeout=10).json()["config"]["original"]
        routes = amtool(url, http_config, "config", "routes")
    assert routes.returncode == 0 and "gpuwarden" in routes.stdout, routes.stderr
    (tmp_path / "am.yml").write_text(original)
    checked = subprocess.run(
        [require_binary("amtool"), "check-config", str(tmp_path / "am.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0 and "1 inhibit rules" in checked.stdout, checked.stdout + checked.stderr
