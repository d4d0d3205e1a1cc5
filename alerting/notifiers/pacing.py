"""Client-side pacing of ``chat.postMessage`` (about one post a second per channel, as Slack documents), and
the other methods' rate limits remembered per method (``MethodLimits``).

Slack allows "1 message per second per channel, short bursts >1 allowed" and answers 429 with
``Retry-After`` past that. Sent as fast as it could, a storm of 200 incidents had 389 of its 989 post calls
refused and retried: each refusal is a call Slack counts against the app, and a refusal that outlasts the
client's retries pauses the notifier. ``PostPacing`` spaces the posts to one channel by a token bucket
(``POSTS_PER_SECOND``, ``POST_BURST`` at once after a quiet while), waiting on the notifier's ``Clock``
before the call; a 429 is still retried after its ``Retry-After`` (``alerting.notifiers.slack_client``).

Slack's limits are per method (and per channel for posts): a 429 on ``conversations.history`` (Tier 3, or
one a minute for a commercially distributed app outside the Marketplace) says nothing of posts. Every
message posts to the one channel, so a refused post still pauses the whole notifier (the outbox's pause);
a refusal of another method is remembered for that method (``MethodLimits``) and raised with its ``limit``,
and the outbox holds only the incident whose message needed it, while the other incidents' posts go on.
"""

from __future__ import annotations

import threading

from gpuwarden.clock import Clock
from gpuwarden.errors import BackendError

POSTS_PER_SECOND = 1.0
POST_BURST = 3.0  # Slack's "short bursts >1 allowed": the size is undocumented (the stand-in allows 3)


class PostPacing:
    """Waits before each post so that posts to one channel keep to ``rate`` a second, ``burst`` at once."""

    def __init__(self, clock: Clock, *, rate: float = POSTS_PER_SECOND, burst: float = POST_BURST) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = max(1.0, burst)
        self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, at)
        self._lock = threading.Lock()

    def wait(self, channel: str) -> float:
        """Wait until a post to ``channel`` keeps to the pace, and count it; returns the seconds waited."""
        if self._rate <= 0:  # pacing off
            return 0.0
        with self._lock:  # one post at a time per notifier: a second caller waits its turn after this one
            now = self._clock.monotonic()
            tokens, at = self._buckets.get(channel, (self._burst, now))
            tokens = min(self._burst, tokens + (now - at) * self._rate)
            waited = 0.0
            if tokens < 1.0:
                waited = (1.0 - tokens) / self._rate
                self._clock.sleep(waited)
                tokens, now = 1.0, self._clock.monotonic()
            self._buckets[channel] = (tokens - 1.0, now)
            return waited


class MethodLimits:
    """When each Slack method may be called again after a 429 (its ``Retry-After``), read from ``clock``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def noted(self, method: str, error: BackendError) -> BackendError:
        """``error`` of a call of ``method``: when Slack refused it and asked to wait, ``method`` is held that
        long and the error names its limit. (A function, so that the caller raises it unnamed: an error held
        by a name in the frame it is raised from is a cycle with its traceback, freed whenever the garbage
        collector runs, and the HTTP error's socket with it: an unclosed-socket warning much later.)"""
        if error.retry_after is not None:
            with self._lock:
                until = self._clock.monotonic() + error.retry_after
                self._until[method] = max(until, self._until.get(method, until))
            error.limit = method
        return error

    def check(self, method: str) -> None:
        """Raise the rate limit still holding ``method`` (no call made: Slack would refuse it again)."""
        with self._lock:
            left = self._until.get(method, 0.0) - self._clock.monotonic()
            if left <= 0:
                self._until.pop(method, None)
                return
        raise BackendError(
            f"{method}: not called, Slack's rate limit of it holds {left:.0f} s more (Retry-After)",
            backend="slack",
            retryable=True,
            code="ratelimited",
            retry_after=left,
            limit=method,
        )
