"""Slack's Web API rate limits as the Slack stand-in enforces them when asked (``SlackRecorder(rate_limits=
True)``).

Slack documents them per method, per app and workspace, in tiers (Tier 2: 20+ calls a minute, Tier 3: 50+,
Tier 4: 100+), and ``chat.postMessage`` apart: about one message a second per channel, short bursts
allowed. A call over its limit is answered HTTP 429 with ``Retry-After`` in whole seconds and
``{"ok": false, "error": "ratelimited"}``; another method, or another channel, is not held back by it.
Each limit is a token bucket here: ``rate`` calls a second, ``burst`` at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gpuwarden.clock import Clock

JsonDict = dict[str, object]


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` calls a second, ``burst`` of them at once."""

    rate: float
    burst: float


TIER_2, TIER_3, TIER_4 = Limit(20 / 60, 3), Limit(50 / 60, 5), Limit(100 / 60, 10)
# Slack's "1 message per second per channel, short bursts of more allowed" (the burst is undocumented).
POST_PER_CHANNEL = Limit(1.0, 3)
TIERS: dict[str, Limit] = {
    "chat.update": TIER_3,
    "conversations.history": TIER_3,
    "conversations.replies": TIER_3,
    "files.getUploadURLExternal": TIER_4,
    "files.completeUploadExternal": TIER_4,
    "auth.test": Limit(100 / 60, 100),  # Tier "special": a lot
}


class SlackRateLimits:
    """Token buckets per method (and per channel for ``chat.postMessage``), read from ``clock``."""

    def __init__(self, clock: Clock, channel_id: Callable[[str], str]) -> None:
        self._clock = clock
        self._channel_id = channel_id
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, at)
        self.refused: dict[str, int] = {}
        """Calls answered 429, by method."""

    def _key(self, method: str, params: JsonDict) -> tuple[tuple[str, str], Limit] | None:
        if method == "chat.postMessage":
            channel = params.get("channel")
            return (method, self._channel_id(channel) if isinstance(channel, str) else ""), POST_PER_CHANNEL
        limit = TIERS.get(method)
        return None if limit is None else ((method, ""), limit)

    def wait(self, method: str, params: JsonDict) -> int | None:
        """Seconds this call must wait (its ``Retry-After``), or None: it may go now (and is counted)."""
        found = self._key(method, params)
        if found is None:
            return None
        key, limit = found
        now = self._clock.monotonic()
        tokens, at = self._buckets.get(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - at) * limit.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return None
        self._buckets[key] = (tokens, now)
        self.refused[method] = self.refused.get(method, 0) + 1
        return max(1, math.ceil((1.0 - tokens) / limit.rate))
