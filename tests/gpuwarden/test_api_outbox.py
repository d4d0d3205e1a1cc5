"""The outbox over the API (its routes, input and what each message waits for), and reads that do not wait
for a long transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.outbox import Outbox
from alerting.outbox_pauses import keep_pause
from gpuwarden.api import create_app
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config import ApiConfig
from gpuwarden.errors import BackendError
from tests.alerting.notifiers.incidents import lifecycle
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TOKEN, TestClient
from tests.gpuwarden.api_error import error_field, error_text


def test_the_outbox_routes_say_so_when_no_notifier_is_configured_and_check_their_input(
    client: TestClient, engine: IncidentEngine
) -> None:
    answer = client.get("/api/v1/outbox")
    assert answer.status_code == 404 and "no notifier is configured" in error_text(answer)
    assert client.post("/api/v1/outbox/retry").status_code == 401  # a write: the token first
    outbox = Outbox(engine.store.engine, [], FakeClock())
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)) as c:
        assert c.get("/api/v1/outbox").json() == {
            "counts": {},
            "held": 0,
            "messages": [],
            "paused": {},
            "blocked": {},
        }
        assert error_field(c.get("/api/v1/outbox?status=lost")) == "status"
        assert error_field(c.get("/api/v1/outbox?limit=0")) == "limit"
        # A superscript two is a digit to str.isdigit, not to int: it crashed into a 503.
        assert error_field(c.get("/api/v1/outbox", params={"limit": "\u00b2"})) == "limit"
        posted = c.post("/api/v1/outbox/retry", json={"incident": ""}, headers=AUTH)
        assert posted.status_code == 400 and error_field(posted) == "incident"
        done = c.post("/api/v1/outbox/retry", headers=AUTH)
        assert done.json() == {"requeued": 0, "overtaken": 0}
        # An incident that does not exist (a typo) answered 200 having requeued nothing, as if it had none.
        for path, body in (("retry", {}), ("discard", {"notifier": "slack", "by": "alice", "dry_run": True})):
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
        ({"notifier": "slack", "statuses": "orphaned", "by": "alice"}, "statuses"),
        ({"notifier": "slack", "statuses": ["sent"], "by": "alice"}, "statuses"),
        ({"notifier": "slack", "dry_run": "yes", "by": "alice"}, "dry_run"),
        ({"notifier": "slack", "by": "x" * 129}, "by"),
        # A name is one line of visible text, by the incident actions' check: it is recorded in last_error.
        ({"notifier": "slack", "by": "bob\nEVIL: approved"}, "by"),
        ({"notifier": "slack", "incident": "", "by": "alice"}, "incident"),
        # It defaulted to "api": the discard was recorded as by nobody, as the incident actions refuse.
        ({"notifier": "slack", "dry_run": True}, "by"),
        ([], "body"),
        # A misspelt dry_run was ignored: the messages were discarded for good, not counted.
        ({"notifier": "slack", "dryrun": True}, "dryrun"),
        ({"notifier": "slack", "by": "alice", "ids": 7}, "ids"),
        # true is 1 to Python: it would have discarded message 1, which no question showed.
        ({"notifier": "slack", "by": "alice", "ids": [True, "8", 0]}, "ids"),
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
        "no-by",
        "list",
        "unknown-field",
        "ids-not-a-list",
        "ids-not-ids",
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


class _Revoked:
    """A Slack notifier whose token was revoked: every call refused until someone acts."""

    name = "slack"

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        raise BackendError("chat.postMessage failed: token_revoked", backend="slack", until_fixed=True)


def test_the_outbox_list_says_which_notifier_holds_its_messages_since_when_and_why(
    engine: IncidentEngine,
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine.store.engine, [_Revoked()], clock)
    outbox(lifecycle()[0])
    held_at = clock.now()
    assert outbox.dispatch_due() == 0
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)) as c:
        listed = c.get("/api/v1/outbox").json()
        assert listed["blocked"] == {
            "slack": {
                "since": rfc3339(held_at),
                "next_try": rfc3339(held_at + timedelta(seconds=60)),
                "reason": "slack: chat.postMessage failed: token_revoked",
            }
        }
        assert [m["status"] for m in listed["messages"]] == ["pending"]  # held, not failed


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
