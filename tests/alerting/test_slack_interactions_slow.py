"""Slack presses that wait on a busy engine or store: Slack is answered within its 3 s, serve's other requests
are not held meanwhile, and the presser is told afterwards what the press could not do."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from alerting import slack_interactions
from alerting.notifiers.blocks import ACTION_ACKNOWLEDGE
from alerting.notifiers.recorder import SlackRecorder
from alerting.outcomes import ActionOutcome
from alerting.slack_interactions import slack_interaction_routes
from alerting.slack_replays import HandledSlackRequests
from gpuwarden.clock import FakeClock
from tests.alerting.slack_presses import PATH, SECRET, RecordingActions, button_body, signed

with warnings.catch_warnings():
    # Starlette's TestClient now asks for httpx2, which the project does not ship; with httpx it still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


class BusyActions(RecordingActions):
    """Acknowledging waits until ``free`` is set, as behind the engine's lock during a long tick; then it is
    done, refused (``inc-closed``), or fails with ``failure`` (a store that cannot be written)."""

    def __init__(self, failure: Exception | None = None) -> None:
        super().__init__()
        self.free = threading.Event()
        self.failure = failure

    def acknowledge_outcome(self, incident_id: str, by: str) -> ActionOutcome:
        assert self.free.wait(10), "never freed"
        if self.failure is not None:
            raise self.failure
        return super().acknowledge_outcome(incident_id, by)


def _ping(_: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


@pytest.fixture
def busy_client(
    request: pytest.FixtureRequest, clock: FakeClock, handled: HandledSlackRequests
) -> Iterator[tuple[BusyActions, TestClient]]:
    """A served app with the Slack route and ``/ping`` (another request serve answers meanwhile), on one event
    loop for the whole test, as serve's."""
    actions = BusyActions(getattr(request, "param", None))
    routes = [*slack_interaction_routes(SECRET, actions, clock, handled=handled), Route("/ping", _ping)]
    with TestClient(Starlette(routes=routes)) as client:
        yield actions, client
        actions.free.set()


def _eventually(check: Callable[[], object], seconds: float = 10.0) -> None:
    until = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < until, "not within 10 s"
        time.sleep(0.02)


def test_the_press_is_answered_well_within_slacks_three_seconds() -> None:
    # Slack shows the presser an error when its request has no 200 after 3 s, network included.
    assert slack_interactions.ANSWER_WITHIN_SECONDS <= 1.0


def test_a_press_waiting_on_a_busy_engine_is_answered_at_once_and_done_when_the_engine_frees(
    busy_client: tuple[BusyActions, TestClient], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_interactions, "ANSWER_WITHIN_SECONDS", 0.2, raising=False)
    actions, client = busy_client
    with SlackRecorder() as recorder:
        body = button_body(ACTION_ACKNOWLEDGE, response_url=recorder.response_url)
        started = time.monotonic()
        response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
        assert time.monotonic() - started < 2.0, "Slack would have shown the presser an error"
        assert response.status_code == 200 and response.json()["pending"] is True
        assert actions.calls == []
        actions.free.set()
        _eventually(lambda: actions.calls)
        time.sleep(0.2)
        assert recorder.responses() == [], "done: nothing to tell"
    assert actions.calls == [("acknowledge", "inc-r07", "slack:alice", None)]


def test_a_slow_press_that_is_refused_is_told_to_the_presser_once_it_ends(
    busy_client: tuple[BusyActions, TestClient], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_interactions, "ANSWER_WITHIN_SECONDS", 0.2, raising=False)
    actions, client = busy_client
    with SlackRecorder() as recorder:
        body = button_body(ACTION_ACKNOWLEDGE, "inc-closed", response_url=recorder.response_url)
        response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
        assert response.status_code == 200 and response.json()["pending"] is True
        actions.free.set()
        _eventually(recorder.responses)
        [told] = recorder.responses()
    assert told["response_type"] == "ephemeral" and told["replace_original"] is False
    assert told["text"] == ":warning: Could not acknowledge `inc-closed`: incident_id: incident is resolved"


@pytest.mark.parametrize("busy_client", [RuntimeError("database is locked")], indirect=True, ids=["store"])
def test_a_slow_press_that_fails_tells_the_presser_to_look_before_pressing_again(
    busy_client: tuple[BusyActions, TestClient],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(slack_interactions, "ANSWER_WITHIN_SECONDS", 0.2, raising=False)
    actions, client = busy_client
    with SlackRecorder() as recorder, caplog.at_level("ERROR", logger="alerting.slack_interactions"):
        body = button_body(ACTION_ACKNOWLEDGE, response_url=recorder.response_url)
        assert client.post(PATH, content=body, headers=signed(body, int(clock.time()))).status_code == 200
        actions.free.set()
        _eventually(recorder.responses)
        [told] = recorder.responses()
    assert told["text"].startswith(":warning: Could not acknowledge `inc-r07`: it failed in gpuwarden")
    assert "look at the incident before pressing again" in told["text"]
    assert "slack press failed after its answer incident_ids=inc-r07" in caplog.text
    assert "database is locked" in caplog.text


def test_a_press_waiting_on_a_busy_engine_holds_none_of_serves_other_requests(
    busy_client: tuple[BusyActions, TestClient], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On the event loop, the press's wait for the engine held every request serve answers, health checks and
    # Prometheus' alert posts included, for as long as the engine was busy.
    monkeypatch.setattr(slack_interactions, "ANSWER_WITHIN_SECONDS", 5.0, raising=False)
    actions, client = busy_client
    body = button_body(ACTION_ACKNOWLEDGE)
    pressed = threading.Thread(
        target=client.post, args=(PATH,), kwargs={"content": body, "headers": signed(body, int(clock.time()))}
    )
    pressed.start()
    try:
        time.sleep(0.3)  # the press is waiting on the engine
        started = time.monotonic()
        assert client.get("/ping").text == "pong"
        assert time.monotonic() - started < 1.0, "held by the press"
    finally:
        actions.free.set()
        pressed.join(10)
    assert actions.calls == [("acknowledge", "inc-r07", "slack:alice", None)]
