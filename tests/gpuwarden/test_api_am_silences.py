"""Alertmanager's v2 API as serve answers it: alerts, receivers, alert groups, and silences listed, made,
updated and expired, with Alertmanager's errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from gpuwarden.api import create_app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, SILENCE, TOKEN, TestClient
from tests.gpuwarden.api_error import error_field


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
