"""The outbox's metrics: deliveries, retries, failures, filtered changes and queue depth, by notifier."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.outbox_metrics import OutboxCollector
from gpuwarden.clock import FakeClock
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.store_scenarios import a_held_update_is_counted_held_not_pending


def slack(recorder: SlackRecorder) -> SlackNotifier:
    return SlackNotifier(make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0), "C1")


def test_metrics_show_deliveries_retries_and_queue_depth(sql: Engine, recorder: SlackRecorder) -> None:
    registry = CollectorRegistry()
    outbox = Outbox(sql, [slack(recorder)], FakeClock())
    registry.register(OutboxCollector(outbox))
    changes = lifecycle()
    outbox(changes[0])
    outbox.dispatch_due()
    recorder.stop()
    outbox(changes[1])
    outbox.dispatch_due()

    slack_only = {"notifier": "slack"}
    assert registry.get_sample_value("gpuwarden_notifications_sent_total", slack_only) == 1
    assert registry.get_sample_value("gpuwarden_notification_retries_total", slack_only) == 1
    assert registry.get_sample_value("gpuwarden_notification_failures_total", slack_only) == 0
    assert registry.get_sample_value("gpuwarden_outbox_messages", {**slack_only, "status": "pending"}) == 1
    assert registry.get_sample_value("gpuwarden_outbox_messages", {**slack_only, "status": "sent"}) == 1


def test_each_notifier_has_its_own_series_from_the_start(sql: Engine, recorder: SlackRecorder) -> None:
    registry = CollectorRegistry()
    up = WebhookNotifier(f"{recorder.root_url}/hooks/up", name="webhook:up")
    down = WebhookNotifier(f"{recorder.root_url}/hooks/down", name="webhook:down")
    picky = WebhookNotifier(f"{recorder.root_url}/hooks/picky", name="webhook:picky", events=["resolved"])
    outbox = Outbox(sql, [slack(recorder), up, down, picky], FakeClock())
    registry.register(OutboxCollector(outbox))
    for name in ("slack", "webhook:up", "webhook:down", "webhook:picky"):  # before any change: at 0
        assert registry.get_sample_value("gpuwarden_notification_failures_total", {"notifier": name}) == 0
        assert (
            registry.get_sample_value("gpuwarden_outbox_messages", {"notifier": name, "status": "sent"}) == 0
        )

    recorder.fail_next("hook:down", status=404)  # refused for good
    recorder.fail_next("chat.postMessage", status=500)  # retried
    outbox(lifecycle()[0])
    outbox.dispatch_due()

    def sample(metric: str, notifier: str, **labels: str) -> float | None:
        return registry.get_sample_value(metric, {"notifier": notifier, **labels})

    assert sample("gpuwarden_notifications_sent_total", "webhook:up") == 1
    assert sample("gpuwarden_notifications_sent_total", "webhook:down") == 0
    assert sample("gpuwarden_notification_failures_total", "webhook:down") == 1
    assert sample("gpuwarden_notification_retries_total", "slack") == 1
    assert sample("gpuwarden_notification_retries_total", "webhook:up") == 0
    assert sample("gpuwarden_notifications_filtered_total", "webhook:picky") == 1  # "opened" is not wanted
    assert sample("gpuwarden_outbox_messages", "webhook:down", status="failed") == 1
    assert sample("gpuwarden_outbox_messages", "slack", status="pending") == 1
    assert sample("gpuwarden_outbox_messages", "webhook:picky", status="pending") == 0
    for hook in (up, down, picky):
        hook.close()


def test_a_rate_limit_pause_shows_the_seconds_left_on_metrics(sql: Engine, recorder: SlackRecorder) -> None:
    # During Slack's pause (up to an hour) only the pending depth grew: nothing said the outbox was waiting on
    # purpose, nor until when.
    registry = CollectorRegistry()
    clock = FakeClock()
    hook = WebhookNotifier(f"{recorder.root_url}/hooks/up", name="webhook:up")
    outbox = Outbox(sql, [slack(recorder), hook], clock)
    registry.register(OutboxCollector(outbox))
    assert registry.get_sample_value("gpuwarden_notifier_paused_seconds", {"notifier": "slack"}) == 0
    recorder.fail_next("chat.postMessage", status=429, retry_after=600)
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    clock.advance(100)
    assert registry.get_sample_value("gpuwarden_notifier_paused_seconds", {"notifier": "slack"}) == 500
    assert registry.get_sample_value("gpuwarden_notifier_paused_seconds", {"notifier": "webhook:up"}) == 0
    clock.advance(500)
    assert registry.get_sample_value("gpuwarden_notifier_paused_seconds", {"notifier": "slack"}) == 0


def test_a_webhook_update_held_on_purpose_is_counted_held_not_pending(
    sql: Engine, recorder: SlackRecorder
) -> None:
    # A webhook's ``reassessed`` update waits ``edit_interval_seconds`` (300 s) on purpose: an alert on
    # pending > 0 for 5 minutes must not page for it. It is counted held until it is due, then pending.
    a_held_update_is_counted_held_not_pending(sql, recorder)


def test_a_message_waiting_out_a_rate_limit_is_pending_not_held(sql: Engine, recorder: SlackRecorder) -> None:
    # A refused first attempt goes back to 0 attempts with a later next attempt, as a held update has: it is
    # the backlog (``gpuwarden_notifier_paused_seconds`` says why it waits), not held on purpose.
    registry = CollectorRegistry()
    outbox = Outbox(sql, [slack(recorder)], FakeClock())
    registry.register(OutboxCollector(outbox))
    recorder.fail_next("chat.postMessage", status=429, retry_after=600)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 0 and outbox.paused("slack")
    slack_only = {"notifier": "slack"}
    assert registry.get_sample_value("gpuwarden_outbox_messages", {**slack_only, "status": "pending"}) == 1
    assert registry.get_sample_value("gpuwarden_outbox_messages", {**slack_only, "status": "held"}) == 0
