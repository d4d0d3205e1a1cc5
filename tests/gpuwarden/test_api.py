from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy.orm import Session

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.inventory_file import load_inventory
from alerting.migrate import upgrade
from alerting.outbox import Outbox
from alerting.outbox_pauses import keep_pause
from exporters.simulated import sim_job_id
from gpuwarden.api import create_app, inventory_from_fleet
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config import ApiConfig, SimConfig
from gpuwarden.model import WorkloadKind, WorkloadRef, label_fingerprint
from gpuwarden.sim.fleet import fleet_from_config
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
    assert client.post("/api/v2/alerts", json=big, headers=AUTH).status_code == 413
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


def test_detail_ack_and_postmortem(client: TestClient) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    path = f"/api/v1/incidents/{item['id']}"
    assert client.post(f"{path}/ack", json={"by": "alice"}).status_code == 401
    acked = client.post(f"{path}/ack", json={"by": "alice"}, headers=AUTH).json()
    assert acked["state"] == "acknowledged"
    detail = client.get(path).json()
    assert detail["timeline"][-1]["message"] == "acknowledged by alice"
    assert detail["alerts"][0]["labels"]["node"] == "r02-n03"
    md = client.get(f"{path}/postmortem")
    assert md.headers["content-type"].startswith("text/markdown")
    for heading in ("## Impact", "## Root cause", "## Timeline", "## Actions", "MTTD", "MTTR"):
        assert heading in md.text
    assert client.get("/api/v1/incidents/inc-nope").status_code == 404


