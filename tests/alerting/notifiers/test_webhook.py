"""The generic outgoing webhook, posting to the recorder's /hooks endpoint over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from alerting.notifiers.base import ThreadState, build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import WebhookNotifier, sign
from gpuwarden.clock import FakeClock
from gpuwarden.errors import BackendError
from tests.alerting.notifiers.incidents import lifecycle


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec


def nothing(_state: ThreadState) -> None:
    raise AssertionError("a webhook keeps no thread")


def test_posts_the_incident_as_json_with_an_idempotency_key(recorder: SlackRecorder) -> None:
    hook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    n = build_notification(lifecycle()[3])
    hook.deliver(n, ThreadState(), retry=False, save=nothing)
    [body] = recorder.hook_posts("ops")
    assert body["version"] == "1"
    assert body["idempotency_key"] == n.key
    assert body["change"] == "mitigating"
    assert body["incident"]["priority"] == "P1"
    assert body["incident"]["root_cause"] == {"kind": "rack_down", "target": "rack/r07"}
    assert body["incident"]["actions_taken"] == ["drain_node node/n0701: succeeded (drained)"]
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
