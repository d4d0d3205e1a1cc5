"""SlackNotifier when Slack fails: rate limits and Retry-After, errors as backend errors that say whether to
retry, deleted messages, failed uploads, calls past their deadline, and redirects."""

from __future__ import annotations

import pytest

from alerting.notifiers.base import build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.subscriptions import ChangeKind
from gpuwarden.errors import BackendError
from tests.alerting.notifiers.incidents import change, gpu_temperature, lifecycle, make_incident
from tests.alerting.notifiers.slack_threads import Threads, deliver, notifier_for
from tests.http_stub import FixedAnswer, LocalServer, QuietHandler


def test_rate_limited_call_is_retried_after_retry_after(recorder: SlackRecorder) -> None:
    recorder.fail_next("chat.postMessage", status=429, retry_after=0)
    deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))

    posts = [c for c in recorder.calls if c.method == "chat.postMessage"]
    assert [c.status for c in posts] == [429, 200, 200]
    assert len(recorder.channel_messages()) == 1


def test_rate_limit_beyond_the_retries_is_a_retryable_backend_error(recorder: SlackRecorder) -> None:
    recorder.fail_next("chat.postMessage", status=429, retry_after=0)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder, retries=0), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable
    assert caught.value.backend == "slack"
    assert recorder.channel_messages() == []


def test_a_long_retry_after_is_left_to_the_outbox_not_slept_in_the_client(recorder: SlackRecorder) -> None:
    recorder.fail_next("chat.postMessage", status=429, retry_after=3600)
    with pytest.raises(BackendError) as caught:  # at once: the one dispatcher thread is not held an hour
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable and caught.value.retry_after == 3600  # the outbox waits that long
    assert [c.status for c in recorder.calls if c.method == "chat.postMessage"] == [429]


@pytest.mark.parametrize(
    ("header", "wait"),
    [("1.5", 1.5), ("-3", 1.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0), ("soon", 1.0)],
    ids=["fraction", "negative", "http-date", "garbage"],
)
def test_a_retry_after_the_client_cannot_sleep_on_is_the_outboxs_rate_limit(
    recorder: SlackRecorder, header: str, wait: float
) -> None:
    # slack-sdk's 429 retry reads the header with int() and sleeps it: a ValueError escaped the client, was
    # logged as a notifier crash (gpuwarden_outbox_errors_total) and the message backed off 2 s, unpaused.
    recorder.fail_next("chat.postMessage", status=429, retry_after=header)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable and caught.value.retry_after == wait
    assert [c.status for c in recorder.calls if c.method == "chat.postMessage"] == [429]


def test_a_deleted_incident_message_is_posted_again_with_the_event(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    first, second, *_ = lifecycle()
    deliver(notifier, threads, build_notification(first))
    old_ts = threads.state.ts
    recorder.fail_next("chat.update", status=200, error="message_not_found")  # someone deleted it
    deliver(notifier, threads, build_notification(second))
    assert threads.state.ts != old_ts
    new_parent = next(m for m in recorder.channel_messages() if m.ts == threads.state.ts)
    assert [r.text for r in recorder.replies(new_parent.ts)] == [
        "priority changed: P0 -&gt; P1: spare capacity found"
    ]


def test_a_chart_that_cannot_be_uploaded_does_not_hold_back_the_event(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    recorder.fail_next("files.getUploadURLExternal", status=200, error="missing_scope")
    opened = build_notification(
        change(make_incident(), ChangeKind.OPENED, 0, "opened"), series=[gpu_temperature()]
    )
    deliver(notifier, threads, opened)
    [parent] = recorder.channel_messages()
    assert [r.text for r in recorder.replies(parent.ts)] == ["opened"]
    assert recorder.files() == [] and threads.state.chart_posted  # not tried again with every event


def test_an_upload_url_answering_500_is_logged_as_an_answer_not_as_slack_unreachable(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The upload step raises urllib's HTTPError, an OSError: it said "cannot reach Slack: HTTP Error 500".
    recorder.fail_next("upload", status=500)
    opened = build_notification(
        change(make_incident(), ChangeKind.OPENED, 0, "opened"), series=[gpu_temperature()]
    )
    deliver(notifier_for(recorder), Threads(), opened)
    assert "chart not attached" in caplog.text and "answered HTTP 500" in caplog.text
    assert "cannot reach Slack" not in caplog.text


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(500, "internal_error", True), (503, "service_unavailable", True), (200, "invalid_auth", False)],
    ids=["500", "503", "invalid-auth"],
)
def test_slack_errors_become_backend_errors_that_say_whether_to_retry(
    recorder: SlackRecorder, status: int, error: str, retryable: bool
) -> None:
    recorder.fail_next("chat.postMessage", status=status, error=error)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable is retryable
    assert error in str(caught.value) or str(status) in str(caught.value)


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        ("account_inactive", "reinstall the app, set its Bot User OAuth Token (xoxb-...) and restart serve"),
        ("token_revoked", "reinstall the app, set its Bot User OAuth Token (xoxb-...) and restart serve"),
    ],
    ids=["account-inactive", "token-revoked"],
)
def test_an_error_that_fails_every_message_until_someone_acts_says_what_to_do(
    recorder: SlackRecorder, error: str, fix: str
) -> None:
    # The log and `outbox list` said "chat.postMessage failed: not_in_channel" and nothing more.
    recorder.fail_next("chat.postMessage", status=200, error=error)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    said = str(caught.value)
    assert not caught.value.retryable and caught.value.code == error
    assert said.startswith(f"slack: chat.postMessage failed: {error}; ")
    # A token's error holds every message instead (``until_fixed``): they go out once it works again.
    assert caught.value.until_fixed
    assert fix in said and said.endswith("go out in order once a call goes through")


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        ("not_in_channel", "invite the app to #gpu-incidents (`/invite @<app>` in the channel)"),
        (
            "channel_not_found",
            "set slack.channel and slack.channels_by_priority to channel ids (C..., at the bottom of the",
        ),
        ("is_archived", "unarchive #gpu-incidents"),
    ],
    ids=["not-in-channel", "channel-not-found", "archived"],
)
def test_a_first_message_its_channel_refuses_holds_its_incident_naming_the_channel_and_fix(
    recorder: SlackRecorder, error: str, fix: str
) -> None:
    # Failed for good, with "then `gpuwarden outbox retry` sends what failed meanwhile": every later message
    # of the incident failed too (each posts the first).
    recorder.fail_next("chat.postMessage", status=200, error=error)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    said = str(caught.value)
    assert caught.value.retryable and caught.value.code == error and caught.value.retry_after is not None
    assert caught.value.limit == "channel #gpu-incidents"  # this incident waits, the others go on
    assert f"goes to channel #gpu-incidents, where the app cannot post ({error})" in said and fix in said
    assert "outbox retry" not in said