def test_mitigate_note_and_silence_an_incident(client: TestClient, engine: IncidentEngine) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    path = f"/api/v1/incidents/{item['id']}"
    assert client.post(f"{path}/mitigate", json={"action": "reboot"}).status_code == 401
    refused = client.post(f"{path}/mitigate", json={"by": "alice"}, headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (400, "action")
    mitigating = client.post(
        f"{path}/mitigate", json={"action": "power-cycling r02-n03", "by": "alice"}, headers=AUTH
    )
    assert mitigating.status_code == 200 and mitigating.json()["state"] == "mitigating"
    noted = client.post(f"{path}/notes", json={"text": "BMC says PSU 2 failed", "by": "bob"}, headers=AUTH)
    assert noted.status_code == 200
    blank = client.post(f"{path}/notes", json={"text": "  "}, headers=AUTH)
    assert (blank.status_code, error_field(blank)) == (400, "text")
    # What PostgreSQL would refuse is refused on every store, naming the field, not answered 503.
    nul = client.post(f"{path}/notes", json={"text": "a\u0000b"}, headers=AUTH)
    assert (nul.status_code, error_field(nul)) == (400, "text")
    long_name = client.post(f"{path}/ack", json={"by": "x" * 200}, headers=AUTH)
    assert (long_name.status_code, error_field(long_name)) == (400, "by")
    # A name is one line: "bob\nEVIL: ..." was posted in the Slack thread as "note by bob" and a forged line.
    for forged in ("bob\nEVIL: approved", "bob\u202eevil", "bob\x1b[2J"):
        two_lines = client.post(f"{path}/notes", json={"text": "hi", "by": forged}, headers=AUTH)
        assert (two_lines.status_code, error_field(two_lines)) == (400, "by"), forged
    silence = {**SILENCE, "createdBy": "y" * 300}
    refused_silence = client.post("/api/v2/silences", json=silence, headers=AUTH)
    assert (refused_silence.status_code, error_field(refused_silence)) == (400, "createdBy")
    bad = client.post(f"{path}/silence", json={"duration": "an hour"}, headers=AUTH)
    assert (bad.status_code, error_field(bad)) == (400, "duration")
    assert client.get(path).json()["silenced_until"] is None
    silenced = client.post(f"{path}/silence", json={"duration": "1h30m", "by": "carol"}, headers=AUTH)
    assert (silenced.status_code, silenced.json()["silenced_until"]) == (200, "2026-01-01T01:30:00Z")
    assert (silenced.json()["changed"], silenced.json()["message"]) == (True, "silenced for 1h30m by carol")
    assert client.get(path).json()["silenced_until"] == "2026-01-01T01:30:00Z"
    assert client.get("/api/v1/incidents").json()[0]["silenced_until"] == "2026-01-01T01:30:00Z"
    assert [e["message"] for e in client.get(path).json()["timeline"]][-3:] == [
        "mitigating: power-cycling r02-n03",
        "note by bob: BMC says PSU 2 failed",
        "silenced for 1h30m by carol",
    ]
    (silence,) = engine.all_silences()
    assert (silence.comment, rfc3339(silence.ends_at)) == (f"silence of {item['id']}", "2026-01-01T01:30:00Z")
    # Not an Alertmanager silence (it has no matchers, which Alertmanager refuses and shows as muting
    # everything): not listed there, though an alert it mutes names it in silencedBy, whose id answers.
    assert client.get("/api/v2/silences").json() == []
    (muted,) = client.get("/api/v2/alerts").json()
    assert muted["status"]["silencedBy"] == [silence.id]
    assert client.get(f"/api/v2/silence/{silence.id}").json()["comment"] == f"silence of {item['id']}"
    for _ in range(3):  # the same button pressed again, a replayed request: one silence, one entry
        again = client.post(f"{path}/silence", json={"duration": "1h30m", "by": "carol"}, headers=AUTH)
        assert again.status_code == 200
        # As ack's repeat: said, the detail's shape kept (the walk-through's repeat said nothing of it).
        assert (again.json()["changed"], again.json()["message"]) == (
            False,
            "already silenced until 2026-01-01T01:30:00Z by carol",
        )
        assert again.json()["silenced_until"] == "2026-01-01T01:30:00Z"
    assert len(engine.all_silences()) == 1
    # 4 min longer than the 1h30m that holds: not a material extension, a repeat too.
    longer = client.post(f"{path}/silence", json={"duration": "1h34m", "by": "dan"}, headers=AUTH)
    assert longer.status_code == 200 and not longer.json()["changed"] and len(engine.all_silences()) == 1
    much_longer = client.post(f"{path}/silence", json={"duration": "4h", "by": "dan"}, headers=AUTH)
    assert much_longer.json()["silenced_until"] == "2026-01-01T04:00:00Z" and len(engine.all_silences()) == 2
    assert [e["message"] for e in client.get(path).json()["timeline"]].count(
        "silenced for 1h30m by carol"
    ) == 1
    assert "note by bob: BMC says PSU 2 failed" in client.get(f"{path}/postmortem").text
    assert (
        client.post("/api/v1/incidents/inc-nope/notes", json={"text": "x"}, headers=AUTH).status_code == 404
    )


def test_a_resolved_incident_takes_notes_but_cannot_be_mitigated_acknowledged_or_silenced(
    client: TestClient, engine: IncidentEngine
) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    resolved = {**NODE_DOWN, "endsAt": "2026-01-01T00:00:00Z"}
    client.post("/api/v2/alerts", json=[resolved], headers=AUTH)
    engine.clock.advance(engine.config.quiet_period_seconds + 1)  # type: ignore[attr-defined]
    engine.tick()
    (item,) = client.get("/api/v1/incidents").json()
    assert item["state"] == "resolved"
    path = f"/api/v1/incidents/{item['id']}"
    assert (
        client.post(f"{path}/notes", json={"text": "root cause: PDU breaker"}, headers=AUTH).status_code
        == 200
    )
    for action, body in (("mitigate", {"action": "reboot"}), ("ack", {}), ("silence", {"duration": "1h"})):
        refused = client.post(f"{path}/{action}", json={"by": "ana", **body}, headers=AUTH)
        assert (refused.status_code, error_field(refused)) == (409, "incident"), action
    assert engine.all_silences() == []  # the refused silence was not made


def test_silence_api_mutes_matching_alerts(client: TestClient, engine: IncidentEngine) -> None:
    silence = {
        "matchers": [{"name": "node", "value": "r02-.*", "isRegex": True}],
        "startsAt": "2025-12-31T00:00:00Z",
        "endsAt": "2026-01-02T00:00:00Z",
        "createdBy": "bob",
        "comment": "planned",
    }
    response = client.post("/api/v2/silences", json=silence, headers=AUTH)
    assert response.status_code == 200 and response.json()["silenceID"]
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    assert client.get("/api/v1/incidents").json() == []
    assert client.get("/api/v2/silences").json()[0]["status"]["state"] == "active"


def test_a_silence_that_would_match_every_alert_is_refused_and_not_made(client: TestClient) -> None:
    times = {"startsAt": "2025-12-31T00:00:00Z", "endsAt": "2026-01-02T00:00:00Z", "createdBy": "bob"}
    everything = (
        [{"name": "a", "value": "", "isRegex": False}],
        [{"name": "a", "value": ".*", "isRegex": True}],
        [{"name": "a", "value": "", "isRegex": False}, {"name": "b", "value": "", "isRegex": True}],
    )
    for matchers in everything:
        refused = client.post("/api/v2/silences", json={"matchers": matchers, **times}, headers=AUTH)
        assert (refused.status_code, error_field(refused)) == (400, "matchers"), matchers
    assert client.get("/api/v2/silences").json() == []
    one_real = [
        {"name": "a", "value": ".*", "isRegex": True},
        {"name": "node", "value": "r02-n03", "isRegex": False},
    ]
    assert (
        client.post("/api/v2/silences", json={"matchers": one_real, **times}, headers=AUTH).status_code == 200
    )


def test_a_shorter_silence_by_someone_else_is_made_when_nothing_covers_it(
    client: TestClient, engine: IncidentEngine
) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    path = f"/api/v1/incidents/{item['id']}/silence"
    client.post(path, json={"duration": "1m", "by": "alice"}, headers=AUTH)
    engine.clock.advance(50)  # type: ignore[attr-defined]
    client.post(path, json={"duration": "5m", "by": "bob"}, headers=AUTH)  # alice's ends in 10 s
    ends = sorted(rfc3339(s.ends_at) for s in engine.all_silences())
    assert ends == ["2026-01-01T00:01:00Z", "2026-01-01T00:05:50Z"]
    engine.clock.advance(60)  # type: ignore[attr-defined]
    client.post(path, json={"duration": "1m", "by": "bob"}, headers=AUTH)  # his own covers it: a repeat
    assert len(engine.all_silences()) == 2


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


def test_simulated_fleet_adapts_to_an_inventory_with_placement_and_spare() -> None:
    fleet = fleet_from_config(SimConfig(racks_per_cluster=2, nodes_per_rack=2), FakeClock())
    inventory = inventory_from_fleet(fleet)
    node = fleet.nodes[0]
    info = inventory.node(node.name)
    assert info is not None and (info.cluster, info.rack, info.gpu_count) == (
        node.cluster,
        node.rack,
        len(node.gpus),
    )
    placed = {w.ref for w in inventory.workloads()}
    simulated = [*fleet.inference_services(), *fleet.training_jobs()]
    assert {replace(r, cluster="") for r in placed} == {w.ref for w in simulated}
    cluster_of = {n.name: n.cluster for n in fleet.nodes}
    for w in inventory.workloads():  # each in the cluster of its GPUs
        assert {cluster_of[gpu[1]] for gpu in w.gpus} == {gpu[0] for gpu in w.gpus} == {w.ref.cluster}
    total = sum(len(n.gpus) for n in fleet.nodes)
    used = len({g for w in inventory.workloads() for g in w.gpus})
    assert inventory.spare_gpus(node.cluster) == total - used


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


def test_incident_list_filters_caps_and_counts(client: TestClient) -> None:
    nodes = ["r01-n01", "r02-n02", "r03-n03"]
    for node in nodes:
        alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": node}}
        assert client.post("/api/v2/alerts", json=[alert], headers=AUTH).status_code == 200
    capped = client.get("/api/v1/incidents", params={"limit": 2})
    assert (len(capped.json()), capped.headers["X-Total-Count"]) == (2, "3")
    full = client.get("/api/v1/incidents", params={"state": "triggered", "priority": "P2"})
    assert (len(full.json()), full.headers["X-Total-Count"]) == (3, "3")
    assert [i["alert_count"] for i in full.json()] == [1, 1, 1]
    assert client.get("/api/v1/incidents", params={"priority": "P0"}).json() == []
    huge, digit = {"limit": "99999999999999999999"}, {"limit": "\u00b2"}  # past 64 bits; a superscript two
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        (huge, "limit"),
        (digit, "limit"),
        ({"state": "open"}, "state"),
    ):
        refused = client.get("/api/v1/incidents", params=params)
        assert (refused.status_code, error_field(refused)) == (400, field)


