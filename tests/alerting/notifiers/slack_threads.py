"""A SlackNotifier on the local recorder, thread state kept as the outbox keeps it, and a delivery."""

from __future__ import annotations

from alerting.notifiers.base import Notification, ThreadState
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from gpuwarden.clock import Clock


def notifier_for(
    recorder: SlackRecorder,
    *,
    channel: str = "#gpu-incidents",
    retries: int = 3,
    deadline: float = 30.0,
    clock: Clock | None = None,
    **options: bool,
) -> SlackNotifier:
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=retries)
    return SlackNotifier(client, channel, call_deadline_seconds=deadline, clock=clock, **options)


class Threads:
    """Keeps thread state like the outbox does, and remembers every save."""

    def __init__(self) -> None:
        self.state = ThreadState()
        self.saves: list[ThreadState] = []

    def save(self, state: ThreadState) -> None:
        self.state = state
        self.saves.append(state)


def deliver(notifier: SlackNotifier, threads: Threads, n: Notification, *, retry: bool = False) -> None:
    notifier.deliver(n, threads.state, retry=retry, save=threads.save)
