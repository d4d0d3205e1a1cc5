"""What the outbox's tests deliver through: Slack notifiers on the recorder, the replies a thread got,
a notifier that dies mid-delivery, and the flipping webhook edits case, run on PostgreSQL too."""

from __future__ import annotations

from sqlalchemy import Engine

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.outbox_tables import DISCARDED, SENT
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import Clock, FakeClock
from gpuwarden.config_notify import WebhookConfig
from tests.alerting.notifiers.incidents import change, lifecycle, make_incident, reassessed

REPLY_ORDER = ["opened", "priority_changed", "acknowledged", "mitigating", "resolved"]


def slack(
    recorder: SlackRecorder, channel: str = "#gpu-incidents", clock: Clock | None = None
) -> SlackNotifier:
    """``clock``: the outbox's, where a test moves it past a rate limit the notifier keeps too."""
    return SlackNotifier(
        make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0), channel, clock=clock
    )


def reply_kinds(recorder: SlackRecorder, ts: str) -> list[str]:
    return [r.event for r in recorder.replies(ts)]


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler in the outbox catches it."""


class CrashAfterSend:
    """Delivers through the real notifier, then dies before the outbox can mark the message sent."""

    def __init__(self, inner: SlackNotifier | WebhookNotifier, *, before_saving_thread: bool = False) -> None:
        self.inner = inner
        self.before_saving_thread = before_saving_thread

    @property
    def name(self) -> str:
        return self.inner.name

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        self.inner.deliver(
            notification, thread, retry=retry, save=ts_lost(save) if self.before_saving_thread else save
        )
        raise Crash


def ts_lost(save: ThreadSaver) -> ThreadSaver:
    """``save``, dying at the first save of a posted message's ``ts``: where a post goes, saved before it
    is posted, is kept."""

    def lost(state: ThreadState) -> None:
        if state.ts is not None:
            raise Crash
        save(state)

    return lost


def webhook_edits_flipping_every_30_s(engine: Engine, recorder: SlackRecorder, restarts: bool) -> None:
    """``test_outbox_edits``' flipping recommendation on the store ``engine`` (SQLite or PostgreSQL)."""
    clock = FakeClock()
    config = WebhookConfig(name="ops", url=f"{recorder.root_url}/hooks/ops")
    hooks: list[WebhookNotifier] = []

    def serve() -> Outbox:
        hooks.append(WebhookNotifier.from_config(config, clock=clock))
        return Outbox(engine, [hooks[-1]], clock)

    outbox = serve()
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    advice = ["reset_gpu", "restart_node"]
    for k in range(1, 21):  # 00:00:30 to 00:10:00
        clock.advance(30)
        if restarts and k % 7 == 0:
            outbox = serve()
        outbox(reassessed(advice[k % 2], k / 2))
        outbox.dispatch_due()
    clock.advance(60)
    outbox.dispatch_due()
    clock.advance(30)
    outbox(reassessed(advice[1], 11.5))  # held until 00:16:30
    clock.advance(10)
    outbox(change(make_incident(), ChangeKind.UPDATED, 12, "note by alice: looking", "note"))
    outbox.dispatch_due()
    posts = [(p["event"]["kind"], p["incident"]["recommended_actions"]) for p in recorder.hook_posts("ops")]
    assert posts == [
        ("opened", []),
        ("reassessed", [advice[1]]),  # 00:05:30: the flip of then, those before it set aside
        ("reassessed", [advice[0]]),  # 00:11:00: the last flip, of 00:10:00
        ("note", []),
    ]
    assert outbox.counts() == {SENT: 4, DISCARDED: 19}
    for hook in hooks:
        hook.close()