def _down(node: str, ends: str | None = None) -> list[dict[str, object]]:
    alert: dict[str, object] = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": node}}
    return [{**alert, "endsAt": ends}] if ends else [alert]


def test_a_reopened_incident_lists_by_when_it_reopened(client: TestClient, engine: IncidentEngine) -> None:
    clock: FakeClock = engine.clock  # type: ignore[assignment]
    assert client.post("/api/v2/alerts", json=_down("r01-n01"), headers=AUTH).status_code == 200
    clock.advance(60)
    client.post("/api/v2/alerts", json=_down("r01-n01", rfc3339(clock.now())), headers=AUTH)
    clock.advance(engine.config.quiet_period_seconds + 1)
    engine.tick()  # resolved
    for node in ("r02-n02", "r03-n03"):
        clock.advance(60)
        client.post("/api/v2/alerts", json=_down(node), headers=AUTH)
    clock.advance(60)
    client.post("/api/v2/alerts", json=_down("r01-n01"), headers=AUTH)  # fires again: reopens
    listed = client.get("/api/v1/incidents", params={"limit": 1}).json()
    assert [i["root_cause"]["target"]["name"] for i in listed] == ["r01-n01"]
    (first,) = listed
    assert first["state"] == "triggered" and first["last_opened_at"] == rfc3339(clock.now())
    assert first["opened_at"] == "2026-01-01T00:00:00Z"  # when it first opened, as before
    others = client.get("/api/v1/incidents").json()[1:]
    assert [i["last_opened_at"] == i["opened_at"] for i in others] == [True, True]


def test_an_incident_merged_into_another_is_listed_as_resolved_saying_where_it_went(
    client: TestClient, engine: IncidentEngine
) -> None:
    clock: FakeClock = engine.clock  # type: ignore[assignment]
    hot = {"alertname": "GPUTemperatureHigh", "cluster": "c1", "gpu": "2"}
    for n in (1, 2, 3):  # a hot GPU on a third node of the rack: the first two fold into the rack's
        client.post("/api/v2/alerts", json=[{"labels": {**hot, "node": f"r06-n0{n}"}}], headers=AUTH)
        clock.advance(40)
    listed = client.get("/api/v1/incidents").json()
    (rack,) = [i for i in listed if i["state"] != "resolved"]
    merged = [i for i in listed if i["merged_into"]]
    assert len(merged) == 2 and len(listed) == 3 and rack["merged_into"] is None
    assert {(i["state"], i["merged_into"]) for i in merged} == {("resolved", rack["id"])}
    resolved = client.get("/api/v1/incidents", params={"state": "resolved"})
    assert [i["id"] for i in resolved.json()] == [i["id"] for i in merged]
    assert resolved.headers["X-Total-Count"] == "2"
    assert client.get("/api/v1/incidents", params={"limit": 1}).headers["X-Total-Count"] == str(len(listed))


def test_alertmanager_read_api_lists_alerts_and_expires_and_replaces_silences(
    client: TestClient, engine: IncidentEngine
) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    matchers = [{"name": "node", "value": "r02-n03", "isRegex": False}]
    body = {"matchers": matchers, "startsAt": "2025-12-31T00:00:00Z", "endsAt": "2026-01-02T00:00:00Z"}
    first = client.post("/api/v2/silences", json=body, headers=AUTH).json()["silenceID"]
    (alert,) = client.get("/api/v2/alerts", params={"silenced": "true"}).json()
    assert alert["status"] == {"state": "suppressed", "silencedBy": [first], "inhibitedBy": []}
    assert client.get("/api/v2/alerts", params={"silenced": "false"}).json() == []
    assert client.get("/api/v2/alerts", params={"filter": 'node="other"'}).json() == []
    assert error_field(client.get("/api/v2/alerts", params={"filter": "node=~("})) == "filter"
    assert error_field(client.get("/api/v2/alerts", params={"active": "maybe"})) == "active"

    moved = {**body, "id": first, "startsAt": "2025-12-31T06:00:00Z"}  # an active one's start: a new silence
    second = client.post("/api/v2/silences", json=moved, headers=AUTH).json()["silenceID"]
    states = {s["id"]: s["status"]["state"] for s in client.get("/api/v2/silences").json()}
    assert states == {first: "expired", second: "active"}
    assert client.delete(f"/api/v2/silence/{second}", headers=AUTH).status_code == 200
    assert client.get(f"/api/v2/silence/{second}").json()["status"]["state"] == "expired"
    assert client.delete("/api/v2/silence/sil-nope", headers=AUTH).status_code == 404
    assert client.delete(f"/api/v2/silence/{first}").status_code == 401
    assert client.post("/api/v2/silences", json={**body, "id": "sil-nope"}, headers=AUTH).status_code == 404
    engine.tick()  # the silence is over: the alert it held back opens its incident
    assert [i["alert_count"] for i in client.get("/api/v1/incidents").json()] == [1]


