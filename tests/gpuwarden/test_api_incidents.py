"""Incidents over the API: detail, acknowledging, mitigating, notes, post-mortems and silences of an incident,
and the incident list's filters and order."""

from __future__ import annotations

from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock, rfc3339
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, SILENCE, TestClient
from tests.gpuwarden.api_error import error_field


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
    blank = client.post(f"{path}/notes", json={"text": "  ", "by": "bob"}, headers=AUTH)
    assert (blank.status_code, error_field(blank)) == (400, "text")
    # What PostgreSQL would refuse is refused on every store, naming the field, not answered 503.
    nul = client.post(f"{path}/notes", json={"text": "a\u0000b", "by": "bob"}, headers=AUTH)
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
    bad = client.post(f"{path}/silence", json={"duration": "an hour", "by": "bob"}, headers=AUTH)
    assert (bad.status_code, error_field(bad)) == (400, "duration")
    assert client.get(path).json()["silenced_until"] is None
    silenced = client.post(f"{path}/silence", json={"duration": "1h30m", "by": "carol"}, headers=AUTH)
    assert (silenced.status_code, silenced.json()["silenced_until"]) == (200, "2026-01-01T01:30:00Z")
    (silence,) = engine.all_silences()
    said = f"silenced for 1h30m by carol (silence {silence.id})"
    assert (silenced.json()["changed"], silenced.json()["message"]) == (True, said)
    assert client.get(path).json()["silenced_until"] == "2026-01-01T01:30:00Z"
    assert client.get("/api/v1/incidents").json()[0]["silenced_until"] == "2026-01-01T01:30:00Z"
    assert [e["message"] for e in client.get(path).json()["timeline"]][-3:] == [
        "mitigating: power-cycling r02-n03",
        "note by bob: BMC says PSU 2 failed",
        said,
    ]
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
    assert [e["message"] for e in client.get(path).json()["timeline"]].count(said) == 1
    assert "note by bob: BMC says PSU 2 failed" in client.get(f"{path}/postmortem").text
    assert (
        client.post(
            "/api/v1/incidents/inc-nope/notes", json={"text": "x", "by": "bob"}, headers=AUTH
        ).status_code
        == 404
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
        client.post(
            f"{path}/notes", json={"text": "root cause: PDU breaker", "by": "bob"}, headers=AUTH
        ).status_code
        == 200
    )
    for action, body in (("mitigate", {"action": "reboot"}), ("ack", {}), ("silence", {"duration": "1h"})):
        refused = client.post(f"{path}/{action}", json={"by": "ana", **body}, headers=AUTH)
        assert (refused.status_code, error_field(refused)) == (409, "incident"), action
    assert engine.all_silences() == []  # the refused silence was not made


def test_an_incident_silence_names_its_id_where_people_look_and_the_id_lifts_it_once_resolved(
    client: TestClient, engine: IncidentEngine
) -> None:
    """No alert names the silence of a resolved incident in ``silencedBy``, ``GET /api/v2/silences`` does not
    list it and ``/silence`` answers 409: its id, in the timeline and the incident, is what lifts it."""
    clock: FakeClock = engine.clock  # type: ignore[assignment]
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    assert item["silence_ids"] == []
    path = f"/api/v1/incidents/{item['id']}"
    client.post(f"{path}/silence", json={"duration": "1h", "by": "carol"}, headers=AUTH)
    clock.advance(45 * 60)  # a quarter of an hour left: bob's hour is a second silence, both hold it
    client.post(f"{path}/silence", json={"duration": "1h", "by": "bob"}, headers=AUTH)
    first, second = (s.id for s in sorted(engine.all_silences(), key=lambda s: s.ends_at))
    events = [e for e in client.get(path).json()["timeline"] if e["kind"] == "silenced"]
    assert [(e["data"]["silence_id"], e["message"]) for e in events] == [
        (first, f"silenced for 1h by carol (silence {first})"),
        (second, f"silenced for 1h by bob (silence {second})"),
    ]
    client.post("/api/v2/alerts", json=[{**NODE_DOWN, "endsAt": rfc3339(clock.now())}], headers=AUTH)
    clock.advance(engine.config.quiet_period_seconds + 1)
    engine.tick()
    (resolved,) = client.get("/api/v1/incidents").json()
    assert (resolved["state"], resolved["silence_ids"]) == ("resolved", [first, second])
    assert client.get(path).json()["silence_ids"] == [first, second]
    for silence_id in (first, second):
        assert client.delete(f"/api/v2/silence/{silence_id}", headers=AUTH).status_code == 200
    lifted = client.get(path).json()
    assert (lifted["silenced_until"], lifted["silence_ids"]) == (None, [])


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
