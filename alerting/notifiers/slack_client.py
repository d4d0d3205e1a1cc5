"""The slack-sdk client the Slack notifier calls through, and the one place its errors are translated.

Short rate limits are retried inside slack-sdk by ``RateLimitErrorRetryHandler`` (it honours
``Retry-After``), up to ``MAX_RETRY_AFTER_SECONDS`` and within the call's deadline, but for the lookups
(``NOT_RETRIED_IN_CLIENT``); a longer one, or one left after those retries, is a ``BackendError`` with
``retry_after`` (the notifier says which limit: ``alerting.notifiers.pacing``). ``translate`` turns every
slack-sdk and transport error into ``BackendError(retryable=...)``;
``alerting.notifiers.slack.SlackNotifier._call`` is its only caller.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse

from alerting.notifiers.deadline import CallAbandoned, time_left
from alerting.notifiers.unredirected import UnredirectedWebClient
from gpuwarden.errors import BackendError
from gpuwarden.redaction import shown_redirect

RETRYABLE_API_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        # Slack's own passing states: an internal failure of an edit, a workspace moving into an Enterprise
        # Grid ("intermittently unavailable until the transition is complete"), a channel migrating. Each
        # failed the message for good, though the same call went through minutes later.
        "update_failed",
        "team_added_to_org",
        "external_channel_migrating",
    }
)
# Errors that refuse every call of the app until someone acts on the token or the workspace: the outbox
# holds every Slack message meanwhile (``BackendError.until_fixed``), none failed, and sends them in order
# once a call goes through (a restart with a working token). Each failed a message per attempt, for good.
UNTIL_FIXED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "team_access_not_granted",
        "two_factor_setup_required",
        "ekm_access_denied",
        "org_login_required",
        "accesslimited",
        "restricted_action",
    }
)
# ``missing_scope`` from these methods (the token lacks ``chat:write``) refuses every message until someone
# grants the scope: held as ``UNTIL_FIXED`` (each message failed, one by one). From another method (a lookup's
# ``channels:history``, a chart's ``files:write``) it refuses that call only: a warning, the message goes.
SCOPE_HOLDS = frozenset({"chat.postMessage", "chat.update"})
# Errors that say the incident's message is gone (deleted by someone): post a new one, not fail the event.
MESSAGE_GONE = frozenset({"message_not_found", "cant_update_message"})
# The workspace's message edit window passed: the message stays as it is, the change goes to its thread.
EDIT_WINDOW_CLOSED = "edit_window_closed"
# Errors that refuse a message's content: sent again they fail again, so a minimal message goes instead.
CONTENT_REFUSED = frozenset(
    {"invalid_blocks", "invalid_blocks_format", "invalid_attachments", "too_many_attachments", "msg_too_long"}
)
NOT_JSON = "Received a response in a non-JSON format"  # slack-sdk's error for an answer it cannot parse
_HELD = "Slack's messages wait meanwhile, none failed, and go out in order once a call goes through"
_TOKEN = (
    "slack.bot_token is no longer a working bot token (the app uninstalled, its token revoked or rotated, its"
    " workspace gone): reinstall the app, set its Bot User OAuth Token (xoxb-...) and restart serve; " + _HELD
)
_WORKSPACE = "Slack refuses every call of the app until a workspace admin acts; " + _HELD
# What to do about the errors that fail every message until someone acts (Slack's docs name the cause only):
# the log and `outbox list` said "not_in_channel" and no more.
FIXES = {
    "invalid_auth": _TOKEN,
    "not_authed": _TOKEN,
    "account_inactive": _TOKEN,
    "token_revoked": _TOKEN,
    "token_expired": _TOKEN,
    "not_allowed_token_type": _TOKEN,
    "team_access_not_granted": _WORKSPACE,
    "two_factor_setup_required": _WORKSPACE,
    "ekm_access_denied": _WORKSPACE,
    "org_login_required": "the workspace is moving into an Enterprise organisation; " + _HELD,
    "accesslimited": "Slack refuses calls from this network (an IP allow list); " + _HELD,
    "restricted_action": "a workspace preference forbids the app to post; " + _HELD,
    "not_in_channel": "the app is not in slack.channel: invite it (`/invite @<app>` in the channel)",
    "channel_not_found": (
        "slack.channel is no channel the app can see: set it to the channel's id (C..., at the bottom of the"
        " channel's details) and, for a private channel, invite the app"
    ),
    "is_archived": "slack.channel is archived: unarchive it or set another channel",
    "missing_scope": "grant the app the scope Slack names (needed) and reinstall it",
}
# The same, naming the channel the call went to: with slack.channels_by_priority, or a thread that stays in
# the channel its message went to, that is not always slack.channel, which the errors above sent people to.
# None of these says "`outbox retry` sends what failed": no message fails of them (an incident's message or
# thread its channel refuses is held, ``slack_stuck``); they show in the warnings of calls whose refusal
# fails nothing (a chart, a moved thread's note), where that advice sent people to retry nothing.
CHANNEL_FIXES = {
    "not_in_channel": "the app is not in channel {channel}: invite it (`/invite @<app>` in the channel)",
    "channel_not_found": (
        "{channel} is no channel the app can see: set slack.channel and slack.channels_by_priority to channel"
        " ids (C..., at the bottom of the channel's details) and, for a private channel, invite the app"
    ),
    "is_archived": "channel {channel} is archived: unarchive it or set another channel",
    # chat.update's answer in an archived (or frozen, or deleted) channel
    "is_inactive": "channel {channel} is archived or deleted: unarchive it or set another channel",
}

# The longest Retry-After slept inside the client: the outbox's dispatcher is one thread, so a 429 asking
# for an hour held every other incident's messages (the outbox retries such a message later instead).
MAX_RETRY_AFTER_SECONDS = 30
# Lookups are not retried in the client at all: the dispatcher is one thread, and their limits (Tier 3, or one
# a minute for some apps) are not the posts'; the outbox holds the incident whose retry looks (``pacing``).
NOT_RETRIED_IN_CLIENT = frozenset({"conversations.history", "conversations.replies"})


class _ShortRateLimitRetries(RateLimitErrorRetryHandler):
    """slack-sdk's 429 retry, only when Slack asks to wait at most ``MAX_RETRY_AFTER_SECONDS``."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        if urlsplit(request.url).path.rstrip("/").rsplit("/", 1)[-1] in NOT_RETRIED_IN_CLIENT:
            return False
        wait = next((v for k, v in response.headers.items() if k.lower() == "retry-after"), ["1"])
        seconds = str(wait[0] if isinstance(wait, list) and wait else wait).strip()
        # slack-sdk sleeps int(header): anything else (1.5, -3, an HTTP date) raised a ValueError out of the
        # client. Those are left to the outbox, which reads them as it can (``_retry_after``).
        if not (seconds.isascii() and seconds.isdigit() and int(seconds) <= MAX_RETRY_AFTER_SECONDS):
            return False
        # Nor one the call's deadline would cut short (slack-sdk sleeps up to a second more than asked):
        # slept past it, the call was abandoned as a timeout (no pause) and went on unwaited; the outbox
        # waits it out as a rate limit instead.
        left = time_left()
        return left is None or int(seconds) + 1 < left


