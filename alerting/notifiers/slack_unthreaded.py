"""A channel that takes no thread replies (Slack's ``restricted_action_non_threadable_channel``).

Every reply to an incident's thread there was refused for good: each change after its first message failed,
and so did ``outbox retry``. Such a change is posted as a message of the channel instead, saying which
incident (and which of its messages) it continues (``unthreaded_reply``); the incident's message is still
edited in place. Which channels refused is kept in memory (``UnthreadedChannels``): after a restart the
first reply there is tried in the thread once more, refused, and posted so. A retry that may have posted it
already looks for it in the channel's history, not in the thread.
"""

from __future__ import annotations

import logging

from alerting.notifiers.blocks import TEXT_MAX, SlackMessage, escape, truncate

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
