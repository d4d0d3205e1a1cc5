"""What serve holds is asked again when it could not say at the start, before anything is posted."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from anomaly.forwarder import AlertForwarder, alert_identity
from gpuwarden.clock import FakeClock
from tests.anomaly.cli_runs import run_one_tick_forwarding_to
from tests.anomaly.forwarder_serve import _resolved, _xid
from tests.http_stub import LocalServer, QuietHandler


class Receiver:
    """serve's ``/api/v2/alerts`` behind a link that can be down: what it lists (``GET``) and was posted."""

    def __init__(self, listed: list[dict[str, object]]) -> None:
        self.listed = listed
        self.down: Exception | int | None = None  # raised, or answered to every request, while set
        self.unlisting: int | None = None  # answered to a listing while set (serve's store down: posts taken)
        self.gets = 0
        self.posted: list[dict[str, object]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            self.gets += 1
        if isinstance(self.down, Exception):
            raise self.down
        answer = self.unlisting if request.method == "GET" and self.down is None else self.down
        if answer is not None:
            return httpx.Response(answer, text="scripted")
        if request.method == "GET":
            return httpx.Response(200, json=self.listed)
        self.posted.extend(json.loads(request.content))
        return httpx.Response(200, json={})

    def forwarder(self, clock: FakeClock) -> AlertForwarder:
        client = httpx.Client(transport=httpx.MockTransport(self.handle))
        return AlertForwarder("http://serve:9700/", None, clock, resend_seconds=30, client=client)


def _upgrade(clock: FakeClock, held_for: float = 200.0) -> tuple[Receiver, dict[str, str], dict[str, str]]:
    """serve holding an alert for ``held_for`` s under the labels the release before posted it by (no
    ``deviation``): it, those labels and those the upgrade raises it under."""
    before = _xid("3", clock).labels
    ends = (clock.now() + timedelta(seconds=held_for)).isoformat()
    return Receiver([{"labels": dict(before), "endsAt": ends}]), before, {**before, "deviation": "up"}


def test_a_listing_that_failed_at_the_start_is_asked_again_before_each_post_until_serve_answers() -> None:
    # serve unreachable as `anomaly run` started: held() said nothing and was never asked again, so the
    # upgrade's alert, posted once serve was back with deviation="up", was a second alert at serve.
    clock = FakeClock()
    serve, before, upgraded = _upgrade(clock)
    serve.down = httpx.ConnectError("connection refused")
    forwarder = serve.forwarder(clock)
    assert forwarder.held() is None
    alert = replace(_xid("3", clock), labels=upgraded)
    forwarder.on_alert(alert)
    for _ in range(3):
        clock.advance(30)
        assert not forwarder.flush()
    assert forwarder.last_error is not None and "cannot list" in forwarder.last_error
    assert forwarder.failures == 3 and forwarder.posted == 0
    serve.down = None
    clock.advance(30)
    assert forwarder.flush()
    assert serve.gets == 5, "asked at the start, then once at each flush until it answered"
    assert [a["labels"] for a in serve.posted] == [before], "posted on under the labels serve holds"
    assert forwarder.flush() and serve.gets == 5, "listed once: not asked again"
    forwarder.on_alert(_resolved(alert, clock))
    assert forwarder.flush()
    assert serve.posted[-1]["labels"] == before, "and ended under them"


@pytest.mark.parametrize("unlisting", [503, 429, 500], ids=["503", "429", "500"])
def test_nothing_is_posted_while_serve_takes_posts_but_cannot_list_what_it_holds(unlisting: int) -> None:
    # serve's store down: it takes posts into its journal but cannot list. An alert posted under its own
    # labels then is one serve holds under other labels: a second alert.
    clock = FakeClock()
    serve, before, upgraded = _upgrade(clock)
    serve.unlisting = unlisting
    forwarder = serve.forwarder(clock)
    assert forwarder.held() is None
    forwarder.on_alert(replace(_xid("3", clock), labels=upgraded))
    for _ in range(2):
        clock.advance(30)
        assert not forwarder.flush()
    assert serve.posted == []
    serve.unlisting = None
    clock.advance(30)
    assert forwarder.flush()
    assert [a["labels"] for a in serve.posted] == [before]


def test_a_listing_is_asked_again_no_longer_than_serve_held_what_the_last_process_posted() -> None:
    # What the process before posted last ends at serve within the hold from this start: past it, no alert
    # serve holds can be the one a post would duplicate, and alerts must not wait on the listing forever.
    clock = FakeClock()
    serve, _, upgraded = _upgrade(clock)
    serve.down = 503
    forwarder = serve.forwarder(clock)
    assert forwarder.held() is None
    forwarder.on_alert(replace(_xid("3", clock), labels=upgraded))
    clock.advance(210)
    assert not forwarder.flush() and serve.gets == 2
    clock.advance(30)
    assert not forwarder.flush()  # serve still answers 503: the post fails, as any post would
    assert serve.gets == 2, "not asked again once the hold from the start has passed"
    serve.down = None
    assert forwarder.flush()
    assert [a["labels"] for a in serve.posted] == [upgraded], "posted under its own labels"


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(404, text="no such route"), httpx.Response(200, text="<html>")],
    ids=["404", "html"],
)
def test_a_receiver_that_answers_but_cannot_list_is_not_asked_again_nor_waited_for(
    answer: httpx.Response,
) -> None:
    clock, posted, gets = FakeClock(), [], []

    def receiver(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            gets.append(request)
            return answer
        posted.extend(json.loads(request.content))
        return httpx.Response(200, json={})

    client = httpx.Client(transport=httpx.MockTransport(receiver))
    forwarder = AlertForwarder("http://am:9093/", None, clock, resend_seconds=30, client=client)
    assert forwarder.held() is None
    forwarder.on_alert(_xid("3", clock))
    assert forwarder.flush() and forwarder.flush()
    assert len(gets) == 1 and len(posted) == 2


def test_a_late_listing_renames_in_the_order_the_alerts_were_told() -> None:
    # Told while serve could not list: the activity serve held ended, then the fault raised anew. Renamed
    # once it lists, the end goes under serve's labels and the new activity under its own, as at a start.
    clock = FakeClock()
    serve, before, upgraded = _upgrade(clock)
    serve.down = httpx.ConnectError("connection refused")
    forwarder = serve.forwarder(clock)
    assert forwarder.held() is None
    alert = replace(_xid("3", clock), labels=upgraded)
    clock.advance(30)
    forwarder.on_alert(_resolved(alert, clock))
    forwarder.on_alert(replace(alert, starts_at=clock.now()))
    assert not forwarder.flush()
    registry = CollectorRegistry()
    registry.register(forwarder)
    assert registry.get_sample_value("gpuwarden_anomaly_alerts_unsent") == 1, "the end waits"
    serve.down = None
    assert forwarder.flush()
    ended = [a for a in serve.posted if a["labels"] == before]
    raised = [a for a in serve.posted if a["labels"] == upgraded]
    assert [a["endsAt"] for a in ended][-1] == clock.now().isoformat().replace("+00:00", "Z")
    assert len(raised) == 1 and str(raised[0]["endsAt"]) > str(ended[-1]["endsAt"])
    assert alert_identity(before) == alert_identity(upgraded)


class _CannotList(LocalServer):
    """A serve that takes posts but answers its listing 503 (its store down)."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self._answer(503, b'{"error": "store unreachable"}')

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer(200, b"")

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


@pytest.mark.parametrize("reescalate", [True, False], ids=["on", "off"])
def test_a_start_that_cannot_list_says_what_it_recalls_re_escalation_on_or_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, reescalate: bool
) -> None:
    # The warm-up recalls what its history left firing with re-escalation off too (fix/reesc: the recall
    # keeps a rise whose reads turned to a fall one alert at serve), for the hold from now where serve
    # cannot say how long it holds them.
    caplog.set_level(logging.INFO)
    run_one_tick_forwarding_to(_CannotList(), tmp_path, monkeypatch, reescalate)
    (said,) = [r.getMessage() for r in caplog.records if "cannot list the alerts" in r.getMessage()]
    assert "HTTP 503" in said and "asking again" in said
    assert "are recalled for 240 s from now" in said, said


def test_a_listing_whose_ends_name_no_utc_offset_is_no_listing_and_raises_nothing_at_the_next_alert() -> None:
    # RFC 3339 times carry an offset; one without it was read as a naive time: compared with the clock's at
    # the first alert of its identity, on_alert raised TypeError mid-tick (the tick's other alerts went
    # untold, and a late listing's alerts told meanwhile were lost), and the warm-up read it as local time.
    clock = FakeClock()
    serve, _, upgraded = _upgrade(clock)
    serve.listed[0]["endsAt"] = (clock.now() + timedelta(seconds=200)).replace(tzinfo=None).isoformat()
    forwarder = serve.forwarder(clock)
    assert forwarder.held() is None
    forwarder.on_alert(replace(_xid("3", clock), labels=upgraded))
    assert forwarder.flush() and serve.gets == 1, "a receiver that cannot list: not asked again"
    assert [a["labels"] for a in serve.posted] == [upgraded]
