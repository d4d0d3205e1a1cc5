"""The generic outgoing webhook, posting to the recorder's /hooks endpoint over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from alerting.notifiers.base import ThreadState, build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import (
    MAX_BODY_BYTES,
    MAX_LIST_ITEMS,
    MAX_TEXT_CHARS,
    WebhookNotifier,
    sign,
    webhook_payload,
)
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config_notify import WEBHOOK_EVENTS
from gpuwarden.errors import BackendError
from gpuwarden.model import Priority, WorkloadKind, WorkloadRef
from tests.alerting.notifiers.incidents import change, lifecycle, make_incident
from tests.http_stub import LocalServer, QuietHandler


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec


def nothing(_state: ThreadState) -> None:
    """A thread saver for deliveries whose thread is not looked at again."""


def test_posts_the_incident_as_json_with_an_idempotency_key(recorder: SlackRecorder) -> None:
    hook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    n = build_notification(lifecycle()[3])
    hook.deliver(n, ThreadState(), retry=False, save=nothing)
    [body] = recorder.hook_posts("ops")
    assert body["version"] == "1"
    assert body["idempotency_key"] == n.key
    assert body["change"] == "mitigating"
    assert body["incident"]["priority"] == "P1"
    assert body["incident"]["root_cause"] == {
        "kind": "rack_down",
        "target": "rack/r07",
        "fields": {"rack": "r07", "cluster": "c1"},
        "fields_total": 2,
        "cluster": "",  # a fleet of one cluster: named nowhere (its fields say it)
    }
    assert body["incident"]["actions_taken"] == [
        "drain_node n0701 succeeded",  # the timeline's mitigating event
        "drain_node node/n0701: succeeded (drained)",
    ]
    assert body["incident"]["impact"]["parts"] == ["training job llm-70b stopped", "no spare capacity"]
    assert body["incident"]["impact"]["parts_total"] == 2
    assert body["event"]["message"] == "drain_node n0701 succeeded"
    hook.close()


def test_signed_requests_carry_a_verifiable_signature() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    clock = FakeClock()
    client = httpx.Client(transport=httpx.MockTransport(handler))
    hook = WebhookNotifier("http://receiver/hook", secret="s3cret", client=client, clock=clock)
    n = build_notification(lifecycle()[0])
    hook.deliver(n, ThreadState(), retry=False, save=nothing)
    [request] = seen
    timestamp = request.headers["X-Gpuwarden-Timestamp"]
    assert timestamp == str(int(clock.time()))
    assert request.headers["X-Gpuwarden-Signature"] == sign("s3cret", timestamp, request.content)
    assert request.headers["Idempotency-Key"] == n.key
    assert json.loads(request.content)["incident"]["id"] == "inc-r07"


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False)],
    ids=["500", "503", "429", "408", "400", "404"],
)
def test_http_errors_say_whether_to_retry(recorder: SlackRecorder, status: int, retryable: bool) -> None:
    recorder.fail_next("hook:ops", status=status)
    hook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    with pytest.raises(BackendError, match=f"HTTP {status}") as caught:
        hook.deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    assert caught.value.retryable is retryable
    assert caught.value.backend == "webhook:ops"
    hook.close()


def test_an_unreachable_receiver_is_retryable(recorder: SlackRecorder) -> None:
    url = f"{recorder.root_url}/hooks/ops"
    recorder.stop()
    hook = WebhookNotifier(url)
    with pytest.raises(BackendError) as caught:
        hook.deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    assert caught.value.retryable
    hook.close()


def test_nothing_is_posted_for_a_silenced_incident(recorder: SlackRecorder) -> None:
    hook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    for c in lifecycle():
        n = build_notification(c)
        hook.deliver(
            n.model_copy(update={"silenced_until": n.event_at}), ThreadState(), retry=False, save=nothing
        )
    assert recorder.hook_posts("ops") == []
    hook.close()


class Receiver:
    """An ``httpx.MockTransport`` handler answering from a script of statuses (then 204), keeping requests."""

    def __init__(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        self.statuses = list(statuses)
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 204
        return httpx.Response(status, headers=self.headers if status >= 300 else {})

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def hook(self, **kwargs: Any) -> WebhookNotifier:
        client = httpx.Client(transport=httpx.MockTransport(self))
        return WebhookNotifier("http://receiver/hook", name="webhook:r", client=client, **kwargs)


def huge_incident_change() -> IncidentChange:
    """A storm's incident: 5,000 workloads, a 20,000-character title and summary, 300 actions."""
    c = lifecycle()[3]
    workloads = tuple(WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "ns", f"svc-{i:05d}") for i in range(5000))
    incident = replace(
        c.incident,
        title="rack r07 lost power " * 1000,
        impact=replace(c.incident.impact, workloads=workloads, parts=("x" * 20_000,)),
        actions=c.incident.actions * 300,
    )
    return replace(c, incident=incident)