def make_client(
    token: str, *, base_url: str = "https://slack.com/api/", timeout: int = 10, rate_limit_retries: int = 3
) -> WebClient:
    """A WebClient that retries short 429s after ``Retry-After``; every other retry is the outbox's. It
    follows no redirect (``alerting.notifiers.unredirected``)."""
    return UnredirectedWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=[_ShortRateLimitRetries(max_retry_count=rate_limit_retries)],
    )


def _header(headers: object, name: str, default: Any) -> Any:
    """The value of header ``name`` (lower case) in an answer's headers (any case), or ``default``."""
    items = headers.items() if isinstance(headers, dict) else ()
    return next((v for k, v in items if str(k).lower() == name), default)


def _retry_after(headers: object) -> float:
    """Seconds a rate-limited answer asks to wait (``Retry-After``); 1 s when it names none, as slack-sdk,
    or none it is sure of (negative, not a number, an HTTP date). The outbox bounds a long one."""
    wait = _header(headers, "retry-after", "1")
    try:
        seconds = float(wait[0] if isinstance(wait, list) else wait)
    except (TypeError, ValueError, IndexError):
        return 1.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 1.0


def _detail(data: object) -> str:
    """What Slack says is wrong besides the error code: ``errors`` (with ``invalid_blocks``, the offending
    fields) and ``response_metadata.messages``; empty when it says nothing more."""
    if not isinstance(data, dict):
        return ""
    said = data.get("errors")
    notes = [str(e) for e in said] if isinstance(said, list) else ([str(said)] if said else [])
    if data.get("needed"):  # missing_scope: the scope the call needs
        notes.append(f"needed: {data['needed']}")
    meta = data.get("response_metadata")
    messages = meta.get("messages") if isinstance(meta, dict) else None
    notes += [str(m) for m in messages] if isinstance(messages, list) else []
    shown = "; ".join(notes[:10]) + (f"; and {len(notes) - 10} more" if len(notes) > 10 else "")
    return f" ({shown[:2000]})" if shown else ""