def test_a_silence_created_to_start_in_the_past_starts_now_as_in_alertmanager(client: TestClient) -> None:
    """Alertmanager's ``Silences.Set`` moves a new silence's past startsAt to now: it mutes from when it was
    set. Posted back unchanged (amtool, Grafana), the active silence is updated in place, keeping its id."""
    body = {
        "matchers": [{"name": "node", "value": "r02-n03", "isRegex": False}],
        "startsAt": "2025-12-31T00:00:00Z",
        "endsAt": "2026-01-02T00:00:00Z",
    }
    made = client.post("/api/v2/silences", json=body, headers=AUTH).json()["silenceID"]
    shown = client.get(f"/api/v2/silence/{made}").json()
    assert shown["startsAt"] == "2026-01-01T00:00:00Z"  # the fake clock's now
    again = {**body, "id": made, "startsAt": shown["startsAt"], "comment": "longer"}
    assert client.post("/api/v2/silences", json=again, headers=AUTH).json()["silenceID"] == made


def test_silences_are_listed_by_filter_as_alertmanager_compares_them(client: TestClient) -> None:
    def add(*matchers: dict[str, object]) -> str:
        body = {**SILENCE, "matchers": list(matchers)}
        response = client.post("/api/v2/silences", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        return str(response.json()["silenceID"])

    a1, a3 = (
        add({"name": "a", "value": "1", "isRegex": False}),
        add({"name": "a", "value": "3", "isRegex": False}),
    )
    # Only negative matchers: "everything but the watchdog", which Alertmanager takes.
    watchdog = add({"name": "alertname", "value": "Watchdog", "isRegex": False, "isEqual": False})
    regex = add({"name": "env", "value": "prod.*", "isRegex": True, "isEqual": False})

    def listed(*filters: str) -> set[str]:
        response = client.get("/api/v2/silences", params={"filter": list(filters)})
        assert response.status_code == 200, response.text
        return {s["id"] for s in response.json()}

    assert listed() == {a1, a3, watchdog, regex}
    # As Alertmanager's api/v2 compares them: a filter matcher lists the silences that have that very matcher
    # (name, operator and value), so `amtool silence query a=3` is not every silence (expire would end them)
    # and `amtool silence query alertname=Watchdog` is not the silence muting everything BUT the watchdog.
    assert listed('a="3"') == listed("a=3") == {a3}
    assert listed('a=~"1|3"') == listed('a!="3"') == listed('a=""') == set()  # no silence has that matcher
    assert listed('alertname="Watchdog"') == set()
    assert listed('alertname!="Watchdog"') == {watchdog}
    assert listed('env!~"prod.*"') == {regex}
    assert listed('env=~"prod.*"') == listed('env!~"prod"') == set()
    assert listed("a=3", 'alertname!="Watchdog"') == set()  # every filter matcher must be one of its own
    assert error_field(client.get("/api/v2/silences", params={"filter": "a~~1"})) == "filter"
    for everything in (
        [{"name": "a", "value": "", "isRegex": False}],
        [{"name": "a", "value": ".*", "isRegex": True}],
    ):
        refused = client.post("/api/v2/silences", json={**SILENCE, "matchers": everything}, headers=AUTH)
        assert (refused.status_code, error_field(refused)) == (400, "matchers")


def test_alerts_are_listed_by_receiver_and_the_receiver_is_listed(client: TestClient) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    assert client.get("/api/v2/receivers").json() == [{"name": "gpuwarden"}]
    assert len(client.get("/api/v2/alerts", params={"receiver": "gpu.*"}).json()) == 1
    assert client.get("/api/v2/alerts", params={"receiver": "gpu"}).json() == []  # anchored
    assert error_field(client.get("/api/v2/alerts", params={"receiver": "("})) == "receiver"


def test_alertmanager_api_400s_are_json_strings_as_amtool_reads_them(client: TestClient) -> None:
    refused = client.post("/api/v2/alerts", json=[{"labels": {}}], headers=AUTH)
    assert refused.status_code == 400 and isinstance(refused.json(), str)
    assert refused.json().startswith(error_field(refused) + ": ")
    assert isinstance(client.get("/api/v1/incidents", params={"limit": "0"}).json(), dict)  # gpuwarden's own


@pytest.mark.parametrize(
    ("value", "listed"),
    [("yes", 1), ("On", 1), ("", 1), ("no", 0), ("off", 0), ("f", 0)],
    ids=["yes", "On", "empty", "no", "off", "f"],
)
def test_a_flag_is_read_as_alertmanager_reads_it(client: TestClient, value: str, listed: int) -> None:
    """Alertmanager (go-openapi's ConvertBool) reads yes, on, ok... as true and an empty value as absent;
    amtool and scripts written against it send them. A typo is still refused (test above)."""
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    response = client.get("/api/v2/alerts", params={"active": value})
    assert (response.status_code, len(response.json())) == (200, listed)


def test_a_body_that_breaks_alertmanagers_schema_is_unprocessable_naming_the_field(
    client: TestClient, engine: IncidentEngine
) -> None:
    """Alertmanager answers 422 to a matcher without ``isRegex`` (taking it as false silenced by name what
    may have been meant as a regex) and to a ``generatorURL`` that is no URI; nothing is stored."""
    alert = {**NODE_DOWN, "generatorURL": "prometheus"}
    refused = client.post("/api/v2/alerts", json=[alert], headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (422, "[0].generatorURL")
    silence = {**SILENCE, "matchers": [{"name": "node", "value": "r02-n0[1-3]"}]}
    refused = client.post("/api/v2/silences", json=silence, headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (422, "matchers[0].isRegex")
    assert engine.store.alert_count() == 0 and client.get("/api/v2/silences").json() == []


SILENCE = {
    "matchers": [{"name": "node", "value": "r02-n03", "isRegex": False}],
    "startsAt": "2026-01-01T00:00:00Z",  # now, as the fake clock has it: a past one would be moved to now
    "endsAt": "2026-01-02T00:00:00Z",
    "createdBy": "bob",
}


UNKNOWN_SILENCE = "/api/v2/silence/sil-000000000000"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "field"),
    [
        ("GET", "/api/v2/nope", None, 404, 404, "path"),
        ("PUT", "/api/v2/alerts", None, 405, 405, "method"),
        ("GET", UNKNOWN_SILENCE, None, 404, 404, "silenceID"),
        ("POST", "/api/v2/alerts", [{"annotations": {"a": "b"}}], 422, 602, "[0].labels"),
        ("POST", "/api/v2/alerts", [{**NODE_DOWN, "generatorURL": "x"}], 422, 601, "[0].generatorURL"),
        ("POST", "/api/v2/silences", {k: v for k, v in SILENCE.items() if k != "matchers"}, 422, 602,
         "matchers"),
        ("POST", "/api/v2/silences", {**SILENCE, "matchers": []}, 422, 612, "matchers"),
        ("POST", "/api/v2/silences", {k: v for k, v in SILENCE.items() if k != "endsAt"}, 422, 602, "endsAt"),
        ("POST", "/api/v2/silences", {**SILENCE, "startsAt": None}, 422, 602, "startsAt"),
        ("POST", "/api/v2/silences", {**SILENCE, "matchers": [{"name": "a", "value": "b"}]}, 422, 602,
         "matchers[0].isRegex"),
    ],
    ids=["unknown-path", "wrong-method", "unknown-silence", "no-labels", "generator-not-uri", "no-matchers",
         "empty-matchers", "no-ends-at", "null-starts-at", "matcher-no-is-regex"],
)  # fmt: skip
def test_alertmanager_api_other_errors_are_go_openapis_code_and_message_naming_the_field(
    client: TestClient,
    engine: IncidentEngine,
    method: str,
    path: str,
    body: Any,
    status: int,
    code: int,
    field: str,
) -> None:
    """Alertmanager 0.25 answers these with go-openapi's ``{"code", "message"}`` (measured: 404 and 405 as
    the status, 422 with the failed schema rule's code: 602 required, 601 format, 612 too few items), and a
    required field missing is its 422, not a 400; a client reads ``message``. Nothing is
    stored."""
    refused = client.request(method, path, json=body, headers=AUTH)
    assert refused.status_code == status
    assert refused.json()["code"] == code
    assert refused.json()["message"].startswith(f"{field}: ") and error_field(refused) == field
    assert engine.store.alert_count() == 0 and client.get("/api/v2/silences").json() == []


def test_a_silence_update_of_an_unknown_id_is_a_json_string_as_alertmanagers_spec_declares(
    client: TestClient,
) -> None:
    refused = client.post("/api/v2/silences", json={**SILENCE, "id": "sil-nope"}, headers=AUTH)
    assert refused.status_code == 404 and isinstance(refused.json(), str) and "sil-nope" in refused.json()


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"startsAt": "2026-01-01T01:00:00Z", "endsAt": "2026-01-01T00:01:00Z"}, 400, "endsAt"),
        ({"endsAt": "2025-12-31T12:00:00Z"}, 400, "endsAt"),
        ({"matchers": [{"name": "node", "value": "(", "isRegex": True}]}, 400, "matchers[0].value"),
        ({"id": "sil-nope"}, 404, None),
    ],
    ids=["ends-before-it-starts", "ends-in-the-past", "bad-matcher", "unknown-id"],
)
def test_a_refused_silence_update_changes_nothing(
    client: TestClient, change: dict[str, object], status: int, field: str | None
) -> None:
    first = client.post("/api/v2/silences", json=SILENCE, headers=AUTH).json()["silenceID"]
    before = client.get("/api/v2/silences").json()
    refused = client.post("/api/v2/silences", json={**SILENCE, "id": first, **change}, headers=AUTH)
    assert refused.status_code == status
    if field is not None:
        assert error_field(refused) == field
    assert client.get("/api/v2/silences").json() == before  # the original is still active, alone


