"""The outbox while a destination fails: Slack or a webhook down, refusing, rate limiting or hanging, and
the store itself down: messages wait and back off, and go out once, in order, when it is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Backoff, Outbox
from alerting.outbox_metrics import OutboxCollector
from alerting.outbox_tables import FAILED, PENDING, SENT
from gpuwarden.clock import FakeClock, SystemClock
from tests.alerting.notifiers.incidents import (
    lifecycle,
)
from tests.alerting.outbox_deliveries import REPLY_ORDER, reply_kinds, slack
from tests.http_stub import LocalServer, QuietHandler


def test_slack_outage_delays_messages_and_delivers_them_once_in_order_when_back(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock, backoff=Backoff(initial_seconds=2, max_seconds=60))
    changes = lifecycle()
    outbox(changes[0])
    outbox.dispatch_due()
    recorder.stop()
    for c in changes[1:]:
        outbox(c)

    for _ in range(6):  # a long outage: backoff grows, nothing is lost
        assert outbox.dispatch_due() == 0
        clock.advance(60)
    waiting = outbox.messages(PENDING)
    assert len(waiting) == 4
    assert waiting[0].attempts == 6
    assert all(m.attempts == 0 for m in waiting[1:]), "later messages of the incident wait behind the first"

    recorder.start()  # same port, Slack is back
    clock.advance(60)
    assert outbox.dispatch_due() == 4
    assert outbox.dispatch_due() == 0
    [parent] = recorder.channel_messages()
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER


def test_backoff_waits_longer_after_each_failure(engine: Engine, recorder: SlackRecorder) -> None:
    clock = FakeClock()
    outbox = Outbox(
        engine, [slack(recorder)], clock, backoff=Backoff(initial_seconds=2, factor=2, max_seconds=5)
    )
    recorder.set_outage(500)
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    [row] = outbox.messages()
    assert row.next_attempt_at == clock.time() + 2
    clock.advance(1)
    outbox.dispatch_due()
    assert outbox.messages()[0].attempts == 1, "not retried before the backoff ends"
    clock.advance(1)
    outbox.dispatch_due()
    assert outbox.messages()[0].next_attempt_at == clock.time() + 4
    clock.advance(4)
    outbox.dispatch_due()
    assert outbox.messages()[0].next_attempt_at == clock.time() + 5, "capped"
    assert "service_unavailable" in (outbox.messages()[0].last_error or "")

    recorder.set_outage(None)
    clock.advance(5)
    assert outbox.dispatch_due() == 1
    assert len(recorder.channel_messages()) == 1


def test_slack_failing_does_not_hold_back_the_webhook(engine: Engine, recorder: SlackRecorder) -> None:
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/oncall", name="webhook:oncall")
    outbox = Outbox(engine, [slack(recorder), webhook], FakeClock())
    recorder.fail_next("chat.postMessage", status=500, times=10)
    outbox(lifecycle("inc-a")[0])
    outbox(lifecycle("inc-b")[0])

    assert outbox.dispatch_due() == 2
    assert [p["incident"]["id"] for p in recorder.hook_posts("oncall")] == ["inc-a", "inc-b"]
    assert recorder.channel_messages() == []
    webhook.close()


def test_a_message_slack_refuses_for_good_is_failed_and_the_next_one_goes(
    engine: Engine, recorder: SlackRecorder
) -> None:
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    changes = lifecycle()
    outbox(changes[0])
    outbox(changes[1])
    # (A channel the app cannot post to holds the incident instead: test_outbox_slack_channels.)
    recorder.fail_next("chat.postMessage", status=200, error="invalid_arguments")
    assert outbox.dispatch_due() == 1
    statuses = [m.status for m in outbox.messages()]
    assert statuses == [FAILED, SENT]
    assert "invalid_arguments" in (outbox.messages()[0].last_error or "")

    # The next one went out and made the incident's message: the failed one, sent now, would set it back
    # to what it said then. It stays failed (and says so).
    assert outbox.requeue_failed() == (0, 1)
    assert [m.status for m in outbox.messages()] == [FAILED, SENT]


def test_messages_that_failed_for_good_go_out_in_order_once_queued_again(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # Slack refuses the call's arguments: every message fails for good until someone fixes it and queues
    # them again. (A revoked token holds them instead: test_outbox_slack_refusals.)
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    for step in lifecycle()[:3]:
        outbox(step)
    for _ in range(3):
        recorder.fail_next("chat.postMessage", status=200, error="invalid_arguments")
    outbox.dispatch_due()
    outbox.dispatch_due()
    assert [m.status for m in outbox.messages()] == [FAILED, FAILED, FAILED]
    assert outbox.requeue_failed(incident_id="inc-other") == (0, 0)
    assert outbox.requeue_failed() == (3, 0)
    assert outbox.dispatch_due() == 3
    assert [m.status for m in outbox.messages()] == [SENT, SENT, SENT]
    assert [m.id for m in outbox.messages(status=SENT, limit=2)] == [m.id for m in outbox.messages()][1:]


def test_webhook_messages_are_retried_through_the_outbox(engine: Engine, recorder: SlackRecorder) -> None:
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [webhook], clock)
    recorder.fail_next("hook:ops", status=503, times=2)
    for c in lifecycle():
        outbox(c)
    outbox.dispatch_due()
    clock.advance(10)
    outbox.dispatch_due()
    clock.advance(10)
    assert outbox.dispatch_due() == 5
    assert [p["change"] for p in recorder.hook_posts("ops")] == REPLY_ORDER
    webhook.close()


def test_a_rate_limit_pauses_every_call_to_slack_until_its_retry_after_has_passed(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock)
    for incident_id in ("inc-a", "inc-b", "inc-c"):
        outbox(lifecycle(incident_id)[0])
    recorder.fail_next("chat.postMessage", status=429, retry_after=60)
    assert outbox.dispatch_due() == 0
    for _ in range(59):  # Slack asked for 60 s: no call at all meanwhile, for any incident
        clock.advance(1)
        assert outbox.dispatch_due() == 0
    assert len(recorder.calls) == 1
    clock.advance(1)
    assert outbox.dispatch_due() == 3
    # Refused, certainly not posted: the retry posts at once, without looking in the channel's history.
    assert {c.method for c in recorder.calls} == {"chat.postMessage"}  # parents and their replies
    assert len(recorder.channel_messages()) == 3


def test_once_a_delivery_succeeds_messages_backing_off_after_the_outage_go_at_once(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock, backoff=Backoff(initial_seconds=2, max_seconds=300))
    first = lifecycle("inc-a")
    outbox(first[0])
    outbox(first[1])
    recorder.set_outage(503)
    for _ in range(7):  # a long outage: the head of inc-a's queue backs off further each time
        outbox.dispatch_due()
        clock.advance(outbox.messages(PENDING)[0].next_attempt_at - clock.time())
    outbox.dispatch_due()
    assert outbox.messages(PENDING)[0].next_attempt_at - clock.time() >= 128
    recorder.set_outage(None)  # Slack is back; a new incident's message is the first to go
    outbox(lifecycle("inc-b")[0])
    assert outbox.dispatch_due() == 3  # then inc-a's two, at once and in order, not minutes later
    thread, new = outbox.thread("slack", "inc-a"), outbox.thread("slack", "inc-b")
    assert thread is not None and thread.ts is not None and new is not None
    assert [m.ts for m in recorder.channel_messages()] == [new.ts, thread.ts]
    assert reply_kinds(recorder, thread.ts) == REPLY_ORDER[:2]


def _store_down(*args: object, **kwargs: object) -> int:
    raise OperationalError("SELECT", {}, Exception("connection refused"))


def test_a_store_outage_keeps_the_queue_depth_on_metrics_and_logs_one_traceback(
    engine: Engine, recorder: SlackRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [slack(recorder), webhook], clock)  # two dispatch loops meet the outage
    registry.register(OutboxCollector(outbox))
    outbox(lifecycle()[0])
    assert registry.get_sample_value("gpuwarden_outbox_up") == 1
    monkeypatch.setattr(outbox, "counts_by_notifier", _store_down)
    monkeypatch.setattr(outbox, "dispatch_due", _store_down)
    # The last depth known, flagged as not current; an alert on pending > 0 does not go absent.
    pending = {"notifier": "slack", "status": "pending"}
    assert registry.get_sample_value("gpuwarden_outbox_messages", pending) == 1
    assert registry.get_sample_value("gpuwarden_outbox_up") == 0
    stop = threading.Event()
    rounds = iter(range(5))
    monkeypatch.setattr(clock, "sleep", lambda s: next(rounds, None) is None and stop.set())
    outbox.run(stop)
    assert outbox.stats.errors == 0  # the store's outage is no outbox error
    assert [r.levelname for r in caplog.records if r.name == "alerting.outbox"].count("ERROR") == 1
    assert sum(r.exc_info is not None for r in caplog.records if r.name == "alerting.outbox") == 1
    webhook.close()


class HangingReceiver:
    """A webhook receiver that holds every POST unanswered until released (a hung far end)."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.held.set()
                receiver.release.wait(120)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = LocalServer(Handler)
        self.url = f"{self.server.url}/hooks/slow"

    def close(self) -> None:
        self.release.set()
        self.server.close()


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Whether ``check`` came true before ``timeout`` seconds passed (a deadline, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_hanging_webhook_never_delays_slack_messages(engine: Engine, recorder: SlackRecorder) -> None:
    hanging = HangingReceiver()
    # Listed first, so its message is the first due: one dispatcher for all would sit in its POST.
    webhook = WebhookNotifier(hanging.url, name="webhook:slow", timeout_seconds=120)
    outbox = Outbox(engine, [webhook, slack(recorder)], SystemClock())
    stop = threading.Event()
    worker = threading.Thread(target=outbox.run, args=(stop,), kwargs={"poll_seconds": 0.02})
    try:
        for c in lifecycle():
            outbox(c)
        worker.start()
        assert hanging.held.wait(20), "the webhook's POST never arrived"
        assert wait_until(lambda: outbox.counts_by_notifier().get(("slack", SENT), 0) == 5), (
            "Slack waited behind the hanging webhook"
        )
        [parent] = recorder.channel_messages()
        assert reply_kinds(recorder, parent.ts) == REPLY_ORDER
        assert outbox.counts_by_notifier().get(("webhook:slow", SENT), 0) == 0
        hanging.release.set()  # the receiver answers: its messages follow, once each and in order
        assert wait_until(lambda: outbox.counts_by_notifier().get(("webhook:slow", SENT), 0) == 5)
    finally:
        stop.set()
        hanging.close()
        worker.join(timeout=30)
        webhook.close()
    assert not worker.is_alive()
    assert [m.status for m in outbox.messages()] == [SENT] * 10
