"""Input the API refuses with a 400 naming the field, where it answered 503 or stored something else."""

from __future__ import annotations

import pytest

from alerting.engine import IncidentEngine
from alerting.outbox import Outbox
from gpuwarden.clock import FakeClock, rfc3339
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TestClient, api_client
from tests.gpuwarden.api_error import error_field, error_text

# Each is a valid RFC 3339 time whose instant in UTC is past year 9999 or before year 1: Python's datetime
# cannot hold it (Go's can: Alertmanager would take it).
OUT_OF_RANGE = ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"]
WEBHOOK = {"version": "4", "status": "firing", "receiver": "gpuwarden", "groupLabels": {}}
SILENCE = {
    "matchers": [{"name": "node", "value": "r02-n03", "isRegex": False}],
    "startsAt": "2025-12-31T00:00:00Z",
    "endsAt": "2026-01-02T00:00:00Z",
    "createdBy": "bob",
    "comment": "planned",
}


@pytest.mark.parametrize("at", OUT_OF_RANGE, ids=["after-9999", "before-1"])
@pytest.mark.parametrize("name", ["startsAt", "endsAt"])
def test_a_time_out_of_range_in_utc_is_a_400_naming_it_on_every_route(
    client: TestClient, engine: IncidentEngine, at: str, name: str
) -> None:
    alert = {"labels": {"alertname": "A", "node": "r02-n03"}, name: at}
    posted = client.post("/api/v2/alerts", json=[{"labels": {"alertname": "B"}}, alert], headers=AUTH)
    assert (posted.status_code, error_field(posted)) == (400, f"[1].{name}"), posted.text
    hook = client.post("/api/v1/webhook/alertmanager", json={**WEBHOOK, "alerts": [alert]}, headers=AUTH)
    assert (hook.status_code, error_field(hook)) == (400, f"alerts[0].{name}"), hook.text
    silence = client.post("/api/v2/silences", json={**SILENCE, name: at}, headers=AUTH)
    assert (silence.status_code, error_field(silence)) == (400, name), silence.text
    assert "out of range" in silence.json()
    assert engine.store.alert_count() == 0 and client.get("/api/v2/silences").json() == []


