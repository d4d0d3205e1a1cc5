"""Slack through slack-sdk: one message per incident updated in place, the timeline as thread replies.

Every slack-sdk error is translated into ``BackendError(retryable=...)`` in ``SlackNotifier._call`` and
nowhere else (by ``alerting.notifiers.slack_client``, which also builds the client: ``make_client``, whose
retries of short rate limits honour ``Retry-After``); a longer rate limit, or one left after those retries,
is a ``BackendError`` with ``retry_after``: of a post, the outbox makes no call to the notifier until it has
passed; of another method, its ``limit``, only that incident waits (``alerting.notifiers.pacing``). Outages
are retried by the outbox.

slack-sdk's ``timeout`` (``slack.timeout_seconds``) bounds each read of an answer, not the call: every call
(a post, an update, a history page, a chart upload's three steps together) also has a whole-call deadline
(``slack.call_deadline_seconds``, ``alerting.notifiers.deadline``). A call without its whole answer by then
fails as retryable; it may have reached Slack, and the next call waits for it to end first, so the retry's
lookup (below) finds what it posted.

Crash safety: the parent message's channel is saved (``ThreadSaver``) before ``chat.postMessage`` (a retry
looks for it there, whatever ``channels_by_priority`` says then) and its ``ts`` right after it returns, so
later changes use ``chat.update`` on the stored ``ts``, which is idempotent. Saved with them, and in the
message's metadata, is which notification the message was posted for
(``posted_for``): that notification's delivery, retried after a crash or a failed reply, or coming after
``open_thread`` posted the message alone, edits nothing (it shows it already). Nor does a change whose
message renders as the one last posted or edited to that thread (``slack_shown.Shown``, in memory: after a
restart one such edit may go again, the same content, which Slack takes as no change). A thread in a channel
the app can no longer post to holds its incident, or goes on in the channel the incident is sent to now
(``alerting.notifiers.slack_stuck``), and so does an incident whose first message its channel refuses. In a
channel that takes no thread replies each change is a message of the channel (``slack_unthreaded``).
Each message carries Slack message metadata with the notification's idempotency key; when the outbox retries
a notification whose earlier attempt may have reached Slack, the notifier first looks for that key in the
channel history (parent: window by window from the event on, ``history_windows``) or the thread (reply) and
does not post again if it is there (``alerting.notifiers.slack_lookups``: a lookup a failed page broke off
goes on from that page at the retry). That lookup needs the channel id (``C...``) and the app's
``channels:history`` scope; without them it posts (at-least-once) rather than fail the message for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from slack_sdk.web import SlackResponse

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.notifiers.blocks import (
    SlackMessage,
    incident_message,
    minimal_message,
    minimal_reply,
    timeline_reply,
)
from alerting.notifiers.charts import SeriesSource
from alerting.notifiers.deadline import DeadlineCaller
from alerting.notifiers.pacing import POSTS_PER_SECOND, MethodLimits, PostPacing
from alerting.notifiers.series import series_source_from_config
from alerting.notifiers.slack_charts import SlackCharts
from alerting.notifiers.slack_client import (
    CONTENT_REFUSED,
    EDIT_WINDOW_CLOSED,
    MESSAGE_GONE,
    make_client,
    translate,
)
from alerting.notifiers.slack_history import MessageMetadata, has_key
from alerting.notifiers.slack_lookups import SlackLookups
from alerting.notifiers.slack_shown import Shown
from alerting.notifiers.slack_stuck import continued_reply, first_refused, held_first, held_thread, stuck
from alerting.notifiers.slack_unthreaded import UnthreadedChannels, UnthreadedReplies
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import Clock, SystemClock
from gpuwarden.config import SlackConfig
from gpuwarden.errors import BackendError, ConfigError

logger = logging.getLogger(__name__)

__all__ = ["SlackNotifier", "make_client"]  # make_client is slack_client's, still imported from here

CHART_CHANGES = frozenset({ChangeKind.OPENED, ChangeKind.REOPENED})


class SlackNotifier(SlackCharts, UnthreadedReplies):
    """Posts and maintains one Slack message per incident, with a thread of its timeline."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        *,
        name: str = "slack",
        charts: bool = True,
        series_source: SeriesSource | None = None,
        broadcast_resolutions: bool = False,
        interactive: bool = True,
        call_deadline_seconds: float = 30.0,
        clock: Clock | None = None,
        posts_per_second: float = 0.0,
        channels_by_priority: Mapping[str, str] | None = None,
    ) -> None:
        self._client = client
        self._clock = clock or SystemClock()  # where the history lookup's windows end, and what posts wait on
        # Posts to a channel paced to ``posts_per_second`` (``PostPacing``; 0, as the tests' stand-in: none):
        # ``from_config`` (serve) paces them as Slack documents.
        self._pacing = PostPacing(self._clock, rate=posts_per_second)
        self._limits = MethodLimits(self._clock)  # the other methods' 429s, each its own (``pacing``)
        self._channel_ids: dict[str, str] = {}  # a channel configured (maybe a name) -> its id, once posted
        self._deadline = DeadlineCaller(
            call_deadline_seconds, name=name, setting="slack.call_deadline_seconds"
        )
        # What an earlier attempt may have posted, looked up page by page; a lookup a failed page broke off
        # goes on from that page at the retry (``alerting.notifiers.slack_lookups``).
        self._lookups = SlackLookups(client, self._call, self._clock)
        # Buttons only where serve hears their presses (``slack.signing_secret`` mounts the route): a press
        # that reaches nothing fails in Slack, and the on-call is left without a way to acknowledge.
        self._interactive = interactive
        self._channel = channel
        # Where an incident's message goes by its priority when posted (``slack.channels_by_priority``; not
        # listed: ``channel``); its thread stays where it went (the stored channel), whatever comes later.
        self._by_priority = dict(channels_by_priority or {})
        self._name = name
        self._charts = charts
        self._series = series_source
        self._broadcast_resolutions = broadcast_resolutions
        self._shown_messages = Shown()
        self._metadata = MessageMetadata()  # until Slack refuses it
        self._unthreaded = UnthreadedChannels()  # channels that refused a thread reply (``slack_unthreaded``)

    @classmethod
    def from_config(
        cls, config: SlackConfig, *, name: str = "slack", clock: Clock | None = None
    ) -> SlackNotifier:
        """Build from the ``slack`` config section; the real Slack API unless ``base_url`` says otherwise.

        Charts read Prometheus at ``chart_prometheus_url`` when it is set. Posts are paced to Slack's one a
        second per channel (``alerting.notifiers.pacing``).
        """
        if config.bot_token is None:
            raise ConfigError("no bot token; set it to {env: SLACK_BOT_TOKEN}", field="slack.bot_token")
        client = make_client(
            config.bot_token.get_secret_value(),
            base_url=config.base_url,
            timeout=config.timeout_seconds,
            rate_limit_retries=config.rate_limit_retries,
        )
        clock = clock or SystemClock()
        series = series_source_from_config(config, clock)
        return cls(
            client,
            config.channel,
            name=name,
            charts=config.charts,
            series_source=series,
            broadcast_resolutions=config.broadcast_resolutions,
            interactive=config.signing_secret is not None,
            call_deadline_seconds=config.call_deadline_seconds,
            clock=clock,
            posts_per_second=POSTS_PER_SECOND,
            channels_by_priority={str(p): c for p, c in config.channels_by_priority.items()},
        )

    @property
    def name(self) -> str:
        """The destination's name in the outbox."""
        return self._name

    def _call(
        self, method: str, call: Callable[[], SlackResponse], channel: str | None = None
    ) -> SlackResponse:
        """Call Slack; a 429 of any method but posts (which every message makes) holds only that method. An
        error about the channel (``not_in_channel``) names ``channel``, the one the call went to."""
        own_limit = method != "chat.postMessage"
        if own_limit:
            self._limits.check(method)
        try:
            return self._deadline.call(method, call)
        except (SlackClientError, OSError) as exc:
            # No local names the error: one would hold its traceback's frame, a cycle keeping the answer's
            # socket open until the garbage collector ran.
            raise (
                self._limits.noted(method, translate(method, exc, channel=channel))
                if own_limit
                else translate(method, exc, channel=channel)
            ) from exc

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        """Post or update the incident message, attach the chart once, then reply with the event.

        For a silenced incident only an existing message is updated in place: no new message, no reply,
        no broadcast (an edit notifies nobody). A folded change (a repeat of the incident's cycle) updates
        the message, which counts the cycles, and replies nothing; so does an ``edit_only`` one (what the
        alerts recommend changed: the message's Recommended section says it, no reply per change)."""
        if notification.silenced_until is not None:
            return self._update_silenced(notification, thread)
        try:
            return self._deliver(notification, thread, retry=retry, save=save)
        except BackendError as exc:
            if first_refused(exc, thread):  # no thread yet: held as a stuck one (``slack_stuck``)
                raise self._held_first(notification, thread, exc) from exc
            if not stuck(exc, thread):
                raise
            code = exc.code
        moved = self._move(notification, thread, code, save)
        return self._deliver(notification, moved, retry=False, save=save)

    def _deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        thread = self._shown(notification, thread, retry=retry, save=save)
        assert thread.channel is not None and thread.ts is not None
        channel, ts = thread.channel, thread.ts
        if notification.folded is not None or notification.edit_only:
            return True  # the message says it all: no reply per cycle, nor per change of its figures
        if self._charts and not thread.chart_posted and notification.change in CHART_CHANGES:
            self._chart_once(notification, thread, retry=retry, save=save)
        if retry and self._find_reply(channel, ts, notification.key, notification.event_at.timestamp()):
            logger.info(
                "slack reply already posted incident_id=%s key=%s", notification.incident_id, notification.key
            )
            return True
        # A resolution of an opening that paged nobody (a held reopening) is not broadcast either.
        broadcast = notification.needs_attention or (
            notification.is_resolution and self._broadcast_resolutions and not notification.held
        )
        self._reply(notification, channel, ts, broadcast=broadcast, retry=retry)
        return True

    def _reply(self, n: Notification, channel: str, ts: str, *, broadcast: bool, retry: bool) -> None:
        """Post the change in the incident's thread; where its channel takes no thread replies, as a message
        of the channel that says which incident it continues (``alerting.notifiers.slack_unthreaded``)."""

        def post(reply: SlackMessage, thread_ts: str | None) -> SlackResponse:
            return self._client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=reply.text,
                blocks=reply.blocks,
                reply_broadcast=broadcast if thread_ts else None,
                metadata=self._metadata.of(n.incident_id, n.key, n.event_kind),
            )

        def posted() -> bool:  # a retry looks for it in the channel where it could not go to the thread
            return retry and self._lookups.parent(channel, n.key, n.event_at.timestamp()) is not None

        self._in_thread(n, channel, ts, (timeline_reply(n), minimal_reply(n)), post, posted)

    def _move(self, n: Notification, thread: ThreadState, code: str, save: ThreadSaver) -> ThreadState:
        """The thread of an incident stuck in its channel (``alerting.notifiers.slack_stuck``), going on in a
        new message where the configuration sends the incident now; held (raised) where that is the same
        channel, or where that channel refuses it too (the stuck thread kept: its move is tried again)."""
        assert thread.channel is not None and thread.ts is not None
        old, target = thread.channel, self._by_priority.get(n.priority, self._channel)
        if old in (target, self._channel_ids.get(target)):
            save(thread)  # kept, as before a re-post of a deleted message there was refused (``_parent``)
            raise held_thread(n.incident_id, old, code)
        logger.warning(
            "slack thread goes on in another channel: its own refuses the incident's message"
            " incident_id=%s channel=%s error=%s to=%s",
            n.incident_id,
            old,
            code,
            target,
        )
        try:
            moved = self._parent(n, ThreadState(channel=target), retry=False, save=save)
        except BackendError as exc:
            if exc.retryable or exc.until_fixed:
                raise  # saved where it goes: its retry looks there first (``_parent``)
            refused = f"{target} ({exc.code or exc})"
            save(thread)
        else:
            self._note_moved(n, moved, thread, code)
            return moved
        raise held_thread(n.incident_id, old, code, refused)

    def _note_moved(self, n: Notification, moved: ThreadState, old: ThreadState, code: str) -> None:
        """Say in the new thread where it comes from; a note only: one Slack refuses holds nothing back (nor
        is it posted again by a retry after a crash right before it)."""
        note, channel, ts = continued_reply(str(old.channel), str(old.ts), code), str(moved.channel), moved.ts
        key = f"{self._name}:{n.incident_id}:continued:{old.ts}"

        def post(m: SlackMessage, thread_ts: str | None) -> SlackResponse:
            return self._client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=m.text,
                blocks=m.blocks,
                metadata=self._metadata.of(n.incident_id, key),
            )

        try:  # where the channel takes no thread replies, a message of the channel (``_in_thread``)
            self._in_thread(n, channel, str(ts), (note, note), post)
        except BackendError as exc:
            logger.warning(
                "slack thread moved, its note not posted incident_id=%s error=%s", n.incident_id, exc
            )

    def open_thread(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        """Post only the incident's message (its thread's top), saved by ``save``, where ``deliver`` would
        post it; ``deliver`` adds the rest after, not editing it again (``ThreadOpeningNotifier``), also
        after a restart between the two (the thread's ``posted_for``). False when there is none to post:
        posted already, or the incident silenced (``deliver`` posts none then)."""
        if notification.silenced_until is not None or (thread.ts is not None and thread.channel is not None):
            return False
        try:
            self._parent(notification, thread, retry=retry, save=save)
        except BackendError as exc:
            if not first_refused(exc, thread):
                raise
            raise self._held_first(notification, thread, exc) from exc
        return True

    def _held_first(self, n: Notification, thread: ThreadState, exc: BackendError) -> BackendError:
        """The hold of an incident whose first message its channel refused (``slack_stuck.held_first``)."""
        return held_first(
            n.incident_id, thread.channel or self._by_priority.get(n.priority, self._channel), exc.code or ""
        )

    def _shown(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> ThreadState:
        """The incident's message, as it is after this change: posted, or edited in place (posted again when
        someone deleted it: the new one carries this event and the later ones). One posted for this very
        notification (by ``open_thread``, or by an attempt before a crash or a failed reply: the thread's
        ``posted_for``, stored with its ``ts``) shows it already: not edited again."""
        thread = self._parent(notification, thread, retry=retry, save=save)
        assert thread.channel is not None and thread.ts is not None
        shows_it = thread.posted_for == notification.key
        if not shows_it and not self._edit(thread.channel, thread.ts, notification):
            logger.warning("slack message gone, posting a new one incident_id=%s", notification.incident_id)
            # Posted again in the channel it was in: a thread stays where it went, whatever the priority now.
            thread = self._parent(notification, ThreadState(channel=thread.channel), retry=False, save=save)
        return thread

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
        """Send ``message``; when Slack refuses its content (which it would do again on every retry), log
        why and send ``minimal`` instead, so the incident still reaches the channel. A post (``pace``) waits
        for its channel's pace first (``PostPacing``), outside the call's deadline."""
        try:
            if pace:
                self._pacing.wait(self._channel_ids.get(channel, channel))
            return self._call(method, lambda: send(message), channel)
        except BackendError as exc:
            if self._metadata.refuse(exc):  # Slack refuses the metadata, not the message: again without it
                return self._send(method, n, message, minimal, send, channel=channel, pace=pace)
            if exc.code not in CONTENT_REFUSED:
                raise
            logger.warning(
                "slack refused the message, sending a minimal one incident_id=%s error=%s", n.incident_id, exc
            )
            if pace:
                self._pacing.wait(self._channel_ids.get(channel, channel))
            return self._call(method, lambda: send(minimal), channel)

    def _update_silenced(self, n: Notification, thread: ThreadState) -> bool:
        """Edit the incident's message in place; False (held back) when there is none to edit."""
        if thread.ts is None or thread.channel is None:
            logger.info("incident silenced, nothing posted incident_id=%s", n.incident_id)
            return False
        try:
            edited = self._edit(thread.channel, thread.ts, n)
        except BackendError as exc:
            if not stuck(exc, thread):
                raise
            edited = False  # the first event after the silence moves the thread, or holds it
        if not edited:
            # Posting it again would notify the channel; the first event after the silence posts it.
            logger.info("slack message gone or its channel shut, silenced incident_id=%s", n.incident_id)
            return False
        return True

    def _edit(self, channel: str, ts: str, n: Notification) -> bool:
        """Update the incident's message in place; False when it is gone (someone deleted it). A message
        that would show what this process last posted or edited there is not sent again."""
        message = incident_message(n, interactive=self._interactive)
        if self._shown_messages.same(channel, ts, message):
            logger.debug("slack message unchanged, not edited incident_id=%s key=%s", n.incident_id, n.key)
            return True
        try:
            self._send(
                "chat.update",
                n,
                message,
                minimal_message(n, interactive=self._interactive),
                lambda message: self._client.chat_update(
                    channel=channel, ts=ts, text=message.text, attachments=message.attachments
                ),
                channel=channel,
            )
        except BackendError as exc:
            self._shown_messages.forget(channel, ts)
            if exc.code == EDIT_WINDOW_CLOSED:
                # Failed for good, this change and every later one of the incident were lost to its thread.
                logger.warning(
                    "slack message no longer editable (the workspace's message edit window passed): it shows"
                    " the incident as before, its thread tells the change incident_id=%s channel=%s ts=%s",
                    n.incident_id,
                    channel,
                    ts,
                )
                return True
            if exc.code not in MESSAGE_GONE:
                raise
            logger.info("slack chat.update: message gone incident_id=%s error=%s", n.incident_id, exc)
            return False
        # The same message refused for its content would be refused again: its minimal one stays shown.
        self._shown_messages.shows(channel, ts, message)
        return True

    def _parent_key(self, incident_id: str) -> str:
        return f"{self._name}:{incident_id}:parent"

    def _parent(self, n: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver) -> ThreadState:
        """The incident's message: the stored one, one found after a crash, or a new post (its metadata
        says which notification it was posted for: one found after a crash may show an older one)."""
        if thread.ts is not None and thread.channel is not None:
            return thread
        key = self._parent_key(n.incident_id)
        channel = thread.channel or self._by_priority.get(n.priority, self._channel)
        if retry:
            found = self._lookups.parent(channel, key, n.event_at.timestamp())
            if found is not None:
                thread = thread.with_message(*found)
                save(thread)
                logger.info(
                    "slack message recovered after retry incident_id=%s ts=%s", n.incident_id, found[1]
                )
                return thread
        # Where it goes is saved before it is posted: a crash between Slack's answer and the save of its ts
        # leaves the retry looking in that channel, not in the one the priority map gives then (an operator
        # may have changed the map before the restart: the message was posted again, in the new channel).
        thread = replace(thread, channel=channel, ts=None, posted_for=None)
        save(thread)
        message = incident_message(n, interactive=self._interactive)
        try:
            response = self._send(
                "chat.postMessage",
                n,
                message,
                minimal_message(n, interactive=self._interactive),
                lambda message: self._client.chat_postMessage(
                    channel=channel,
                    text=message.text,
                    attachments=message.attachments,
                    metadata=self._metadata.of(n.incident_id, key, posted_for=n.key),
                    unfurl_links=False,
                ),
                channel=channel,
                pace=True,
            )
        except BackendError as exc:
            if not exc.retryable:  # Slack refused it (not_in_channel, ...): nothing posted, and its retry,
                save(replace(thread, channel=None))  # once fixed, goes where the configuration says then
            raise
        thread = thread.with_message(str(response["channel"]), str(response["ts"]), n.key)
        self._shown_messages.shows(str(response["channel"]), str(response["ts"]), message)
        self._channel_ids[channel] = thread.channel or channel
        save(thread)
        return thread

    def _find_reply(self, channel: str, ts: str, key: str, since: float) -> bool:
        """Whether the thread already holds a reply with this key, posted after ``since`` (its event)."""
        return self._lookups.in_thread(
            channel, ts, since, f"reply {key}", lambda message: has_key(message, key)
        )
