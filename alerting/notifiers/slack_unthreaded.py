"""A channel that takes no thread replies (Slack's ``restricted_action_non_threadable_channel``).

Every reply to an incident's thread there was refused for good: each change after its first message failed,
and so did ``outbox retry``. Such a change is posted as a message of the channel instead, saying which
incident (and which of its messages) it continues (``unthreaded_reply``); the incident's message is still
edited in place. Which channels refused is kept in memory (``UnthreadedChannels``): after a restart the
first reply there is tried in the thread once more, refused, and posted so. A retry that may have posted it
already looks for it in the channel's history, not in the thread. So is the note of a thread that goes on
in such a channel (``UnthreadedReplies._in_thread``, the notifier's); its chart is shared as a file of the
channel (``alerting.notifiers.slack_charts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_sdk.web import SlackResponse

from alerting.notifiers.base import Notification
from alerting.notifiers.blocks import TEXT_MAX, SlackMessage, escape, truncate
from gpuwarden.errors import BackendError

logger = logging.getLogger("alerting.notifiers.slack")  # logged as the notifier's

NON_THREADABLE = "restricted_action_non_threadable_channel"
"""Slack's refusal of a thread reply in a channel where threads are not allowed."""


def unthreaded_reply(reply: SlackMessage, incident_id: str, title: str, ts: str) -> SlackMessage:
    """``reply`` (a change of incident ``incident_id``, whose message is ``ts``) as a message of its channel:
    a line above it says which incident it continues."""
    head = escape(f"Incident {incident_id} ({title}), continued: this channel takes no thread replies,")
    head += f" so its changes follow here, after its message {escape(ts)}"
    text = truncate(f"{head}\n{reply.text}", TEXT_MAX)
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(head, 3000)}]}
    return SlackMessage(text=text, blocks=[context, *reply.blocks], attachments=reply.attachments)


class UnthreadedChannels:
    """The channels (ids, as the incidents' threads keep them) that refused a thread reply in this process."""

    def __init__(self) -> None:
        self._channels: set[str] = set()

    def __contains__(self, channel: object) -> bool:
        return channel in self._channels

    def refused(self, channel: str, incident_id: str) -> None:
        """``channel`` refused a reply of ``incident_id``'s thread: said once, as a warning."""
        if channel in self._channels:
            return
        self._channels.add(channel)
        logger.warning(
            "slack channel takes no thread replies (%s): each change of an incident there is posted as a"
            " message of the channel, saying which incident it continues; allow threads in the channel, or"
            " send those priorities to another (slack.channels_by_priority), to keep them in threads"
            " channel=%s incident_id=%s",
            NON_THREADABLE,
            channel,
            incident_id,
        )


class UnthreadedReplies:
    """Posts a reply in a thread, or, where its channel takes no thread replies, as a message of the channel;
    a base of ``alerting.notifiers.slack.SlackNotifier``, which sets the state."""

    _unthreaded: UnthreadedChannels

    def _send(
        self,
        method: str,
        n: Notification,
        message: SlackMessage,
        minimal: SlackMessage,
        send: Callable[[SlackMessage], SlackResponse],
        *,
        channel: str,
        pace: bool = False,
    ) -> SlackResponse:
        raise NotImplementedError  # the notifier's: paced, a message Slack refuses for its content minimal

    def _in_thread(  # noqa: PLR0917 - the reply, and how it is posted
        self,
        n: Notification,
        channel: str,
        ts: str,
        messages: tuple[SlackMessage, SlackMessage],
        post: Callable[[SlackMessage, str | None], SlackResponse],
        posted: Callable[[], bool] = lambda: False,
    ) -> None:
        """Post ``messages`` (the reply, its minimal form) in the thread ``ts``; where ``channel`` takes no
        thread replies, as a message of the channel that says which incident it continues, unless ``posted``
        finds it there already (``alerting.notifiers.slack_unthreaded``)."""
        reply, minimal = messages
        if channel not in self._unthreaded:
            try:
                self._send(
                    "chat.postMessage", n, reply, minimal, lambda m: post(m, ts), channel=channel, pace=True
                )
                return
            except BackendError as exc:
                if exc.code != NON_THREADABLE or exc.retryable:
                    raise
            self._unthreaded.refused(channel, n.incident_id)
        if posted():
            logger.info("slack change already posted incident_id=%s key=%s", n.incident_id, n.key)
            return
        reply, minimal = (unthreaded_reply(m, n.incident_id, n.title, ts) for m in (reply, minimal))
        self._send("chat.postMessage", n, reply, minimal, lambda m: post(m, None), channel=channel, pace=True)