def test_only_the_instant_of_gos_zero_time_means_no_time(client: TestClient, engine: IncidentEngine) -> None:
    """Alertmanager's ``IsZero``: 0001-01-01T00:00:00Z in any offset is "not set"; a second later is a time,
    and an ``endsAt`` then says the alert has ended (it opened an incident while it counted as unset)."""
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "r02-n03"}
    ended = {"labels": labels, "startsAt": "0001-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:01Z"}
    assert client.post("/api/v2/alerts", json=[ended], headers=AUTH).status_code == 200
    assert client.get("/api/v1/incidents").json() == []
    unset = {"labels": labels, "endsAt": "0001-01-01T05:30:00+05:30"}  # the zero instant: no end
    assert client.post("/api/v2/alerts", json=[unset], headers=AUTH).status_code == 200
    (incident,) = client.get("/api/v1/incidents").json()
    (alert,) = client.get(f"/api/v1/incidents/{incident['id']}").json()["alerts"]
    assert alert["status"] == "firing" and alert["endsAt"] == "2026-01-01T00:05:00Z"  # the resolve timeout


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("maintenance", "false"),
        ("maintenance", 0),
        ("maintenance", "true"),
        ("createdBy", 5),
        ("createdBy", {"a": 1}),
        ("createdBy", None),
        ("comment", ["x"]),
        ("comment", None),
    ],
    ids=["maintenance-string", "maintenance-zero", "maintenance-true-string", "createdBy-number",
         "createdBy-object", "createdBy-null", "comment-list", "comment-null"],
)  # fmt: skip
def test_a_silence_field_of_the_wrong_json_type_is_refused_naming_it(
    client: TestClient, field: str, value: object
) -> None:
    refused = client.post("/api/v2/silences", json={**SILENCE, field: value}, headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (400, field), refused.text
    assert client.get("/api/v2/silences").json() == []


@pytest.mark.parametrize(
    "value",
    ["", "   ", "bob\nEVIL: approved", "bob\x1b[2K", "\u202ebob"],
    ids=["empty", "blank", "newline", "escape", "bidi"],
)
def test_a_silence_created_by_nobody_or_a_forged_line_is_refused_naming_created_by(
    client: TestClient, engine: IncidentEngine, value: str
) -> None:
    """Who set a silence is what an on-call asks first ("who muted this?"): a name, one line of visible text,
    as every ``by``. Refused with a 400 naming ``createdBy`` and what to send; nothing is stored, and an
    update so refused leaves the silence as it was."""
    refused = client.post("/api/v2/silences", json={**SILENCE, "createdBy": value}, headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (400, "createdBy"), refused.text
    said = "who creates the silence" if not value.strip() else "one line of visible text"
    assert said in error_text(refused) and client.get("/api/v2/silences").json() == []
    if value.strip():  # the name as Python writes it, each hidden character escaped once: \u202e, not \\u202e
        assert f"got {value!r}" in error_text(refused), error_text(refused)
    made = client.post("/api/v2/silences", json=SILENCE, headers=AUTH).json()["silenceID"]
    update = {**SILENCE, "id": made, "createdBy": value, "comment": "changed"}
    assert client.post("/api/v2/silences", json=update, headers=AUTH).status_code == 400
    (kept,) = client.get("/api/v2/silences").json()
    assert (kept["id"], kept["createdBy"], kept["comment"]) == (made, "bob", "planned")


def test_a_silence_without_created_by_or_comment_gets_gpuwardens_defaults(client: TestClient) -> None:
    """Alertmanager requires both; gpuwarden has always taken their absence, and a script may rely on it."""
    bare = {k: v for k, v in SILENCE.items() if k not in ("createdBy", "comment")}
    made = client.post("/api/v2/silences", json={**bare, "maintenance": False}, headers=AUTH)
    assert made.status_code == 200, made.text
    (silence,) = client.get("/api/v2/silences").json()
    assert (silence["createdBy"], silence["comment"], "maintenance" in silence) == ("api", "", False)


@pytest.mark.parametrize(
    ("path", "name", "values"),
    [
        ("/api/v1/incidents", "limit", ["1", "2"]),
        ("/api/v1/incidents", "state", ["triggered", "resolved"]),
        ("/api/v1/incidents", "priority", ["P0", "P0"]),
        ("/api/v2/alerts", "active", ["true", "false"]),
        ("/api/v2/alerts/groups", "silenced", ["false", "true"]),
        ("/api/v2/alerts", "inhibited", ["true", "true"]),
        ("/api/v2/alerts", "receiver", ["gpuwarden", "other"]),
        ("/api/v1/outbox", "limit", ["1", "2"]),
        ("/api/v1/outbox", "status", ["failed", "sent"]),
        ("/api/v1/outbox", "incident", ["inc-1", "inc-2"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_single_valued_query_parameter_given_twice_is_refused_naming_it(
    engine: IncidentEngine, path: str, name: str, values: list[str]
) -> None:
    """``?limit=1&limit=2`` took one of the two silently; which one the caller meant is not clear."""
    with api_client(engine, outbox=Outbox(engine.store.engine, [], FakeClock())) as client:
        assert client.get(path, params={name: values[0]}).status_code == 200
        twice = client.get(path, params={name: values})
        assert (twice.status_code, error_field(twice)) == (400, name), twice.text
        assert "given 2 times" in error_text(twice)


@pytest.mark.parametrize("maintenance", [False, True], ids=["silence", "maintenance-window"])
def test_a_silence_until_the_last_representable_time_works_end_to_end(
    client: TestClient, engine: IncidentEngine, maintenance: bool
) -> None:
    """Alertmanager has no longest silence (its maintainers refused one, prometheus/alertmanager#941), so
    neither has gpuwarden (an incident's silence is a duration, capped at a year): nothing computes past
    its end."""
    forever = {**SILENCE, "endsAt": "9999-12-31T23:59:59.999999Z", "maintenance": maintenance}
    made = client.post("/api/v2/silences", json=forever, headers=AUTH)
    assert made.status_code == 200, made.text
    silence_id = made.json()["silenceID"]
    alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r02-n03"}}
    assert client.post("/api/v2/alerts", json=[alert], headers=AUTH).status_code == 200
    (listed,) = client.get("/api/v2/alerts").json()
    assert listed["status"]["silencedBy"] == [silence_id]
    assert client.get("/api/v1/incidents").json() == []
    engine.clock.advance(400 * 86400)  # type: ignore[attr-defined]
    engine.tick()
    engine.prune()
    (shown,) = client.get("/api/v2/silences").json()
    assert (shown["endsAt"], shown["status"]["state"]) == ("9999-12-31T23:59:59.999999Z", "active")
    # Posted back as read (amtool's update): its start is when it was created, not the past one it was sent.
    moved = {**forever, "id": silence_id, "startsAt": shown["startsAt"], "comment": "still planned"}
    assert client.post("/api/v2/silences", json=moved, headers=AUTH).json()["silenceID"] == silence_id
    assert client.post("/api/v2/alerts", json=[alert], headers=AUTH).status_code == 200  # firing still
    assert client.delete(f"/api/v2/silence/{silence_id}", headers=AUTH).status_code == 200
    engine.tick()
    assert len(client.get("/api/v1/incidents").json()) == 1  # the alert it held back, once it ended


@pytest.mark.parametrize(
    ("starts", "ends", "code"),
    [
        ("", "2026-01-02T00:00:00Z", 200),
        ("0001-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 200),
        ("2025-12-31T00:00:00Z", "", 400),
        ("2025-12-31T00:00:00Z", "0001-01-01T00:00:00Z", 400),
        (None, "2026-01-02T00:00:00Z", 422),  # null is absent: a required field missing, as Alertmanager
    ],
    ids=["start-empty", "start-zero", "end-empty", "end-zero", "start-null"],
)
def test_an_empty_or_zero_silence_start_is_now_as_in_alertmanager(
    client: TestClient, engine: IncidentEngine, starts: str | None, ends: str, code: int
) -> None:
    """Alertmanager 0.25 takes "" and Go's zero time as startsAt (a start before now: the silence starts
    now) and refuses them as endsAt (measured with am_diff); gpuwarden answered 400 to both starts."""
    posted = client.post(
        "/api/v2/silences", json={**SILENCE, "startsAt": starts, "endsAt": ends}, headers=AUTH
    )
    assert posted.status_code == code, posted.text
    listed = client.get("/api/v2/silences").json()
    if code == 200:
        (silence,) = listed
        assert silence["startsAt"] == rfc3339(engine.clock.now()) and silence["status"]["state"] == "active"
    else:
        assert listed == []


@pytest.mark.parametrize(
    ("path", "params", "said"),
    [
        pytest.param(
            "/api/v1/incidents",
            {"priorty": "P0"},
            "priorty: unknown query parameter; did you mean priority? GET /api/v1/incidents takes state,"
            " priority, limit, continue",
            id="incidents-typo",
        ),
        pytest.param(
            "/api/v1/incidents",
            {"status": "triggered"},
            "status: unknown query parameter; did you mean state? GET /api/v1/incidents takes state,"
            " priority, limit, continue",
            id="incidents-outbox-word",
        ),
        pytest.param(
            "/api/v1/outbox",
            {"state": "failed"},
            "state: unknown query parameter; did you mean status? GET /api/v1/outbox takes status,"
            " incident, limit",
            id="outbox-incidents-word",
        ),
        pytest.param(
            "/api/v1/inventory",
            {"cluster": "c1"},
            "cluster: unknown query parameter; GET /api/v1/inventory takes none",
            id="inventory",
        ),
    ],
)
def test_an_unknown_query_parameter_of_gpuwardens_api_is_refused_naming_it_and_those_taken(
    engine: IncidentEngine, path: str, params: dict[str, str], said: str
) -> None:
    """``?priorty=P0`` and the outbox's ``?state=failed`` answered 200 with everything, as if it matched."""
    with api_client(engine, outbox=Outbox(engine.store.engine, [], FakeClock())) as client:
        refused = client.get(path, params=params)
        assert (refused.status_code, error_field(refused), error_text(refused)) == (
            400,
            next(iter(params)),
            said,
        )


def test_alertmanagers_api_ignores_unknown_query_parameters_as_alertmanager_does(client: TestClient) -> None:
    """Alertmanager 0.25 answers ``/api/v2/alerts?bogus=1`` (and ``silences``, ``status``...) 200 (measured):
    its clients may send what gpuwarden does not read."""
    for path in ("/api/v2/alerts", "/api/v2/alerts/groups", "/api/v2/silences", "/api/v2/status"):
        assert client.get(path, params={"bogus": "1"}).status_code == 200, path


@pytest.mark.parametrize(
    ("action", "body", "said"),
    [
        pytest.param(
            "ack",
            {"author": "alice"},
            "author: unknown field; did you mean by? this request takes by",
            id="ack",
        ),
        pytest.param(
            "mitigate",
            {"action": "drain", "actor": "bob"},
            "actor: unknown field; did you mean action? this request takes action, by",
            id="mitigate",
        ),
        pytest.param(
            "notes",
            {"note": "PSU", "by": "bob"},
            "note: unknown field; did you mean text? this request takes text, by",
            id="notes",
        ),
        pytest.param(
            "silence",
            {"for": "1h", "by": "bob"},
            "for: unknown field; did you mean duration? this request takes duration, by",
            id="silence",
        ),
        pytest.param(
            "resolve",
            {"by": "bob", "force": True},
            "force: unknown field; this request takes by",
            id="resolve",
        ),
    ],
)
def test_an_unknown_key_of_an_incident_action_is_refused_naming_it_and_changes_nothing(
    client: TestClient, action: str, body: dict[str, object], said: str
) -> None:
    """``{"author": "alice"}`` acknowledged the incident "by api": the key was ignored."""
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    path = f"/api/v1/incidents/{item['id']}"
    before = client.get(path).json()["timeline"]
    refused = client.post(f"{path}/{action}", json=body, headers=AUTH)
    assert (refused.status_code, error_field(refused), error_text(refused)) == (
        400,
        said.partition(":")[0],
        said,
    )
    assert client.get(path).json()["timeline"] == before


def test_a_query_parameter_on_an_incident_action_is_refused_as_its_fields_go_in_the_body(
    client: TestClient,
) -> None:
    """``POST .../ack?by=alice`` acknowledged it "by api"."""
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    refused = client.post(f"/api/v1/incidents/{item['id']}/ack", params={"by": "alice"}, headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (400, "by")
    assert error_text(refused).endswith("takes none: send its fields in the body")
    assert client.get("/api/v1/incidents").json()[0]["state"] == "triggered"


def test_a_body_that_is_not_utf8_is_said_so_with_the_bytes_offset(client: TestClient) -> None:
    """It said "str is not valid UTF-8: surrogates not allowed: line 1 column 1 (char 0)"."""
    body = b'{"text": "caf\xe9"}'  # Latin-1's é
    headers = {**AUTH, "Content-Type": "application/json"}
    refused = client.post("/api/v1/incidents/inc-x/notes", content=body, headers=headers)
    assert (refused.status_code, error_field(refused)) == (400, "body")
    assert error_text(refused) == (
        "body: body is not UTF-8 (a bad byte, 0xe9, at offset 13); send JSON encoded in UTF-8"
    )


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("ack", {}),
        ("mitigate", {"action": "drain n1"}),
        ("notes", {"text": "PSU 2 failed"}),
        ("silence", {"duration": "1h"}),
    ],
    ids=["ack", "mitigate", "notes", "silence"],
)
def test_an_incident_action_without_by_is_refused_naming_it_and_changes_nothing(
    client: TestClient, action: str, body: dict[str, object]
) -> None:
    """``POST .../ack`` with ``{}`` acknowledged the incident "by api", naming nobody: the README lists
    ``{"by"}`` as each action's body, no default."""
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    path = f"/api/v1/incidents/{item['id']}"
    before = client.get(path).json()["timeline"]
    refused = client.post(f"{path}/{action}", json=body, headers=AUTH)
    assert (refused.status_code, error_field(refused)) == (400, "by")
    assert "is required" in error_text(refused)
    assert client.get(path).json()["timeline"] == before
    taken = client.post(f"{path}/{action}", json={**body, "by": "alice"}, headers=AUTH)
    assert taken.status_code == 200 and taken.json()["timeline"][-1]["data"]["by"] == "alice"
