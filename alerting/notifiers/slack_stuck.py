"""A thread stuck in a channel the app can no longer post to: the app was removed from it, or it was archived.

Every later message of the incident goes to its thread, and each was failed for good (``not_in_channel``,
``is_archived``, chat.update's ``is_inactive``, a private channel's ``channel_not_found``, a channel made
read-only), lost to the
thread until someone queued it again. Now, where ``slack.channel`` / ``slack.channels_by_priority`` send the
incident elsewhere (an operator routed its priority away), its thread goes on there, in a new message that
says where it came from; where they send it to the same channel, its messages are held (none failed), tried
again every ``THREAD_HOLD_SECONDS``, with an error that names the channel and the fix (``held_thread``).

The same errors refusing an incident's first message (no thread yet) failed it, and every later message of
the incident failed too (each posts that first message) until ``outbox retry``: its messages are held so
too (``first_refused``, ``held_first``); no channel is kept for it, so once it is fixed its message goes
where the configuration sends the incident then. So is a first message refused by a channel that takes
thread replies only (``restricted_action_thread_only_channel``): an incident's message cannot go there,
nor can its thread start there. In such a channel an incident's thread goes on (replies are taken) until
someone deletes its message, which cannot be posted again there: the hold and the note of a thread that goes
on elsewhere say that (``shut``), not that the app can no longer post.
"""

from __future__ import annotations

from alerting.notifiers.base import ThreadState
from alerting.notifiers.blocks import SlackMessage, escape
from gpuwarden.errors import BackendError

THREAD_ONLY = "restricted_action_thread_only_channel"
"""A channel that takes thread replies only: the app still posts in an incident's thread there, but no message
of the channel, so neither an incident's first message nor its message again once someone deleted it."""


STUCK = frozenset(
    {
        "not_in_channel",
        "is_archived",
        "is_inactive",
        "channel_not_found",
        "restricted_action_read_only_channel",
        THREAD_ONLY,
    }
)
"""Errors of a call to an incident's thread that say the app can no longer post in its channel."""

THREAD_HOLD_SECONDS = 60.0
"""How often a stuck thread's incident is tried again: within this long of the fix its messages go out."""

_FIXES = {
    "not_in_channel": "invite the app to {channel} (`/invite @<app>` in the channel)",
    "channel_not_found": "invite the app to {channel} (`/invite @<app>` in the channel), or restore it",
    "is_archived": "unarchive {channel}",
    "is_inactive": "unarchive {channel}",
    "restricted_action_read_only_channel": "let the app post in {channel} (it was made read-only)",
    THREAD_ONLY: "let the app post messages in {channel}, not only thread replies (a channel setting)",
}


def shut(code: str, *, first: bool = False) -> str:
    """Why the app cannot post an incident's message (``first``: its first) in the channel ``code`` names, as
    the hold and the note of a thread that goes on elsewhere say it: a thread-only channel still takes the
    app's replies, so "can no longer post" was wrong there."""
    if code == THREAD_ONLY:
        if first:
            return "which takes thread replies only: the incident's message cannot start its thread there"
        return (
            "which takes thread replies only: the incident's message there is gone (deleted) and cannot be"
            " posted again"
        )
    return "where the app cannot post" if first else "where the app can no longer post"


def stuck(exc: BackendError, thread: ThreadState) -> bool:
    """Whether ``exc`` says the app can no longer post in the channel of the incident's thread."""
    return thread.ts is not None and exc.code in STUCK and not exc.retryable


def first_refused(exc: BackendError, thread: ThreadState) -> bool:
    """Whether ``exc`` says the app cannot post the incident's first message (no thread yet) in its
    channel."""
    return thread.ts is None and exc.code in STUCK and not exc.retryable


def held_first(incident_id: str, channel: str, code: str) -> BackendError:
    """The error that holds an incident whose first message ``channel`` refused with ``code``: its messages
    wait (as ``held_thread``'s), in order, and go out once it is fixed."""
    fix = _FIXES.get(code, _FIXES["not_in_channel"]).format(channel=channel)
    if code == "channel_not_found":  # a name the app cannot see, a private channel it is not in
        fix = (
            "set slack.channel and slack.channels_by_priority to channel ids (C..., at the bottom of the"
            " channel's details) and, for a private channel, invite the app (`/invite @<app>` in it)"
        )
    return _held(
        f"incident {incident_id}'s message goes to channel {channel}, {shut(code, first=True)}",
        channel,
        code,
        fix,
        "its message then goes there",
    )


def held_thread(incident_id: str, channel: str, code: str, moving: str = "") -> BackendError:
    """The error that holds an incident whose thread is in ``channel``, shut by ``code``: its messages wait
    (the outbox's per-incident hold: ``retry_after`` with a ``limit``), the others go on. ``moving``: why the
    thread could not go on where the configuration sends the incident now, if it tried."""
    fix = _FIXES.get(code, _FIXES["not_in_channel"]).format(channel=channel)
    also = f"; its thread could not go on in {moving}" if moving else ""
    return _held(
        f"incident {incident_id}'s thread is in channel {channel}, {shut(code)}",
        channel,
        code,
        fix,
        f"the thread then goes on in a new message there{also}",
    )


def _held(where: str, channel: str, code: str, fix: str, then: str) -> BackendError:
    """The error that holds an incident (``held_first``, ``held_thread``): ``where`` its message goes and
    that the app cannot post there, ``code`` why, ``fix`` what to do, ``then`` what a route elsewhere does."""
    return BackendError(
        f"{where} ({code}): its messages wait, none failed, tried again every {THREAD_HOLD_SECONDS:.0f} s;"
        f" to fix: {fix}, or send its priority to another channel (slack.channels_by_priority, slack.channel)"
        f" and restart serve: {then}",
        backend="slack",
        retryable=True,
        code=code,
        retry_after=THREAD_HOLD_SECONDS,
        limit=f"channel {channel}",
    )


def continued_reply(channel: str, ts: str, code: str) -> SlackMessage:
    """The first reply of a thread that goes on from one stuck in ``channel`` (its message ``ts``)."""
    why = (
        f"its message in channel {channel} is gone (deleted), and that channel takes thread replies only"
        if code == THREAD_ONLY
        else f"the app can no longer post in its thread in channel {channel}"
    )
    text = escape(
        f"This incident's thread goes on here: {why} (message {ts}; {code}). Its messages from then on are"
        " here, none lost."
    )
    return SlackMessage(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])