def test_a_missing_scope_names_the_scope_slack_says_is_needed() -> None:
    # Slack's answer to an app without chat:write (the recorder grants every scope).
    slack = FixedAnswer(
        200, b'{"ok": false, "error": "missing_scope", "needed": "chat:write", "provided": "x"}'
    )
    try:
        notifier = SlackNotifier(make_client("xoxb-test", base_url=f"{slack.url}/api/"), "C0123456789")
        with pytest.raises(BackendError) as caught:
            deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    finally:
        slack.close()
    said = str(caught.value)
    assert (
        "missing_scope (needed: chat:write); the app's token lacks chat:write, which chat.postMessage" in said
    )
    assert caught.value.until_fixed  # every message held until it is granted, none failed


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        (200, b"<html>upstream connect error</html>", True),
        (200, b"", True),
        (404, b"<html>Not Found</html>", False),  # a wrong slack.base_url: retrying would not help
    ],
    ids=["proxy-page", "empty", "not-found"],
)
def test_an_answer_that_is_not_slacks_json_is_retried_unless_it_refuses(
    status: int, body: bytes, retryable: bool
) -> None:
    # A 200 that is no JSON comes from something on the way, not from Slack: it failed the message for good.
    proxy = FixedAnswer(status, body)
    try:
        notifier = SlackNotifier(make_client("xoxb-test", base_url=f"{proxy.url}/api/"), "C0123456789")
        with pytest.raises(BackendError) as caught:
            deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    finally:
        proxy.close()
    assert caught.value.retryable is retryable
    if retryable:
        assert "an answer that is not Slack's (HTTP 200, not JSON: " in str(caught.value)


def test_wrong_token_is_not_retryable_but_holds_every_message_until_fixed(recorder: SlackRecorder) -> None:
    notifier = SlackNotifier(make_client("xoxb-wrong", base_url=recorder.base_url), "#gpu-incidents")
    with pytest.raises(BackendError, match="invalid_auth") as caught:
        deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    assert not caught.value.retryable and caught.value.until_fixed


def test_unreachable_slack_is_retryable(recorder: SlackRecorder) -> None:
    notifier = notifier_for(recorder)
    recorder.stop()
    with pytest.raises(BackendError, match="cannot reach Slack") as caught:
        deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable


# An answer trickled under the client's read timeout (a slow proxy, or Slack itself): the deadline of these
# tests is far shorter than the trickle, so the call is seen to end while its answer still trickles.
DEADLINE = 0.5  # the call to abandon: late however fast the machine, its answer trickles for TRICKLE
TRICKLE = 10.0
IN_TIME = 30.0  # the calls that must answer: an upper bound, never waited out


def call_deadline(notifier: SlackNotifier, seconds: float) -> None:
    """Set ``notifier``'s whole-call deadline (real time). DEADLINE for every call failed on a stalled test
    process: the retry's history lookup after the trickle ended was abandoned at 0.5 s."""
    notifier._deadline.seconds = seconds