@pytest.mark.parametrize(
    "ends",
    ["2025-12-31T12:00:00Z", "2026-01-01T00:00:00Z"],
    ids=["in-the-past", "now"],
)
def test_a_new_silence_that_has_already_ended_is_refused(client: TestClient, ends: str) -> None:
    refused = client.post("/api/v2/silences", json={**SILENCE, "endsAt": ends}, headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (400, "endsAt")
    assert client.get("/api/v2/silences").json() == []


PENDING = {"startsAt": "2026-01-01T06:00:00Z", "endsAt": "2026-01-01T08:00:00Z"}


@pytest.mark.parametrize(
    ("original", "change", "same_id"),
    [
        ({}, {"endsAt": "2026-01-03T00:00:00Z", "comment": "longer"}, True),
        ({}, {"endsAt": "2026-01-01T00:30:00Z"}, True),
        ({}, {"startsAt": "2026-01-01T00:00:00.250Z"}, True),
        ({}, {"startsAt": "2025-12-31T06:00:00Z"}, False),
        ({}, {"matchers": [{"name": "node", "value": "r02-n04", "isRegex": False}]}, False),
        ({}, {"maintenance": True}, False),
        (PENDING, {"startsAt": "2026-01-01T03:00:00Z"}, True),
        (PENDING, {"startsAt": "2025-12-31T23:00:00Z"}, False),
    ],
    ids=[
        "active-longer",
        "active-shorter",
        "active-start-same-second",
        "active-start-moved",
        "matchers-changed",
        "kind-changed",
        "pending-start-moved-ahead",
        "pending-start-moved-into-the-past",
    ],
)
def test_a_silence_update_keeps_the_id_when_alertmanager_would(
    client: TestClient, original: dict[str, str], change: dict[str, object], same_id: bool
) -> None:
    first = client.post("/api/v2/silences", json={**SILENCE, **original}, headers=AUTH).json()["silenceID"]
    body = {**SILENCE, **original, **change, "id": first}
    updated = client.post("/api/v2/silences", json=body, headers=AUTH).json()["silenceID"]
    silences = {s["id"]: s for s in client.get("/api/v2/silences").json()}
    assert (updated == first) is same_id
    assert silences[updated]["endsAt"] == body["endsAt"]
    assert silences[updated]["comment"] == body.get("comment", "")
    if not same_id:  # the old one ends now, as a record of what it muted
        assert silences[first]["status"]["state"] == "expired"
    assert len(silences) == 1 + (not same_id)


def test_a_maintenance_window_read_and_posted_back_stays_a_window(client: TestClient) -> None:
    # amtool and Grafana post back what they read, longer; they do not send `maintenance`.
    first = client.post("/api/v2/silences", json={**SILENCE, "maintenance": True}, headers=AUTH).json()
    read = client.get(f"/api/v2/silence/{first['silenceID']}").json()
    assert read["maintenance"] is True
    body = {k: read[k] for k in ("id", "matchers", "startsAt", "createdBy", "comment")}
    body["endsAt"] = (datetime.fromisoformat(read["endsAt"]) + timedelta(hours=1)).isoformat()
    again = client.post("/api/v2/silences", json=body, headers=AUTH).json()["silenceID"]
    assert again == first["silenceID"]  # updated in place, and still a maintenance window
    assert client.get(f"/api/v2/silence/{again}").json()["maintenance"] is True


def test_a_window_posted_by_createdby_config_is_a_stored_silence_not_a_configured_one(
    client: TestClient,
) -> None:
    # Only the config file's windows are configured; the API's, whatever createdBy says, are stored:
    # listed once, and expired like any silence.
    posted = {**SILENCE, "maintenance": True, "createdBy": "config"}
    sid = client.post("/api/v2/silences", json=posted, headers=AUTH).json()["silenceID"]
    assert [s["id"] for s in client.get("/api/v2/silences").json()].count(sid) == 1
    assert client.delete(f"/api/v2/silence/{sid}", headers=AUTH).status_code == 200
    assert client.get(f"/api/v2/silence/{sid}").json()["status"]["state"] == "expired"


def test_updating_an_expired_silence_makes_a_new_one(client: TestClient) -> None:
    first = client.post("/api/v2/silences", json=SILENCE, headers=AUTH).json()["silenceID"]
    client.delete(f"/api/v2/silence/{first}", headers=AUTH)
    expired = client.get(f"/api/v2/silence/{first}").json()
    second = client.post("/api/v2/silences", json={**SILENCE, "id": first}, headers=AUTH).json()["silenceID"]
    assert second != first
    assert client.get(f"/api/v2/silence/{first}").json() == expired
    assert client.get(f"/api/v2/silence/{second}").json()["status"]["state"] == "active"


def test_a_silences_updated_at_says_when_it_was_set_updated_in_place_or_expired(
    client: TestClient, engine: IncidentEngine
) -> None:
    # updatedAt was the silence's startsAt whatever happened to it; Alertmanager 0.25 answers the time it was
    # set, updated in place or expired (measured here), which is what amtool and Grafana show as "updated".
    clock: FakeClock = engine.clock  # type: ignore[assignment]
    sid = client.post("/api/v2/silences", json=SILENCE, headers=AUTH).json()["silenceID"]
    assert client.get(f"/api/v2/silence/{sid}").json()["updatedAt"] == "2026-01-01T00:00:00Z"
    clock.advance(90)
    longer = {**SILENCE, "id": sid, "endsAt": "2026-01-03T00:00:00Z"}
    assert client.post("/api/v2/silences", json=longer, headers=AUTH).json()["silenceID"] == sid
    updated = client.get(f"/api/v2/silence/{sid}").json()
    assert (updated["startsAt"], updated["updatedAt"]) == (SILENCE["startsAt"], "2026-01-01T00:01:30Z")
    clock.advance(60)
    client.delete(f"/api/v2/silence/{sid}", headers=AUTH)
    (listed,) = client.get("/api/v2/silences").json()
    assert (listed["status"]["state"], listed["updatedAt"]) == ("expired", "2026-01-01T00:02:30Z")


def test_a_silence_stored_before_migration_0014_reports_its_start_as_updated_at(tmp_path: Path) -> None:
    sql = make_engine(str(tmp_path / "old.db"))
    upgrade(sql, "0012_silence_order")
    with sql.begin() as conn:  # as the previous release stored it: no updated_at column
        conn.exec_driver_sql(
            "INSERT INTO silences (id, kind, matchers, starts_at, ends_at, created_by, comment, seq)"
            ' VALUES (\'sil-old\', \'silence\', \'[{"name": "node", "value": "n1", "isRegex": false}]\','
            " '2025-12-31 00:00:00.000000', '2026-01-02 00:00:00.000000', 'bob', '', 1)"
        )
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock())
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)))) as c:
        old = c.get("/api/v2/silence/sil-old").json()
        assert (old["startsAt"], old["updatedAt"]) == ("2025-12-31T00:00:00Z", "2025-12-31T00:00:00Z")


