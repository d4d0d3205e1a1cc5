"""The Slack notifier's lookups of what an earlier attempt may have posted: the incident's message in the
channel's history (``conversations.history``, window by window from the event on) and a reply or a chart in
its thread (``conversations.replies``), each page by page with Slack's cursor.

A page that fails (a 429, a 5xx, a call past its deadline) fails the delivery, which the outbox retries
later; the lookup keeps where it was (in memory: which windows, which page, how many calls it made) and the
retry goes on from the page that failed, not from the first: a long thread or a busy channel read again from
its start at every retry cost the pages already read each time, and with Slack's Tier 3 limit on a storm's
lookups a retry could fail again before it reached the pages it had not read. A restart reads from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from alerting.notifiers.slack_history import (
    CLOCK_SKEW_SECONDS,
    HISTORY_PAGE,
    HISTORY_PAGES,
    NEAR_SECONDS,
    has_key,
    history_windows,
    posted_for,
)
from gpuwarden.clock import Clock
from gpuwarden.errors import BackendError

logger = logging.getLogger("alerting.notifiers.slack")  # logged as the notifier's, as before the split

REPLIES_PAGE = 200
# The lookups a failed page left to resume, at most: each is a few numbers and a cursor; past this many
# (incidents whose messages were discarded meanwhile) the oldest is read from its start again.
RESUMED_MAX = 1000
# Slack's error for a cursor it no longer takes ("not valid or is no longer valid"): a resumed lookup reads
# from its start again.
CURSOR_REFUSED = "invalid_cursor"
# What to do about a lookup Slack refuses for good, by its error: the warning said "grant channels:history
# and set slack.channel to the channel's id" whatever the error, then "invite it; `outbox retry` sends what
# failed" (nothing had failed: the message was posted without the lookup).
LOOKUP_FIXES = {
    "not_in_channel": "the app is not in channel {channel} (it may post there, with chat:write.public,"
    " but not read it): invite it (`/invite @<app>` in the channel)",
    "missing_scope": "grant the app channels:history (groups:history for a private channel), reinstall it",
    "channel_not_found": "set slack.channel and slack.channels_by_priority to channel ids (C..., at the"
    " bottom of the channel's details), not names, and invite the app to a private channel",
}
LOOKUP_FIX = "the app needs to read channel {channel}: invite it, and grant it channels:history"

Caller = Callable[[str, Callable[[], SlackResponse], str], SlackResponse]  # method, call, its channel
T = TypeVar("T")


@dataclass(slots=True)
class _Place:
    """Where a lookup is: the history's windows (as its first attempt drew them), the window it reads, the
    cursor of its next page (None: the window's first), and the pages read so far."""

    windows: tuple[tuple[float, float | None], ...] = ()
    window: int = 0
    cursor: str | None = None
    pages: int = 0


@dataclass(frozen=True, slots=True)
class _Paged:
    """How a lookup's pages ended: ``found``, the first message wanted; else ``ended``, True where the pages
    ran out (False: Slack refused the lookup, or it stopped at ``HISTORY_PAGES``)."""

    found: Any = None
    ended: bool = False


class _CursorRefused(Exception):
    """Slack refused a lookup's cursor (``CURSOR_REFUSED``)."""


class SlackLookups:
    """Looks for a message in a channel's history or a thread, resuming a lookup a failed page broke off."""

    def __init__(self, client: WebClient, call: Caller, clock: Clock) -> None:
        self._client = client
        self._call = call  # the notifier's: its deadline, its per-method limits, errors translated
        self._clock = clock
        self._places: dict[tuple[str, ...], _Place] = {}

    def parent(self, channel: str, key: str, since: float) -> tuple[str, str, str | None] | None:
        """The channel, ``ts`` and ``posted_for`` of the message with ``key`` posted after ``since`` (the
        event it first told: no attempt posted it before), read window by window from the event on
        (``history_windows``), at most ``HISTORY_PAGES`` calls. Read newest first from now, a channel where
        other bots posted 5,000 messages since had it out of reach, and it was posted again; the attempt that
        posted it most often came right after the event, so the first window holds it, however busy the
        channel was since."""
        lookup = ("conversations.history", channel, key, f"{since:.6f}")
        sought = f"the incident's message (key {key})"
        found = self._resuming(
            lookup,
            lambda: _Place(tuple(history_windows(since, self._clock.time()))),
            lambda place: self._read_history(channel, lambda m: has_key(m, key), sought, place),
            None,
        )
        return None if found is None else (channel, str(found["ts"]), posted_for(found))

    def in_channel(self, channel: str, since: float, what: str, wanted: Callable[[Any], bool]) -> bool:
        """Whether a message of the channel (not of a thread) posted after ``since`` is ``wanted`` (``what``:
        which lookup this is), read as ``parent`` reads; False when Slack refuses the lookup."""
        lookup = ("conversations.history", channel, what, f"{since:.6f}")
        found = self._resuming(
            lookup,
            lambda: _Place(tuple(history_windows(since, self._clock.time()))),
            lambda place: self._read_history(channel, wanted, f"the {what} in the channel", place),
            None,
        )
        return found is not None

    def in_thread(
        self, channel: str, ts: str, since: float, what: str, wanted: Callable[[Any], bool]
    ) -> bool:
        """Whether a message of the thread posted after ``since`` (an event, less the clock skew the parent
        lookup allows) is ``wanted`` (``what``: which lookup this is, for its resumption), at most
        ``HISTORY_PAGES`` calls (False when Slack refuses the lookup or it stops there: the caller posts, at
        least once). Every page of the thread was read, however long: a war-room thread of 1,200 replies
        cost 7 calls at each retried reply, and held every incident's messages meanwhile."""
        lookup = ("conversations.replies", channel, ts, what, f"{since:.6f}")
        return self._resuming(
            lookup, _Place, lambda place: self._read_thread(channel, ts, since, what, wanted, place), False
        )

    def _resuming(
        self, lookup: tuple[str, ...], first: Callable[[], _Place], read: Callable[[_Place], T], nothing: T
    ) -> T:
        """``read`` from where the lookup was left (or from ``first``); where a page fails, keep the place for
        the next attempt. A resumed cursor Slack refuses reads from the start; any other cursor it refuses
        makes the lookup impossible: ``nothing`` found (the caller posts, at least once)."""
        place = self._places.pop(lookup, None)
        resumed = place is not None
        if place is None:
            place = first()
        else:
            logger.info("slack %s resumed at page %d channel=%s", lookup[0], place.pages + 1, lookup[1])
        while True:
            try:
                return read(place)
            except _CursorRefused:
                if not resumed:
                    break
                logger.info("slack %s: its resumed cursor refused, reading from the start", lookup[0])
                place, resumed = first(), False
            except BackendError as exc:
                if exc.retryable:
                    self._keep(lookup, place)
                raise
        logger.warning(
            "slack %s impossible, posting without it (a repeat is possible) channel=%s error=%s",
            lookup[0],
            lookup[1],
            CURSOR_REFUSED,
        )
        return nothing

    def _keep(self, lookup: tuple[str, ...], place: _Place) -> None:
        self._places[lookup] = place
        while len(self._places) > RESUMED_MAX:
            del self._places[next(iter(self._places))]

    def _look(
        self, method: str, channel: str, call: Callable[[], SlackResponse], sought: str
    ) -> SlackResponse | None:
        """A lookup of what may already be in Slack (``sought``, said in the log); None when Slack refuses
        it for good (``missing_scope`` without channels:history, ``not_in_channel`` where the app may post
        but not read, ``channel_not_found`` for a channel name): we cannot look, so the caller posts
        (at-least-once) rather than fail the message for good, which every retry would do again. An error
        that refuses every call of the app (a revoked token) is raised: the outbox holds the message
        (``until_fixed``)."""
        try:
            return self._call(method, call, channel)
        except BackendError as exc:
            if exc.code == CURSOR_REFUSED:
                raise _CursorRefused from exc
            if exc.retryable or exc.until_fixed:
                raise
            # The error without the fix translate adds for a refused post: the fix for a lookup is another
            # (``LOOKUP_FIXES``).
            said = str(exc).split("; ", 1)[0]
            fix = LOOKUP_FIXES.get(exc.code, LOOKUP_FIX).format(channel=channel)
            logger.warning(
                "slack could not look for %s in channel %s before sending it again (%s): it is sent without"
                " knowing whether an earlier attempt already posted it, so it may show twice; to fix: %s",
                sought,
                channel,
                said,
                fix,
            )
            return None

    def _read_history(
        self, channel: str, wanted: Callable[[Any], bool], sought: str, place: _Place
    ) -> Any | None:
        """``parent``'s reading, from ``place`` on, window by window; ``place`` follows each page read."""
        while place.window < len(place.windows):
            oldest, latest = place.windows[place.window]
            page = partial(
                self._client.conversations_history,
                channel=channel,
                oldest=f"{oldest:.6f}",
                latest=None if latest is None else f"{latest:.6f}",
                inclusive=True,
                limit=HISTORY_PAGE,
                include_all_metadata=True,
            )
            paged = self._paged(
                "conversations.history",
                channel,
                page,
                wanted,
                place=place,
                lookup="history",
                sought=sought,
            )
            if paged.found is not None:
                return paged.found
            if not paged.ended:
                return None
            place.window += 1
        return None

    def _read_thread(  # noqa: PLR0917 - in_thread's arguments, and where it is
        self, channel: str, ts: str, since: float, what: str, wanted: Callable[[Any], bool], place: _Place
    ) -> bool:
        """``in_thread``'s reading, from ``place`` on; ``place`` follows each page read."""
        page = partial(
            self._client.conversations_replies,
            channel=channel,
            ts=ts,
            oldest=f"{since - NEAR_SECONDS - CLOCK_SKEW_SECONDS:.6f}",
            inclusive=True,
            limit=REPLIES_PAGE,
            include_all_metadata=True,
        )
        paged = self._paged(
            "conversations.replies",
            channel,
            page,
            wanted,
            place=place,
            lookup="thread",
            where=f" ts={ts}",
            sought=f"the {what} in the incident's thread (ts {ts})",
        )
        return paged.found is not None

    def _paged(
        self,
        method: str,
        channel: str,
        page: Callable[..., SlackResponse],
        wanted: Callable[[Any], bool],
        *,
        place: _Place,
        lookup: str,
        where: str = "",
        sought: str = "",
    ) -> _Paged:
        """Read ``method``'s pages (``page`` with a cursor) from ``place`` on, ``place`` following each page
        read, until a message is ``wanted``, the pages end, Slack refuses the lookup (``_look``) or
        ``HISTORY_PAGES`` calls were made: said as the ``lookup`` of ``channel`` (and ``where`` in it)."""
        while place.pages < HISTORY_PAGES:
            response = self._look(method, channel, partial(page, cursor=place.cursor), sought)
            if response is None:
                return _Paged()
            place.pages += 1
            found = next((m for m in response.get("messages") or [] if wanted(m)), None)
            if found is not None:
                return _Paged(found)
            place.cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if place.cursor is None:
                return _Paged(ended=True)
        logger.warning(
            "slack %s lookup stopped after %d calls, posting (a repeat is possible) channel=%s%s",
            lookup,
            HISTORY_PAGES,
            channel,
            where,
        )
        return _Paged()