def _scope_fix(method: str, data: object) -> str:
    """What to do about ``missing_scope`` from ``method`` (``SCOPE_HOLDS``): grant the scope Slack names in
    its answer's ``needed`` (chat:write when it names none), reinstall the app."""
    needed = data.get("needed") if isinstance(data, dict) else None
    scope = str(needed) if needed else "chat:write"
    return (
        f"the app's token lacks {scope}, which {method} needs: add it to the app's bot token scopes (OAuth &"
        " Permissions) and reinstall the app to the workspace (its bot token stays the same; set a new one"
        " and restart serve if it changed); " + _HELD
    )


def _redirect(response: SlackResponse) -> str:
    """Where a redirect points (its scheme and host, as ``config show`` shows URLs), and that it is not
    followed; nothing when it names no place."""
    location = str(_header(response.headers, "location", ""))
    if not location:
        return ""
    target = shown_redirect(response.api_url, location)
    return f", a redirect to {target} (not followed: Slack's Web API does not redirect; check slack.base_url)"


def translate(method: str, exc: Exception, *, channel: str | None = None) -> BackendError:
    """The one place where slack-sdk and transport errors become gpuwarden errors; one about the channel
    names ``channel``, where the call went, when given."""
    if isinstance(exc, SlackApiError):
        status = exc.response.status_code
        data = exc.response.data
        error = str(data.get("error", "")) if isinstance(data, dict) else ""
        retryable = status == 429 or status >= 500 or error in RETRYABLE_API_ERRORS
        if error.startswith(NOT_JSON) and 200 <= status < 300:
            # Slack's Web API answers JSON, even to an error: this came from something on the way (a proxy's
            # page, an answer cut short), not from Slack, and failed the message for good. The retry looks for
            # it first, in case the call reached Slack.
            shown = error.removeprefix(NOT_JSON).lstrip(": ")
            return BackendError(
                f"{method}: an answer that is not Slack's (HTTP {status}, not JSON: {shown or 'empty'})",
                backend="slack",
                retryable=True,
            )
        limited = status == 429 or error in ("ratelimited", "rate_limited")
        if 300 <= status < 400:  # not followed (``unredirected``): its body is no Slack answer
            return BackendError(f"{method} failed: HTTP {status}{_redirect(exc.response)}", backend="slack")
        fix = ""
        if channel is not None and error in CHANNEL_FIXES and not retryable:
            fix = "; " + CHANNEL_FIXES[error].format(channel=channel)
        elif error == "missing_scope" and method in SCOPE_HOLDS:
            fix = "; " + _scope_fix(method, data)
        elif error in FIXES and not retryable:
            fix = f"; {FIXES[error]}"
        return BackendError(
            f"{method} failed: {error or f'HTTP {status}'}{_detail(data)}{fix}",
            backend="slack",
            retryable=retryable,
            code=error,
            retry_after=_retry_after(exc.response.headers) if limited else None,
            until_fixed=(error in UNTIL_FIXED or (error == "missing_scope" and method in SCOPE_HOLDS))
            and not retryable,
        )
    if isinstance(exc, CallAbandoned):  # a TimeoutError: before the OSErrors below
        return BackendError(f"{method}: {exc}", backend="slack", retryable=True)
    if isinstance(exc, SlackRequestError):
        # files_upload_v2 raises this when the upload URL answers non-200: a transient failure.
        retryable = str(exc).startswith("Failed to upload a file")
        return BackendError(f"{method} request failed: {exc}", backend="slack", retryable=retryable)
    if isinstance(exc, HTTPError):  # an OSError too: files_upload_v2's upload URL answered an error status
        return BackendError(
            f"{method}: Slack answered HTTP {exc.code}",
            backend="slack",
            retryable=exc.code >= 500 or exc.code in (408, 429),
        )
    if isinstance(exc, OSError):
        return BackendError(f"{method}: cannot reach Slack: {exc}", backend="slack", retryable=True)
    return BackendError(f"{method} failed: {exc}", backend="slack", retryable=False)