def test_a_huge_incident_is_sent_bounded_with_the_full_counts() -> None:
    receiver = Receiver()
    change = huge_incident_change()
    receiver.hook().deliver(build_notification(change), ThreadState(), retry=False, save=nothing)
    [request] = receiver.requests
    assert len(request.content) <= MAX_BODY_BYTES
    body = json.loads(request.content)
    incident = body["incident"]
    assert body["truncated"] is True
    assert incident["affected_targets_total"] == 5001  # the rack and every workload
    assert incident["affected_targets"][:2] == ["rack/r07", "inference_service/ns/svc-00000"]
    assert len(incident["affected_targets"]) == MAX_LIST_ITEMS
    # 300 results and the timeline's mitigating event
    assert (incident["actions_taken_total"], len(incident["actions_taken"])) == (301, MAX_LIST_ITEMS)
    assert len(incident["title"]) == MAX_TEXT_CHARS and incident["title"].endswith("…")
    assert len(incident["impact"]["summary"]) == MAX_TEXT_CHARS


def test_a_small_incident_is_sent_whole() -> None:
    receiver = Receiver()
    n = build_notification(lifecycle()[3])
    receiver.hook().deliver(n, ThreadState(), retry=False, save=nothing)
    [body] = receiver.bodies()
    assert body["truncated"] is False
    assert body["incident"]["title"] == n.title
    assert body["incident"]["affected_targets"] == list(n.affected_targets)
    assert body["incident"]["root_cause"]["fields"] == {"rack": "r07", "cluster": "c1"}


def test_a_413_is_answered_with_the_compact_form_at_once() -> None:
    receiver = Receiver(413)
    n = build_notification(lifecycle()[3])
    receiver.hook().deliver(n, ThreadState(), retry=False, save=nothing)
    full, compact = receiver.bodies()
    assert full["incident"]["affected_targets"] and not compact["incident"]["affected_targets"]
    assert compact["incident"]["affected_targets_total"] == full["incident"]["affected_targets_total"]
    assert compact["truncated"] is True and compact["incident"]["state"] == "mitigating"
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == [n.key, n.key]


def test_every_list_of_the_compact_form_keeps_its_full_count() -> None:
    # The compact form empties every list: a receiver must still learn how many items there were.
    receiver = Receiver(413)
    n = build_notification(lifecycle()[3])
    n = n.model_copy(update={"recommended_actions": ("drain r07's nodes", "call facilities")})
    receiver.hook().deliver(n, ThreadState(), retry=False, save=nothing)
    full, compact = (body["incident"] for body in receiver.bodies())
    lists = {key: full[key] for key, value in full.items() if isinstance(value, list)}
    lists["root_cause.fields"] = full["root_cause"]["fields"]
    assert full["recommended_actions"] and full["root_cause"]["fields"]
    counts = {key: compact[f"{key}_total"] for key in lists if "." not in key}
    counts["root_cause.fields"] = compact["root_cause"].get("fields_total")
    assert counts == {key: len(value) for key, value in lists.items()}


def test_a_413_to_the_compact_form_too_is_refused_for_good() -> None:
    receiver = Receiver(413, 413)
    with pytest.raises(BackendError, match="413") as caught:
        receiver.hook().deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    assert caught.value.retryable is False


def test_only_the_first_message_delivered_for_an_incident_says_first_for_receiver() -> None:
    receiver = Receiver(503)  # the first attempt fails: its retry is still the first message
    hook = receiver.hook()
    saved: list[ThreadState] = []
    first, second = (build_notification(c) for c in lifecycle()[:2])
    with pytest.raises(BackendError):
        hook.deliver(first, ThreadState(), retry=False, save=saved.append)
    assert saved == []
    hook.deliver(first, ThreadState(), retry=True, save=saved.append)
    assert saved == [ThreadState(ts=first.key)]
    hook.deliver(first, saved[0], retry=True, save=saved.append)  # a crash before it was marked sent
    hook.deliver(second, saved[0], retry=False, save=saved.append)
    assert [b["first_for_receiver"] for b in receiver.bodies()] == [True, True, True, False]
    assert receiver.requests[0].content == receiver.requests[1].content == receiver.requests[2].content
    assert len(saved) == 1


