"""The outbox's edits (an incident's message updated in place): only the latest of those waiting is sent,
a webhook gets them once per edit interval, and what comes after an edit, silenced or not, still goes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.outbox_tables import DISCARDED, PENDING, SENDING, SENT
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.config_notify import WebhookConfig
from tests.alerting.notifiers.incidents import (
    T0,
    change,
    lifecycle,
    make_incident,
    reassessed,
)
from tests.alerting.outbox_deliveries import (
    Crash,
    CrashAfterSend,
    reply_kinds,
    slack,
    webhook_edits_flipping_every_30_s,
)


def test_waiting_edits_of_an_incident_send_only_the_latest_and_reply_nothing(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # What the alerts recommend changed three times before a dispatch round (every scrape, say): one
    # chat.update and one webhook POST with the latest, no thread reply; the same changes told again after
    # a restart are repeats.
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [slack(recorder), webhook], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 2
    edits = [reassessed(a, k + 1) for k, a in enumerate(["investigate", "reset_gpu", "restart_node"])]
    for c in edits:
        outbox(c)
    assert outbox.dispatch_due() == 2
    [parent] = recorder.channel_messages()
    assert parent.edits == 1 and reply_kinds(recorder, parent.ts) == ["opened"]
    assert "cordon and drain the node, then reboot it" in json.dumps(parent.attachments)
    assert [p["incident"]["recommended_actions"] for p in recorder.hook_posts("ops")] == [
        [],
        ["restart_node"],
    ]
    set_aside = [m for m in outbox.messages() if m.status == DISCARDED]
    assert len(set_aside) == 4 and all("superseded by message" in str(m.last_error) for m in set_aside)
    assert outbox.stats.by_notifier_superseded == {"slack": 2, "webhook:ops": 2}
    restarted = Outbox(engine, [slack(recorder), webhook], clock)
    assert sum(restarted.enqueue(c) for c in edits) == 0 and restarted.dispatch_due() == 0
    webhook.close()


@pytest.mark.parametrize("restarts", [False, True], ids=["one-serve", "restarted"])
def test_a_recommendation_flipping_every_30_s_reaches_a_webhook_once_per_edit_interval_as_the_latest(
    engine: Engine, recorder: SlackRecorder, restarts: bool
) -> None:
    # A repeat flips what an alert recommends every 30 s all night: Slack edits its message each time, and
    # each edit was a POST of its own to a webhook, 960 a night. A configured webhook gets them at most
    # once per ``edit_interval_seconds`` (300 by default), the latest of them, whichever serve (restarted
    # every 3.5 minutes here) sends it; a change that is not an edit goes at once, in place of a held one.
    webhook_edits_flipping_every_30_s(engine, recorder, restarts)


def test_edits_queued_while_slack_rate_limits_go_out_as_the_latest_alone_once_the_pause_ends(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder, clock=clock)], clock)
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    recorder.fail_next("chat.update", status=429, retry_after=60)
    outbox(reassessed("reset_gpu", 1))
    # chat.update's limit (Slack's are per method): the incident waits, not every Slack call.
    assert outbox.dispatch_due() == 0 and not outbox.paused("slack")
    outbox(reassessed("restart_node", 2))
    outbox(reassessed("investigate", 3))
    assert outbox.dispatch_due() == 0  # the pause holds: no call, nothing set aside
    assert [m.status for m in outbox.messages()][1:] == [PENDING, PENDING, PENDING]
    clock.advance(61)
    assert outbox.dispatch_due() == 1
    [parent] = recorder.channel_messages()
    assert parent.edits == 1 and "investigate (no automatic remedy" in json.dumps(parent.attachments)
    assert [m.status for m in outbox.messages()][1:] == [DISCARDED, DISCARDED, SENT]


def test_an_edit_with_nothing_after_it_is_sent_whatever_came_before(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # Only a waiting edit is set aside, never the message after it: the incident's latest state goes out.
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock)
    opened, lowered = lifecycle()[:2]
    outbox(opened)
    outbox(reassessed("reset_gpu", 1))
    outbox(lowered)
    outbox(reassessed("restart_node", 4))
    assert outbox.dispatch_due() == 3
    [parent] = recorder.channel_messages()
    assert reply_kinds(recorder, parent.ts) == ["opened", "priority_changed"]
    assert "cordon and drain the node, then reboot it" in json.dumps(parent.attachments)


def test_an_edit_is_sent_when_the_message_after_it_is_one_the_webhook_holds_back_for_a_silence(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # What the alerts recommend changed, then a silence held the incident before the next dispatch round
    # (the webhook down for a while, say). The note told during the silence is not posted (a receiver may
    # page), so it cannot stand in for the edit: set aside, the receiver would keep the old advice until
    # the silence ends.
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [webhook], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 1
    outbox(reassessed("restart_node", 1))
    silenced = change(make_incident(), ChangeKind.UPDATED, 2, "note by alice: looking", "note")
    outbox(replace(silenced, silenced_until=T0 + timedelta(hours=4)))
    assert outbox.dispatch_due() == 2
    assert [p["incident"]["recommended_actions"] for p in recorder.hook_posts("ops")] == [
        [],
        ["restart_node"],
    ]
    assert outbox.stats.by_notifier_superseded == {}
    webhook.close()


def test_a_resolution_told_under_a_silence_is_not_held_back_by_a_webhook_update_held_before_it(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # What the alerts recommend changed (held ``edit_interval_seconds``, 300 s by default), then someone
    # silenced the noisy incident and it resolved. Told under the silence, the resolution cannot stand in
    # for the update held before it (``_stands_in``): it waited behind it, and the receiver heard of the
    # end up to 5 minutes late, where any other change goes at once. The held update goes at once then,
    # and the resolution after it.
    clock = FakeClock()
    outbox, webhook = _resolved_under_a_silence_after_a_held_update(engine, recorder, clock)
    outbox.dispatch_due()
    posts = [(p["change"], p["incident"]["recommended_actions"]) for p in recorder.hook_posts("ops")]
    assert posts == [("opened", []), ("updated", ["restart_node"]), ("resolved", [])]
    webhook.close()


def test_a_crash_mid_post_of_an_update_sent_early_does_not_hold_back_the_resolution_after_it(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # The held update went early, the resolution told under a silence waiting behind it (the test above),
    # and serve died as its POST reached the receiver. Found ``sending`` at the restart, it kept the time it
    # was held until: taken for a backoff, it and the resolution after it waited out the rest of the hold.
    clock = FakeClock()
    outbox, webhook = _resolved_under_a_silence_after_a_held_update(engine, recorder, clock)
    with pytest.raises(Crash):
        Outbox(engine, [CrashAfterSend(webhook)], clock).dispatch_due()
    assert [m.status for m in outbox.messages()] == [SENT, SENDING, PENDING, PENDING]
    clock.advance(10)
    assert Outbox(engine, [webhook], clock).dispatch_due() == 3
    assert [p["change"] for p in recorder.hook_posts("ops")][-1] == "resolved"
    webhook.close()


def _resolved_under_a_silence_after_a_held_update(
    engine: Engine, recorder: SlackRecorder, clock: FakeClock
) -> tuple[Outbox, WebhookNotifier]:
    """A webhook (``ops``) told inc-r07 opened; a ``reassessed`` update held, then 10 s later the incident
    silenced and 10 s later resolved, both told under the silence; nothing after the opening sent yet."""
    config = WebhookConfig(name="ops", url=f"{recorder.root_url}/hooks/ops")
    webhook = WebhookNotifier.from_config(config, clock=clock)
    outbox = Outbox(engine, [webhook], clock)
    opened, *_, resolved = lifecycle()
    outbox(opened)
    assert outbox.dispatch_due() == 1
    outbox(reassessed("restart_node", 1))
    assert outbox.dispatch_due() == 0  # held
    clock.advance(10)
    until = T0 + timedelta(hours=4)
    silenced = change(make_incident(), ChangeKind.UPDATED, 2, "silenced by alice until later", "silenced")
    outbox(replace(silenced, silenced_until=until))
    clock.advance(10)
    outbox(replace(resolved, silenced_until=until))
    return outbox, webhook