@pytest.mark.parametrize(
    ("method", "retry"),
    [
        ("chat.postMessage", False),
        ("chat.update", False),
        ("conversations.history", True),
        ("conversations.replies", True),
        ("upload", False),
    ],
    ids=["post", "update", "history-lookup", "thread-lookup", "chart-upload"],
)
def test_an_answer_trickled_under_the_read_timeout_fails_the_call_at_its_deadline(
    recorder: SlackRecorder, method: str, retry: bool
) -> None:
    # slack.timeout_seconds bounds each read, not the call: an answer trickled a byte at a time under it
    # held the Slack notifier's thread for as long as it went on (40 s under a 2 s timeout).
    notifier, threads = notifier_for(recorder, channel="C0123456789", deadline=DEADLINE), Threads()
    incident = make_incident()
    series = [gpu_temperature()] if method == "upload" else []
    opened = build_notification(change(incident, ChangeKind.OPENED, 0, "opened"), series=series)
    later = build_notification(change(incident, ChangeKind.UPDATED, 1, "2 more alerts"))
    if method in ("chat.update", "conversations.replies"):
        call_deadline(notifier, IN_TIME)
        deliver(notifier, threads, opened)
        call_deadline(notifier, DEADLINE)
    recorder.trickle_next(method, seconds=TRICKLE)
    with pytest.raises(BackendError, match="abandoned") as caught:
        deliver(notifier, threads, later if threads.state.ts else opened, retry=retry)
    assert caught.value.retryable
    # Its answer still trickles (for TRICKLE, from when the call reached the recorder: on a stalled test
    # process that can come after the call was abandoned, which read 0 here).
    assert recorder.wait_trickling() and recorder.trickling() == 1, "the call ended with its answer"


@pytest.mark.parametrize("which", ["parent", "reply"])
def test_a_post_abandoned_at_its_deadline_that_reached_slack_is_not_posted_again(
    recorder: SlackRecorder, which: str
) -> None:
    notifier, threads = notifier_for(recorder, channel="C0123456789", deadline=DEADLINE), Threads()
    changes = [build_notification(c) for c in lifecycle()[:2]]
    if which == "reply":
        call_deadline(notifier, IN_TIME)
        deliver(notifier, threads, changes[0])
        call_deadline(notifier, DEADLINE)
    n = changes[1] if which == "reply" else changes[0]
    recorder.trickle_next("chat.postMessage", seconds=TRICKLE)  # Slack posted it; its answer trickles
    with pytest.raises(BackendError, match="abandoned"):
        deliver(notifier, threads, n)
    # The retry is not made while the abandoned post may still land: it would not find it, and post again.
    with pytest.raises(BackendError, match="still ran"):
        deliver(notifier, threads, n, retry=True)
    recorder.end_trickles()
    call_deadline(notifier, IN_TIME)  # the retry waits for the abandoned post to end, then looks it up
    deliver(notifier, threads, n, retry=True)

    [parent] = recorder.channel_messages()
    assert threads.state.ts == parent.ts
    told = changes[: 1 + (which == "reply")]
    assert [r.event for r in recorder.replies(parent.ts)] == [c.event_kind for c in told]


def test_a_retry_after_longer_than_the_calls_time_left_is_the_outboxs_rate_limit(
    recorder: SlackRecorder,
) -> None:
    # slack-sdk slept a 429's Retry-After inside the call: past the call's deadline it was abandoned as a
    # timeout, not paused as a rate limit, and went on to post unwaited.
    # A 5 s deadline, not 0.5 s: the 429 itself must come within it on a loaded machine; Retry-After is
    # longer still, and is not waited (the unfixed notifier slept it and was abandoned at the deadline).
    notifier = notifier_for(recorder, deadline=5.0)
    recorder.fail_next("chat.postMessage", status=429, retry_after=10)
    with pytest.raises(BackendError) as caught:
        deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retry_after == 10.0
    assert [c.status for c in recorder.calls] == [429]


class _Redirecting(LocalServer):
    """A Slack API base URL that answers every call with ``status`` to ``location``."""

    def __init__(self, status: int, location: str) -> None:
        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_without_sending_the_bot_token_to_where_it_points(status: int) -> None:
    """urllib followed a 301, 302 or 303 from the Slack base URL with the ``Authorization: Bearer xoxb-...``
    header, to any host, and took that host's "ok" as the message posted; the webhook notifier follows no
    redirect either."""
    elsewhere = FixedAnswer(200, b'{"ok": true, "channel": "C0123456789", "ts": "1700000000.000100"}')
    redirecting = _Redirecting(status, f"{elsewhere.url}/api/chat.postMessage")
    try:
        client = make_client("xoxb-S3cret", base_url=f"{redirecting.url}/api/")
        with pytest.raises(BackendError, match=f"HTTP {status}") as caught:
            deliver(SlackNotifier(client, "C0123456789"), Threads(), build_notification(lifecycle()[0]))
    finally:
        redirecting.close()
        elsewhere.close()
    assert elsewhere.authorizations == []
    assert f"a redirect to {elsewhere.url}/********** (not followed" in str(caught.value)
    assert not caught.value.retryable