def test_alertmanager_probe_paths_answer(client: TestClient) -> None:
    assert [client.get(p).status_code for p in ("/healthz", "/-/healthy", "/-/ready")] == [200, 200, 200]


def test_alert_groups_are_incidents_for_grafana(client: TestClient) -> None:
    rack = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": f"r02-n0{n}"}} for n in (1, 2)]
    muted = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r05-n01"}}
    window = {
        "matchers": [{"name": "node", "value": "r05-n01", "isRegex": False}],
        "startsAt": "2025-12-31T00:00:00Z",
        "endsAt": "2026-01-02T00:00:00Z",
    }
    client.post("/api/v2/silences", json=window, headers=AUTH)
    client.post("/api/v2/alerts", json=[*rack, muted], headers=AUTH)
    (incident,) = client.get("/api/v1/incidents").json()
    groups = {g["labels"].get("incident"): g for g in client.get("/api/v2/alerts/groups").json()}
    assert set(groups) == {incident["id"], None}
    group = groups[incident["id"]]
    assert group["labels"]["priority"] == incident["priority"] and group["receiver"] == {"name": "gpuwarden"}
    assert sorted(a["labels"]["node"] for a in group["alerts"]) == ["r02-n01", "r02-n02"]
    assert [a["status"]["state"] for a in groups[None]["alerts"]] == ["suppressed"]
    assert "gpuwarden_alerts_muted_firing 1.0" in client.get("/metrics").text
    active_only = client.get("/api/v2/alerts/groups", params={"silenced": "false"}).json()
    assert [g["labels"].get("incident") for g in active_only] == [incident["id"]]