def test_a_bearer_token_and_headers_are_sent() -> None:
    receiver = Receiver()
    hook = receiver.hook(bearer_token="t0ken", headers={"X-Team": "gpu"})
    hook.deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    [request] = receiver.requests
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["X-Team"] == "gpu"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_refused_for_good_saying_where_it_points_without_its_secret(status: int) -> None:
    # "POST answered HTTP 308" and nothing else: the operator had to find where the receiver moved.
    receiver = Receiver(status, headers={"Location": "https://moved.example.com/T0/B0/s3cr3t?key=k3y"})
    with pytest.raises(BackendError) as caught:
        receiver.hook().deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    assert not caught.value.retryable
    assert f"HTTP {status}" in str(caught.value) and "https://moved.example.com" in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "k3y" not in str(caught.value)
    assert len(receiver.requests) == 1  # not followed


def test_a_receiver_that_answers_2xx_is_delivered_however_slowly_its_body_follows() -> None:
    # The body was read with a timeout per read, not per POST: a receiver (or proxy) trickling it held the
    # webhook's thread for as long as it liked (40 s under a 2 s timeout), and one that paused longer than
    # the timeout after answering 200 got the message again as a retry.
    body_sent = threading.Event()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"{")
            self.wfile.flush()
            body_sent.wait(30)  # the rest of the body comes when the test is done

    server = LocalServer(Handler)
    # The timeout bounds each read: the 200 must come within it however loaded the machine (0.5 s left a
    # stalled test process little room), while the body, held 30 s, outlasts it: reading it would fail.
    hook = WebhookNotifier(f"{server.url}/hook", name="webhook:slow", timeout_seconds=5)
    try:
        delivered = hook.deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    finally:
        body_sent.set()
        hook.close()
        server.close()
    assert delivered is True


def test_a_receiver_trickling_its_status_line_fails_the_post_at_its_deadline() -> None:
    # httpx's timeout bounds each read, not the POST: a receiver (or proxy) sending its status line and
    # headers a byte at a time under it held the webhook's thread as long as it went on (38 s under 2 s).
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    released, answered = threading.Event(), threading.Event()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            for i in range(len(head)):  # 4 s in all, unless the test is done
                self.wfile.write(head[i : i + 1])
                self.wfile.flush()
                released.wait(0.1)
            answered.set()

    server = LocalServer(Handler)
    hook = WebhookNotifier(
        f"{server.url}/hook", name="webhook:slow", timeout_seconds=1, call_deadline_seconds=0.3
    )
    try:
        with pytest.raises(BackendError, match="abandoned") as caught:
            hook.deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
        assert caught.value.retryable
        assert not answered.is_set(), "the POST ended while its answer still trickled"
    finally:
        released.set()
        hook.close()
        server.close()


def test_a_429_with_retry_after_pauses_the_receiver() -> None:
    receiver = Receiver(429, headers={"Retry-After": "30"})
    with pytest.raises(BackendError) as caught:
        receiver.hook().deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    assert (caught.value.retryable, caught.value.retry_after) == (True, 30.0)


@pytest.mark.parametrize(
    ("events", "priorities", "known", "change", "wanted"),
    [
        (WEBHOOK_EVENTS, ("P0", "P1", "P2", "P3"), False, 0, True),
        (("opened", "resolved"), ("P0", "P1", "P2", "P3"), True, 2, False),
        (("opened", "resolved"), ("P0", "P1", "P2", "P3"), True, 4, True),
        (WEBHOOK_EVENTS, ("P0",), False, 2, False),
        (WEBHOOK_EVENTS, ("P0",), True, 2, True),
    ],
    ids=["defaults", "event-left-out", "event-listed", "priority-left-out", "known-incident-goes-on"],
)
def test_events_and_priorities_choose_what_is_sent(
    events: tuple[str, ...], priorities: tuple[str, ...], known: bool, change: int, wanted: bool
) -> None:
    hook = WebhookNotifier("http://receiver/hook", events=events, priorities=priorities)
    assert hook.wants(build_notification(lifecycle()[change]), known=known) is wanted  # [2] is at P1
    hook.close()


def test_the_webhook_events_are_the_incident_changes() -> None:
    assert tuple(k.value for k in ChangeKind) == WEBHOOK_EVENTS


