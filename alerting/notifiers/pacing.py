"""Client-side pacing of ``chat.postMessage``: about one post a second per channel, as Slack documents.

Slack allows "1 message per second per channel, short bursts >1 allowed" and answers 429 with
``Retry-After`` past that. Sent as fast as it could, a storm of 200 incidents had 389 of its 989 post calls
refused and retried: each refusal is a call Slack counts against the app, and a refusal that outlasts the
client's retries pauses the notifier. ``PostPacing`` spaces the posts to one channel by a token bucket
(``POSTS_PER_SECOND``, ``POST_BURST`` at once after a quiet while), waiting on the notifier's ``Clock``
before the call; a 429 is still retried after its ``Retry-After`` (``alerting.notifiers.slack_client``).
"""

from __future__ import annotations

import threading

from gpuwarden.clock import Clock

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