def test_the_inventory_is_served_as_an_inventory_file_that_reads_back(
    client: TestClient, engine: IncidentEngine, tmp_path: Path
) -> None:
    engine.inventory_source = "sim"
    response = client.get("/api/v1/inventory")
    assert response.status_code == 200
    data = response.json()
    about = data.pop("about")
    assert about["source"] == "sim" and about["read_at"].endswith("Z") and about["refresh_failures"] == 0
    # what the file format does not carry, beside it: each node's and workload's state
    assert [(n["cluster"], n["name"]) for n in about["node_states"]] == [
        (n["cluster"], n["name"]) for n in data["nodes"]
    ]
    assert {w["state"] for w in about["workload_states"]} == {"running"}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    again = load_inventory(path)  # what alerting.inventory_file would read
    assert engine.inventory is not None
    assert [(w.ref, w.units, w.aliases) for w in again.workloads()] == [
        (w.ref, w.units, w.aliases) for w in engine.inventory.workloads()
    ]
    assert list(again.node_list) == list(engine.inventory.node_list)  # type: ignore[attr-defined]


def test_without_an_inventory_the_api_says_how_to_configure_one(tmp_path: Path) -> None:
    sql = make_engine(str(tmp_path / "bare.db"))
    upgrade(sql)
    bare = IncidentEngine(sql, FakeClock())
    with TestClient(create_app(bare, ApiConfig(token=SecretStr(TOKEN)))) as c:
        response = c.get("/api/v1/inventory")
        assert response.status_code == 404 and "kubernetes_inventory" in error_text(response)
        bare.inventory_source = "kubernetes"  # configured, but its first read failed
        assert "has not been read yet" in error_text(c.get("/api/v1/inventory"))


def test_aliases_pods_and_a_failed_refresh_show_in_the_inventory(tmp_path: Path) -> None:
    sql = make_engine(str(tmp_path / "k.db"))
    upgrade(sql)
    nodes = [NodeInfo("g1", "k1", "r1", 2, ("GPU-a", "GPU-b"))]
    # As the Kubernetes and Slurm sources give them: in their cluster (a file read back infers it anyway).
    service = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama", "k1")
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "llm-70b (41)", "k1")
    workloads = [
        WorkloadInfo(
            service, (frozenset({("k1", "g1", 0)}),), aliases=("llama-70b",), pods=("llama-7f9c-1",)
        ),
        WorkloadInfo(job, (frozenset({("k1", "g1", 1)}),), aliases=("41", "llm-70b")),
    ]
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, inventory=StaticInventory(nodes, workloads, {"k1": 0}))
    engine.inventory_source = "kubernetes"
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)))) as c:
        data = c.get("/api/v1/inventory").json()
        assert data["about"]["stale"] is False and data["about"]["refreshed_sources"] == []
        # What serve's refresh loop records per source: Kubernetes read, Slurm failing since it started.
        engine.inventory_sources = {
            "kubernetes": {"read_at": clock.now(), "failed_at": None},
            "slurm": {"read_at": None, "failed_at": clock.now()},
        }
        about = c.get("/api/v1/inventory").json()["about"]
        assert about["stale"] is True
        assert [(p["name"], p["stale"]) for p in about["refreshed_sources"]] == [
            ("kubernetes", False),
            ("slurm", True),
        ]
    data.pop("about")
    path = tmp_path / "snapshot.yaml"
    path.write_text(yaml.safe_dump(data))
    again = load_inventory(path)
    assert list(again.workloads()) == workloads and list(again.node_list) == nodes
    assert again.find_workload(WorkloadKind.POD, "llama-7f9c-1", "serving") == service
    assert again.find_workload(WorkloadKind.TRAINING_JOB, "41") == job


def test_the_outbox_routes_say_so_when_no_notifier_is_configured_and_check_their_input(
    client: TestClient, engine: IncidentEngine
) -> None:
    answer = client.get("/api/v1/outbox")
    assert answer.status_code == 404 and "no notifier is configured" in error_text(answer)
    assert client.post("/api/v1/outbox/retry").status_code == 401  # a write: the token first
    outbox = Outbox(engine.store.engine, [], FakeClock())
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)) as c:
        assert c.get("/api/v1/outbox").json() == {"counts": {}, "held": 0, "messages": [], "paused": {}}
        assert error_field(c.get("/api/v1/outbox?status=lost")) == "status"
        assert error_field(c.get("/api/v1/outbox?limit=0")) == "limit"
        # A superscript two is a digit to str.isdigit, not to int: it crashed into a 503.
        assert error_field(c.get("/api/v1/outbox", params={"limit": "\u00b2"})) == "limit"
        posted = c.post("/api/v1/outbox/retry", json={"incident": ""}, headers=AUTH)
        assert posted.status_code == 400 and error_field(posted) == "incident"
        done = c.post("/api/v1/outbox/retry", headers=AUTH)
        assert done.json() == {"requeued": 0, "overtaken": 0}
        # An incident that does not exist (a typo) answered 200 having requeued nothing, as if it had none.
        for path, body in (("retry", {}), ("discard", {"notifier": "slack", "dry_run": True})):
            typo = c.post(f"/api/v1/outbox/{path}", json={**body, "incident": "inc-nope"}, headers=AUTH)
            assert (typo.status_code, error_field(typo)) == (404, "incident"), typo.text
            assert "no incident 'inc-nope'" in error_text(typo)
        client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
        (known,) = client.get("/api/v1/incidents").json()
        one = c.post("/api/v1/outbox/retry", json={"incident": known["id"]}, headers=AUTH)
        assert one.json() == {"requeued": 0, "overtaken": 0}
        # Unknown keys were ignored: {"id": 7} (one message, as someone meant it) requeued every failed one.
        widened = c.post("/api/v1/outbox/retry", json={"id": 7}, headers=AUTH)
        assert widened.status_code == 400 and error_field(widened) == "id", widened.text
        assert "incident" in error_text(widened)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "notifier"),
        ({"notifier": " "}, "notifier"),
        ({"notifier": "slack", "statuses": "orphaned"}, "statuses"),
        ({"notifier": "slack", "statuses": ["sent"]}, "statuses"),
        ({"notifier": "slack", "dry_run": "yes"}, "dry_run"),
        ({"notifier": "slack", "by": "x" * 129}, "by"),
        # A name is one line of visible text, by the incident actions' check: it is recorded in last_error.
        ({"notifier": "slack", "by": "bob\nEVIL: approved"}, "by"),
        ({"notifier": "slack", "incident": ""}, "incident"),
        ([], "body"),
        # A misspelt dry_run was ignored: the messages were discarded for good, not counted.
        ({"notifier": "slack", "dryrun": True}, "dryrun"),
    ],
    ids=[
        "no-notifier",
        "blank",
        "statuses-not-a-list",
        "sent",
        "dry-run",
        "long-by",
        "by-newline",
        "incident",
        "list",
        "unknown-field",
    ],
)
def test_outbox_discard_refuses_bad_input_naming_the_field(
    engine: IncidentEngine, body: object, field: str
) -> None:
    outbox = Outbox(engine.store.engine, [], FakeClock())
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)) as c:
        assert c.post("/api/v1/outbox/discard", json={"notifier": "slack"}).status_code == 401
        refused = c.post("/api/v1/outbox/discard", json=body, headers=AUTH)
        assert refused.status_code == 400 and error_field(refused) == field, refused.text