def test_a_transport_error_naming_the_url_is_kept_without_its_path_or_query() -> None:
    """The error goes to the log and to ``GET /api/v1/outbox``: a proxy or transport that names the URL in
    its message must not put the webhook's credential there."""
    url = "http://receiver:8080/services/T000/B000/XOXSECRETPATH?api_key=QUERYSECRET"

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"proxy refused CONNECT to {request.url}", request=request)

    hook = WebhookNotifier(url, client=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(BackendError) as caught:
        hook.deliver(build_notification(lifecycle()[0]), ThreadState(), retry=False, save=nothing)
    assert "SECRET" not in str(caught.value)
    assert "proxy refused CONNECT to http://receiver:8080/**********" in str(caught.value)


def test_an_escalation_of_an_incident_merged_away_in_its_transaction_says_it_pages_nobody() -> None:
    # A rack's power loss raised a node's incident to P0 and merged it into the rack's in one POST: Slack
    # pages for the rack's only; a receiver paging on `escalated` paged twice for one fault.
    inc = make_incident("inc-n1", priority=Priority.P0)
    data = {"from": "P2", "to": "P0"}
    raised = change(inc, ChangeKind.PRIORITY_CHANGED, 1, "P2 -> P0: rack r07 lost power", "priority", data)
    also = ("alert NodeDown (n0702) firing",)
    receiver = Receiver()
    for c in (raised, replace(raised, merging=True, also=also)):
        receiver.hook().deliver(build_notification(c), ThreadState(), retry=False, save=nothing)
    alone, merged = (body["event"] for body in receiver.bodies())
    assert (alone["escalated"], alone["pages"], alone["also"]) == (True, True, [])
    assert (merged["escalated"], merged["pages"], merged["also"], merged["also_total"]) == (
        True,
        False,
        [*also],
        1,
    )


def test_an_opening_pages_unless_its_transaction_merged_it_away() -> None:
    # A receiver pages on `pages`: a new P0 incident is what must page most, and an incident opened and merged
    # into another in one POST pages nobody (the one it went into pages, once for the fault).
    opened = lifecycle()[0]
    receiver = Receiver()
    for c in (opened, replace(opened, merging=True)):
        receiver.hook().deliver(build_notification(c), ThreadState(), retry=False, save=nothing)
    assert [(body["change"], body["event"]["pages"]) for body in receiver.bodies()] == [
        ("opened", True),
        ("opened", False),
    ]


def test_a_persons_change_names_them_and_the_engines_names_nobody() -> None:
    inc = make_incident("inc-n1")
    by_dave = change(inc, ChangeKind.MITIGATING, 2, "draining node n0701", "mitigating", {"by": "dave"})
    receiver = Receiver()
    for c in (lifecycle()[0], by_dave):
        receiver.hook().deliver(build_notification(c), ThreadState(), retry=False, save=nothing)
    assert [body["event"]["by"] for body in receiver.bodies()] == ["", "dave"]


def test_times_are_written_as_alertmanagers_webhook_writes_them_in_utc_with_a_z() -> None:
    # The payload said "2026-01-01T00:30:00+00:00" where Alertmanager's webhook and gpuwarden's API say
    # "...Z" (Go's RFC 3339); an aware time in another zone is written in UTC, not with its offset.
    n = build_notification(lifecycle()[3])
    in_berlin = timezone(timedelta(hours=1))
    n = n.model_copy(
        update={
            "opened_at": n.opened_at.astimezone(in_berlin),
            "resolved_at": n.event_at + timedelta(minutes=5),
            "silenced_until": n.event_at + timedelta(hours=1, microseconds=250_000),
        }
    )
    body = webhook_payload(n, first_for_receiver=True)
    written = {
        "opened_at": body["incident"]["opened_at"],
        "resolved_at": body["incident"]["resolved_at"],
        "silenced_until": body["incident"]["silenced_until"],
        "at": body["event"]["at"],
    }
    utc = {
        "opened_at": n.opened_at,
        "resolved_at": n.resolved_at,
        "silenced_until": n.silenced_until,
        "at": n.event_at,
    }
    assert all(text.endswith("Z") and "+" not in text for text in written.values()), written
    assert {k: datetime.fromisoformat(v) for k, v in written.items()} == utc  # the same instants
    assert written["opened_at"] == rfc3339(n.opened_at.astimezone(UTC))
    assert written["silenced_until"].endswith(".250000Z")
