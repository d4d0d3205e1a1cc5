"""The incident actions over the API: resolving by hand, and repeats that say they change nothing."""

from __future__ import annotations

from alerting.engine import IncidentEngine
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TestClient
from tests.gpuwarden.api_error import error_field, error_text

RECOVERED = {**NODE_DOWN, "endsAt": "2026-01-01T00:00:00Z"}


def _incident(client: TestClient) -> str:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    return f"/api/v1/incidents/{item['id']}"


def test_resolve_is_refused_while_its_alert_fires_and_resolves_at_once_after(
    client: TestClient, engine: IncidentEngine
) -> None:
    path = _incident(client)
    assert client.post(f"{path}/resolve", json={"by": "alice"}).status_code == 401
    firing = client.post(f"{path}/resolve", json={"by": "alice"}, headers=AUTH)
    assert (firing.status_code, error_field(firing)) == (409, "incident")
    assert "1 of its alerts still fires" in error_text(firing)
    assert "incidents silence inc-" in error_text(firing) and "--for 1h" in error_text(firing)
    assert client.get(path).json()["state"] == "triggered"
    bad = client.post(f"{path}/resolve", json={"by": ""}, headers=AUTH)
    assert (bad.status_code, error_field(bad)) == (400, "by")
    assert (
        client.post("/api/v1/incidents/inc-nope/resolve", json={"by": "bob"}, headers=AUTH).status_code == 404
    )

    client.post("/api/v2/alerts", json=[RECOVERED], headers=AUTH)
    resolved = client.post(f"{path}/resolve", json={"by": "alice"}, headers=AUTH)
    assert resolved.status_code == 200
    body = resolved.json()
    assert (body["state"], body["changed"], body["message"]) == ("resolved", True, "resolved by alice")
    assert client.get(path).json()["timeline"][-1]["message"] == "resolved by alice"
    assert list(engine.open_incident_ids()) == []
    again = client.post(f"{path}/resolve", json={"by": "bob"}, headers=AUTH)
    assert again.status_code == 200
    assert (again.json()["state"], again.json()["changed"], again.json()["message"]) == (
        "resolved",
        False,
        "already resolved by alice at 2026-01-01T00:00:00Z",
    )
    assert "gpuwarden_incidents_resolved_total 1.0" in client.get("/metrics").text


def test_a_second_ack_answers_200_saying_who_acknowledged_first_and_changes_nothing(
    client: TestClient, engine: IncidentEngine
) -> None:
    path = _incident(client)
    first = client.post(f"{path}/ack", json={"by": "alice"}, headers=AUTH).json()
    assert (first["state"], first["changed"], first["message"]) == (
        "acknowledged",
        True,
        "acknowledged by alice",
    )
    engine.clock.advance(120)  # type: ignore[attr-defined]
    again = client.post(f"{path}/ack", json={"by": "bob"}, headers=AUTH)
    assert again.status_code == 200
    assert (again.json()["changed"], again.json()["message"]) == (
        False,
        "already acknowledged by alice at 2026-01-01T00:00:00Z",
    )
    assert client.get(path).json()["timeline"] == first["timeline"]


def test_acking_a_mitigating_incident_says_who_is_mitigating(client: TestClient) -> None:
    path = _incident(client)
    client.post(f"{path}/ack", json={"by": "alice"}, headers=AUTH)
    client.post(f"{path}/mitigate", json={"action": "reseating PSU", "by": "carol"}, headers=AUTH)
    again = client.post(f"{path}/ack", json={"by": "bob"}, headers=AUTH)
    assert again.status_code == 200 and again.json()["state"] == "mitigating"
    assert again.json()["message"] == (
        "already mitigating (reseating PSU) by carol since 2026-01-01T00:00:00Z;"
        " acknowledged by alice at 2026-01-01T00:00:00Z"
    )


def test_an_actions_answer_lists_the_incidents_alerts_as_show_does(client: TestClient) -> None:
    path = _incident(client)
    shown = client.get(path).json()["alerts"]
    assert len(shown) == 1
    for action, body in (("ack", {"by": "alice"}), ("notes", {"text": "looking", "by": "bob"})):
        answer = client.post(f"{path}/{action}", json=body, headers=AUTH).json()
        assert answer["alerts"] == shown, action  # it said [] while alert_count said 1


def test_a_repeated_mitigate_answers_200_saying_who_marked_it_and_a_repeated_note_is_stored_again(
    client: TestClient,
) -> None:
    # A retried mitigate wrote a second "mitigating" event (and a second Slack update); a note said twice is
    # kept twice: the same words may be meant twice.
    path = _incident(client)
    body = {"action": "reseating PSU", "by": "carol"}
    first = client.post(f"{path}/mitigate", json=body, headers=AUTH).json()
    assert (first["state"], first["changed"], first["message"]) == (
        "mitigating",
        True,
        "mitigating: reseating PSU",
    )
    again = client.post(f"{path}/mitigate", json=body, headers=AUTH)
    assert again.status_code == 200
    assert (again.json()["changed"], again.json()["message"]) == (
        False,
        "already mitigating (reseating PSU) by carol since 2026-01-01T00:00:00Z",
    )
    assert again.json()["timeline"] == first["timeline"]
    for _ in range(2):
        client.post(f"{path}/notes", json={"text": "PSU swapped", "by": "carol"}, headers=AUTH)
    notes = [e for e in client.get(path).json()["timeline"] if e["kind"] == "note"]
    assert len(notes) == 2


def test_resolve_refused_while_silenced_says_it_is_silenced_instead_of_suggesting_a_silence(
    client: TestClient,
) -> None:
    path = _incident(client)
    assert (
        client.post(f"{path}/silence", json={"duration": "1h", "by": "bob"}, headers=AUTH).status_code == 200
    )
    firing = client.post(f"{path}/resolve", json={"by": "alice"}, headers=AUTH)
    assert firing.status_code == 409
    said = error_text(firing)
    assert "1 of its alerts still fires" in said and "it is silenced until 20" in said
    assert "incidents silence" not in said  # it was told to do what it had done


def test_a_mitigate_action_longer_than_a_note_may_be_is_refused_naming_the_field_and_the_limit(
    client: TestClient,
) -> None:
    # A mitigate's action took any length (a megabyte went into the timeline, the Slack thread and every
    # "already mitigating (...)" answer); a note's text is held to 2,000 characters, and so is it now.
    path = _incident(client)
    before = client.get(path).json()
    for field, action in (("action", "mitigate"), ("text", "notes")):
        long = client.post(f"{path}/{action}", json={field: "x" * 2001, "by": "carol"}, headers=AUTH)
        assert (long.status_code, error_field(long)) == (400, field), long.text
        assert "2001 characters; at most 2000" in error_text(long)
    assert client.get(path).json() == before, "a refused action changes nothing"
    at_limit = client.post(f"{path}/mitigate", json={"action": "x" * 2000, "by": "carol"}, headers=AUTH)
    assert at_limit.status_code == 200 and at_limit.json()["state"] == "mitigating"
