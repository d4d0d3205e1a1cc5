"""The API's core: alerts and webhooks posted and stored, its metrics, failures as clean errors in its own
shape, and alerts that resolve by time."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.model import label_fingerprint
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TOKEN, TestClient
from tests.gpuwarden.api_error import error_field, error_text


def test_posted_alert_is_stored_before_200_and_opens_an_incident(
    client: TestClient, engine: IncidentEngine
) -> None:
    response = client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    assert response.status_code == 200
    assert engine.store.alert(label_fingerprint(NODE_DOWN["labels"])) is not None  # type: ignore[arg-type]
    (item,) = client.get("/api/v1/incidents").json()
    assert set(item) == {
        "id",
        "title",
        "priority",
        "state",
        "root_cause",
        "alert_count",
        "opened_at",
        "resolved_at",
        # Added since, each with what it adds: nothing above changes.
        "last_opened_at",
        "merged_into",
        "silenced_until",
        "silence_ids",
    }
    assert item["root_cause"] == {
        "kind": "node_down",
        "target": {"type": "node", "cluster": "c1", "rack": "r02", "name": "r02-n03"},
        "cluster": "",  # named only in a fleet of more than one cluster
    }
    assert (item["alert_count"], item["state"], item["resolved_at"]) == (1, "triggered", None)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "not-bearer"],
)
def test_writes_without_the_right_bearer_token_are_refused(
    client: TestClient, engine: IncidentEngine, headers: dict[str, str]
) -> None:
    assert client.post("/api/v2/alerts", json=[NODE_DOWN], headers=headers).status_code == 401
    assert engine.store.alert_count() == 0


def test_oversized_body_gets_413_and_nothing_is_stored(client: TestClient, engine: IncidentEngine) -> None:
    big = [{"labels": {"alertname": "X", "pad": "x" * 5000}}]
    refused = client.post("/api/v2/alerts", json=big, headers=AUTH)
    assert refused.status_code == 413
    assert (
        "send it in smaller parts, or raise api.max_body_bytes" in refused.text
    )  # the setting it comes from
    assert engine.store.alert_count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (json.dumps({"labels": {}}).encode(), "body"),
        (json.dumps([{"labels": {}}]).encode(), "[0].labels"),
        (json.dumps([NODE_DOWN, {"labels": {"a": 1}}]).encode(), "[1].labels.a"),
        (json.dumps([{"labels": {"a": "b"}, "startsAt": "yesterday"}]).encode(), "[0].startsAt"),
        (json.dumps([{"labels": {"a": "b"}, "endsAt": "2026-01-01T00:00:00"}]).encode(), "[0].endsAt"),
        # PostgreSQL cannot store a NUL: refused before the 200 on every store, good alerts of the batch kept
        # out with it (Prometheus resends), rather than quarantined after it.
        (json.dumps([NODE_DOWN, {"labels": {"node": "nul\u0000node"}}]).encode(), "[1].labels.node"),
        (
            json.dumps([{"labels": {"a": "b"}, "generatorURL": "http://x/\u0000"}]).encode(),
            "[0].generatorURL",
        ),
    ],
    ids=[
        "bad-json",
        "not-array",
        "empty-labels",
        "non-string-label",
        "bad-time",
        "naive-time",
        "nul",
        "nul-url",
    ],
)
def test_malformed_payloads_get_400_naming_the_field_and_change_nothing(
    client: TestClient, engine: IncidentEngine, body: bytes, field: str
) -> None:
    client.post("/api/v2/alerts", json=[{"labels": {"alertname": "Keep", "node": "k"}}], headers=AUTH)
    before = client.get("/api/v1/incidents").json()
    response = client.post(
        "/api/v2/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert error_field(response) == field
    assert engine.store.alert_count() == 1
    assert client.get("/api/v1/incidents").json() == before


def _webhook(status: str = "firing") -> dict[str, object]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="NodeDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "gpuwarden",
        "groupLabels": {"alertname": "NodeDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "notification_reason": "first notification",
        "routeLabels": {"team": "gpu"},
        "someFutureField": [1, 2, 3],
        "alerts": [
            {
                "status": status,
                "labels": NODE_DOWN["labels"],
                "annotations": {"summary": "down"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom/graph",
                "fingerprint": "ignored-we-recompute",
                "anotherNewField": True,
            }
        ],
    }


def test_webhook_v4_with_unknown_fields_is_accepted_and_idempotent(
    client: TestClient, engine: IncidentEngine
) -> None:
    for _ in range(3):
        response = client.post("/api/v1/webhook/alertmanager", json=_webhook(), headers=AUTH)
        assert response.status_code == 200
    (item,) = client.get("/api/v1/incidents").json()
    assert item["alert_count"] == 1
    detail = client.get(f"/api/v1/incidents/{item['id']}").json()
    assert [e["kind"] for e in detail["timeline"]].count("alert_added") == 1


def test_a_webhook_alert_with_gos_zero_end_shows_the_end_a_posted_firing_alert_shows(
    client: TestClient, engine: IncidentEngine
) -> None:
    assert client.post("/api/v1/webhook/alertmanager", json=_webhook(), headers=AUTH).status_code == 200
    posted = {"labels": {**NODE_DOWN["labels"], "node": "r02-n04"}, "endsAt": "0001-01-01T00:00:00Z"}
    assert client.post("/api/v2/alerts", json=[posted], headers=AUTH).status_code == 200
    ends = {a["labels"]["node"]: a["endsAt"] for a in client.get("/api/v2/alerts").json()}
    # Alertmanager's: the resolve timeout from now, as for an alert it has to time out; never Go's zero time.
    assert ends == {"r02-n03": "2026-01-01T00:05:00Z", "r02-n04": "2026-01-01T00:05:00Z"}
    engine.clock.advance(3600)  # type: ignore[attr-defined]
    engine.tick()
    (webhook,) = client.get("/api/v2/alerts").json()  # the posted one timed out; Alertmanager's did not
    assert webhook["endsAt"] == "2026-01-01T01:05:00Z"


def test_webhook_with_another_version_is_refused_naming_version(client: TestClient) -> None:
    payload = {**_webhook(), "version": "3"}
    response = client.post("/api/v1/webhook/alertmanager", json=payload, headers=AUTH)
    assert (response.status_code, error_field(response)) == (400, "version")


def test_unexpected_failure_is_a_clean_503_not_a_500(client: TestClient, engine: IncidentEngine) -> None:
    def broken(alerts: object) -> None:
        raise RuntimeError("disk on fire")

    engine.ingest = broken  # type: ignore[method-assign]
    response = client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    assert response.status_code == 503
    assert "internal error" in error_text(response)
    metrics = client.get("/metrics").text
    assert "gpuwarden_api_internal_errors_total 1.0" in metrics


def test_metrics_count_requests_alerts_and_open_incidents(client: TestClient) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    text = client.get("/metrics").text
    assert 'gpuwarden_api_requests_total{code="200",route="/api/v2/alerts"} 1.0' in text
    assert "gpuwarden_alerts_received_total 1.0" in text
    assert 'gpuwarden_incidents_open{priority="P2"} 1.0' in text
    assert client.get("/healthz").text == "ok"


def test_an_alert_posted_without_ends_at_resolves_after_the_resolve_timeout_unless_posted_again(
    client: TestClient, engine: IncidentEngine
) -> None:
    clock = engine.clock
    assert isinstance(clock, FakeClock)
    kept = {"labels": {"alertname": "Kept", "node": "r01-n01"}, "endsAt": "2027-01-01T00:00:00Z"}
    client.post("/api/v2/alerts", json=[NODE_DOWN, kept], headers=AUTH)
    fingerprint = label_fingerprint(NODE_DOWN["labels"])  # type: ignore[arg-type]
    clock.advance(240)
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)  # re-posted: ends 5 min from now
    clock.advance(240)
    engine.tick()
    assert engine.store.alert(fingerprint).status == "firing"  # type: ignore[union-attr]
    clock.advance(61)  # the sender stopped: 5 minutes after its last post, as in Alertmanager
    engine.tick()
    assert engine.store.alert(fingerprint).status == "resolved"  # type: ignore[union-attr]
    assert engine.store.alert(label_fingerprint(kept["labels"])).status == "firing"  # type: ignore[arg-type,union-attr]


def test_an_unknown_route_or_method_answers_in_the_apis_error_shape(client: TestClient) -> None:
    v1 = client.get("/api/v1/nope")
    assert (v1.status_code, v1.json()) == (
        404,
        {"error": "path: no route for GET /api/v1/nope", "field": "path"},
    )
    v2 = client.get("/api/v2/nope")  # Alertmanager's API: go-openapi's shape, the field in a header too
    assert (v2.status_code, v2.json(), error_field(v2)) == (
        404,
        {"code": 404, "message": "path: no route for GET /api/v2/nope"},
        "path",
    )
    wrong = client.delete("/api/v2/alerts")
    assert (wrong.status_code, error_field(wrong), wrong.headers["Allow"]) == (
        405,
        "method",
        "GET, HEAD, POST",
    )
    put = client.put("/api/v1/incidents")
    assert (put.status_code, put.json()["field"], put.headers["Allow"]) == (405, "method", "GET, HEAD")


@pytest.mark.parametrize("path", ["/api/v2/alerts", "/api/v1/incidents/inc-x/ack", "/api/v1/outbox/retry"])
def test_a_write_without_the_token_asks_for_a_bearer_token(client: TestClient, path: str) -> None:
    refused = client.post(path, json={}, headers={"Authorization": "Bearer wrong"})
    assert (refused.status_code, refused.headers["WWW-Authenticate"]) == (401, "Bearer")


@pytest.mark.parametrize(
    ("key", "header"),
    [
        ("\x80", "[0].annotations.\\x80"),
        ("a\nb", "[0].annotations.a\\nb"),
        ("c\\d", "[0].annotations.c\\\\d"),
    ],
    ids=["non-ascii", "newline", "backslash"],
)
def test_a_field_named_by_what_the_client_sent_is_escaped_in_the_field_header(
    client: TestClient, key: str, header: str
) -> None:
    alert = {"labels": {"alertname": "X"}, "annotations": {key: "\u0000"}}
    refused = client.post("/api/v2/alerts", json=[alert], headers=AUTH)
    assert refused.status_code == 400 and refused.headers["X-Gpuwarden-Field"] == header
    assert refused.json().startswith(f"[0].annotations.{key}: ")  # the body, JSON, says it as it was


def test_an_alert_is_not_listed_once_its_ends_at_has_passed_before_the_next_tick(
    client: TestClient, engine: IncidentEngine
) -> None:
    """Alertmanager lists no alert whose endsAt has passed; serve listed it as firing until its next tick
    (5 s), so ``amtool alert query`` showed an alert that had already resolved."""
    clock = engine.clock
    assert isinstance(clock, FakeClock)
    ends = rfc3339(clock.now() + timedelta(seconds=10))
    short = {"labels": {"alertname": "Short", "node": "r02-n03"}, "endsAt": ends}
    assert client.post("/api/v2/alerts", json=[NODE_DOWN, short], headers=AUTH).status_code == 200
    assert {a["labels"]["alertname"] for a in client.get("/api/v2/alerts").json()} == {"NodeDown", "Short"}
    clock.advance(11)  # no tick yet: the store still has it firing
    assert [a["labels"]["alertname"] for a in client.get("/api/v2/alerts").json()] == ["NodeDown"]
    groups = client.get("/api/v2/alerts/groups").json()
    assert [a["labels"]["alertname"] for g in groups for a in g["alerts"]] == ["NodeDown"]


def test_an_ha_peers_late_firing_webhook_of_a_resolved_alert_does_not_reopen_it(
    client: TestClient, engine: IncidentEngine
) -> None:
    """Alertmanager HA: the peer that lost the race sends the firing group it read before the resolution
    (same ``startsAt``) after the other peer delivered the resolution; a new activity still reopens."""
    resolved = _webhook("resolved")
    resolved["alerts"][0]["endsAt"] = "2026-01-01T00:00:30Z"  # type: ignore[index]
    for payload in (_webhook(), resolved):
        assert client.post("/api/v1/webhook/alertmanager", json=payload, headers=AUTH).status_code == 200
    engine.clock.advance(3600)  # type: ignore[attr-defined]
    engine.tick()
    (item,) = client.get("/api/v1/incidents").json()
    assert item["state"] == "resolved"
    for payload in (_webhook(), resolved):  # the late peer: its firing, then its resolution
        assert client.post("/api/v1/webhook/alertmanager", json=payload, headers=AUTH).status_code == 200
    engine.tick()
    detail = client.get(f"/api/v1/incidents/{item['id']}").json()
    assert detail["state"] == "resolved"
    assert [e["kind"] for e in detail["timeline"]].count("reopened") == 0
    assert client.get("/api/v2/alerts").json() == []
    again = _webhook()
    again["alerts"][0]["startsAt"] = "2026-01-01T00:30:00Z"  # type: ignore[index]
    assert client.post("/api/v1/webhook/alertmanager", json=again, headers=AUTH).status_code == 200
    assert client.get(f"/api/v1/incidents/{item['id']}").json()["state"] == "triggered"


def test_alerts_alertmanager_left_out_of_a_webhook_are_counted_and_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """``max_alerts`` on the webhook_config: Alertmanager sends the first alerts of the group and says how
    many it left out (``truncatedAlerts``); those faults open nothing, so the operator must hear of it."""
    payload = {**_webhook(), "truncatedAlerts": 2}
    with caplog.at_level("WARNING", logger="gpuwarden.api"):
        for _ in range(2):  # a repeat notification is cut again
            assert client.post("/api/v1/webhook/alertmanager", json=payload, headers=AUTH).status_code == 200
    assert "gpuwarden_webhook_truncated_alerts_total 4.0" in client.get("/metrics").text
    assert 'left 2 alert(s) of group {}:{alertname="NodeDown"} out' in caplog.text
    assert "max_alerts" in caplog.text
    assert client.post("/api/v1/webhook/alertmanager", json=_webhook(), headers=AUTH).status_code == 200
    assert "gpuwarden_webhook_truncated_alerts_total 4.0" in client.get("/metrics").text