def test_the_outbox_list_says_which_notifier_waits_out_a_rate_limit_and_for_how_long(
    engine: IncidentEngine,
) -> None:
    """Pending messages that did not move gave no reason: a stored Retry-After pause (of this serve, or of
    the one before a restart) was on /metrics only."""
    clock = FakeClock()
    outbox = Outbox(engine.store.engine, [_Quiet()], clock)
    with Session(engine.store.engine) as session, session.begin():
        keep_pause(session, "hook", clock.time() + 90, "POST answered HTTP 429")
    clock.advance(30)
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)) as c:
        assert c.get("/api/v1/outbox").json()["paused"] == {
            "hook": {"until": rfc3339(clock.now() + timedelta(seconds=60)), "seconds_left": 60.0}
        }
        clock.advance(60)
        assert c.get("/api/v1/outbox").json()["paused"] == {}


class _Quiet:
    """A notifier that is never asked to deliver: the outbox only stores what it would send."""

    name = "hook"

    def deliver(self, *_: object, **__: object) -> None:
        raise AssertionError("not dispatched in this test")


def test_the_outbox_of_one_incident_counts_its_messages_only_and_says_what_each_was(
    engine: IncidentEngine,
) -> None:
    from tests.alerting.notifiers.incidents import lifecycle  # noqa: PLC0415

    clock = FakeClock()
    outbox = Outbox(engine.store.engine, [_Quiet()], clock)
    for change in lifecycle("inc-a") + lifecycle("inc-b")[:2]:
        outbox.enqueue(change)
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)) as c:
        assert c.get("/api/v1/outbox").json()["counts"] == {"pending": 7}
        one = c.get("/api/v1/outbox", params={"incident": "inc-b"}).json()
        assert one["counts"] == {"pending": 2}
        # The API's times end in Z, as its incidents' and Alertmanager's do (they said +00:00 here).
        assert {m["created_at"] for m in one["messages"]} == {rfc3339(clock.now())}
        assert [m["event"] for m in one["messages"]] == ["opened", "priority_changed"]
        events = [
            m["event"] for m in c.get("/api/v1/outbox", params={"incident": "inc-a"}).json()["messages"]
        ]
        assert events == ["opened", "priority_changed", "acknowledged", "mitigating", "resolved"]


def test_a_metrics_scrape_does_not_wait_for_a_long_transaction(
    client: TestClient, engine: IncidentEngine
) -> None:
    # The applier holds the engine's lock for a whole transaction (a replay's can take seconds): a scrape
    # then must not wait for it, nor hold up the other requests (it ran on the event loop).
    import threading  # noqa: PLC0415

    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    answers: list[int] = []
    with engine._lock:
        scrape = threading.Thread(target=lambda: answers.append(client.get("/metrics").status_code))
        scrape.start()
        scrape.join(timeout=10)
        assert answers == [200]


def test_incidents_are_listed_and_shown_while_a_long_transaction_holds_the_engine(
    client: TestClient, engine: IncidentEngine
) -> None:
    # The applier holds the engine's lock for a whole transaction (one record of 100,000 alerts took
    # minutes): the list and the detail read the store, and waited for that lock only to learn which
    # incidents are silenced, so `incidents list` timed out although reads promise to wait 10 s at most.
    import threading  # noqa: PLC0415

    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    incident_id = client.get("/api/v1/incidents").json()[0]["id"]
    answers: list[int] = []

    def read() -> None:
        answers.append(client.get("/api/v1/incidents").status_code)
        answers.append(client.get(f"/api/v1/incidents/{incident_id}").status_code)

    with engine._lock:
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout=10)
        assert answers == [200, 200]


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


def test_a_simulated_training_job_answers_to_the_slurm_job_id_its_exporter_labels_it_with() -> None:
    # The simulated exporter labels a training GPU slurm_job="<id>"; without the id as an alias the impact
    # listed "training job 8171" beside "training job pretrain-01": one job counted twice.
    fleet = fleet_from_config(SimConfig(racks_per_cluster=2, nodes_per_rack=2), FakeClock())
    inventory = inventory_from_fleet(fleet)
    for job in fleet.training_jobs():
        found = inventory.find_workload(WorkloadKind.TRAINING_JOB, str(sim_job_id(job)), "", job.cluster)
        assert found is not None and (found.name, found.cluster) == (job.name, job.cluster)


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
