"""A retried delivery's lookup of what an earlier attempt may have posted, read page by page with Slack's
cursor: a page that failed is where the retry goes on, not the first page (``slack_lookups``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from alerting.notifiers import slack_lookups
from alerting.notifiers.base import Notification, build_notification
from alerting.notifiers.recorder import RecordedCall, SlackRecorder
from alerting.notifiers.slack import SlackNotifier
from gpuwarden.clock import FakeClock
from gpuwarden.errors import BackendError
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.notifiers.slack_threads import Threads, deliver, notifier_for

CHANNEL = "C0123456789"


def _fail_after(recorder: SlackRecorder, method: str, answered: int, *, status: int = 503) -> None:
    """The call of ``method`` after its first ``answered`` ones fails with ``status`` (a 429 asks to wait
    10 s)."""
    seen = []

    def on_call(call: RecordedCall) -> None:
        if call.method == method:
            seen.append(call)
            if len(seen) == answered:
                retry_after = 10 if status == 429 else None
                recorder.fail_next(
                    method, status=status, error="service_unavailable", retry_after=retry_after
                )

    recorder.on_call = on_call


@contextmanager
def _posted_under_others(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[SlackRecorder, SlackNotifier, Notification]]:
    """An incident's first message that reached Slack (its answer lost), then 5 other bots' in its channel:
    read newest first, 2 a page, it is on the third page."""
    monkeypatch.setattr(slack_lookups, "HISTORY_PAGE", 2)
    opened = build_notification(lifecycle()[0])
    clock = FakeClock(opened.event_at.timestamp() + 2)
    with SlackRecorder(clock=clock) as recorder:
        notifier = notifier_for(recorder, channel=CHANNEL, clock=clock)
        deliver(notifier, Threads(), opened)
        recorder.post_as_others(CHANNEL, 5)
        yield recorder, notifier, opened


def _cursors(recorder: SlackRecorder, method: str) -> list[str | None]:
    """The cursor of every call of ``method``, answered or failed, in order."""
    return [c.params.get("cursor") or None for c in recorder.calls if c.method == method]


@pytest.mark.parametrize("status", [503, 429], ids=["unavailable", "rate-limited"])
def test_a_retried_reply_whose_thread_lookup_failed_at_a_page_reads_on_from_that_page(
    recorder: SlackRecorder, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    # The third page of a long thread answered 503 (or 429): the retry read the thread again from its first
    # page, each page a call of Slack's Tier 3 budget that every incident's lookups share in a storm.
    monkeypatch.setattr(slack_lookups, "REPLIES_PAGE", 2)
    clock = FakeClock()
    notifier, threads = notifier_for(recorder, clock=clock), Threads()
    changes = lifecycle()
    for c in changes:
        deliver(notifier, threads, build_notification(c))
    resolved = build_notification(changes[-1])
    _fail_after(recorder, "conversations.replies", 2, status=status)
    with pytest.raises(BackendError) as failed:
        deliver(notifier, threads, resolved, retry=True)
    assert failed.value.retryable

    recorder.on_call = None
    clock.advance(10)  # a 429's Retry-After, which holds the method (``pacing.MethodLimits``)
    deliver(notifier, threads, resolved, retry=True)

    cursors = _cursors(recorder, "conversations.replies")
    assert len(cursors) == 4, "pages 1 and 2, page 3 failed, page 3 again"
    assert cursors[3] is not None and cursors[3] == cursors[2]
    [parent] = recorder.channel_messages()
    assert len(recorder.replies(parent.ts)) == 5, (
        "the resolution on the third page was found, not posted again"
    )


def test_a_retried_first_post_whose_history_lookup_failed_at_a_page_reads_on_from_that_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _posted_under_others(monkeypatch) as (recorder, notifier, opened):
        _fail_after(recorder, "conversations.history", 1)
        fresh = Threads()
        with pytest.raises(BackendError):
            deliver(notifier, fresh, opened, retry=True)

        recorder.on_call = None
        deliver(notifier, fresh, opened, retry=True)

        parents = [m for m in recorder.channel_messages() if m.metadata]
        assert len(parents) == 1 and fresh.state.ts == parents[0].ts
        cursors = _cursors(recorder, "conversations.history")
        assert len(cursors) == 4, "page 1, page 2 failed, pages 2 and 3"
        assert cursors[2] is not None and cursors[2] == cursors[1]


def test_a_resumed_lookup_whose_cursor_slack_no_longer_takes_reads_from_the_start_and_posts_nothing_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slack answers invalid_cursor to a cursor it no longer takes: read as a lookup it refuses for good, the
    # retry would post the message again.
    with _posted_under_others(monkeypatch) as (recorder, notifier, opened):
        _fail_after(recorder, "conversations.history", 1)
        fresh = Threads()
        with pytest.raises(BackendError):
            deliver(notifier, fresh, opened, retry=True)

        recorder.on_call = None
        recorder.fail_next("conversations.history", status=200, error="invalid_cursor")
        deliver(notifier, fresh, opened, retry=True)

        parents = [m for m in recorder.channel_messages() if m.metadata]
        assert len(parents) == 1 and fresh.state.ts == parents[0].ts
        assert _cursors(recorder, "conversations.history")[3] is None, "read again from the first page"


def test_a_thread_lookup_stops_at_its_page_budget_says_so_and_posts(
    recorder: SlackRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The thread's lookup, its resolution on the third page of two replies, at most two pages read.
    monkeypatch.setattr(slack_lookups, "REPLIES_PAGE", 2)
    monkeypatch.setattr(slack_lookups, "HISTORY_PAGES", 2)
    notifier, threads = notifier_for(recorder), Threads()
    changes = lifecycle()
    for c in changes:
        deliver(notifier, threads, build_notification(c))
    with caplog.at_level(logging.WARNING, logger="alerting.notifiers.slack"):
        deliver(notifier, threads, build_notification(changes[-1]), retry=True)
    [parent] = recorder.channel_messages()
    assert len(recorder.replies(parent.ts)) == 6, "not found within two pages: posted again"
    assert len([c for c in recorder.calls if c.method == "conversations.replies"]) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "slack thread lookup stopped after 2 calls, posting (a repeat is possible)"
        f" channel={parent.channel} ts={parent.ts}"
    ]


def test_a_history_lookup_stops_at_its_page_budget_says_so_and_posts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(slack_lookups, "HISTORY_PAGES", 2)
    with _posted_under_others(monkeypatch) as (recorder, notifier, opened):
        with caplog.at_level(logging.WARNING, logger="alerting.notifiers.slack"):
            deliver(notifier, Threads(), opened, retry=True)
        assert len([m for m in recorder.channel_messages() if m.metadata]) == 2, "posted again"
        assert len([c for c in recorder.calls if c.method == "conversations.history"]) == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"slack history lookup stopped after 2 calls, posting (a repeat is possible) channel={CHANNEL}"
    ]
