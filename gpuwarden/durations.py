"""Prometheus' duration units (``1h30m``, a range's ``[5m]``), largest first as Prometheus writes them.

One table for every stage that reads or writes a duration: silences and their CLI, PromQL ranges in the
anomaly service, the durations written into incident outcomes.
"""

from __future__ import annotations

import re
from typing import Final

UNIT_SECONDS: Final = {
    "y": 31536000.0,  # Prometheus' year is 365 days
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
# A unit of ``UNIT_SECONDS`` in a regular expression, the longest first: "ms" before "m" (``5ms`` is not 5
# minutes and an "s").
UNIT_PATTERN: Final = "|".join(sorted(UNIT_SECONDS, key=len, reverse=True))

# How people write a unit when they mean one (``5 min``, ``2 hours``), to say the number a setting in
# seconds or days wants instead; never used to read a setting (those take plain numbers).
_SPOKEN_UNITS: Final = {
    **{word: "ms" for word in ("ms", "msec", "millisecond", "milliseconds")},
    **{word: "s" for word in ("s", "sec", "secs", "second", "seconds")},
    **{word: "m" for word in ("m", "min", "mins", "minute", "minutes")},
    **{word: "h" for word in ("h", "hr", "hrs", "hour", "hours")},
    **{word: "d" for word in ("d", "day", "days")},
    **{word: "w" for word in ("w", "week", "weeks")},
}
_SPOKEN = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)\s*")


def spoken_seconds(text: str) -> float | None:
    """Seconds in a duration as a person writes it (``5 min``, ``1h30m``, ``90 days``); None otherwise."""
    text, total, at = text.lower(), 0.0, 0
    while at < len(text):
        part = _SPOKEN.match(text, at)
        if part is None or part.group(2) not in _SPOKEN_UNITS:
            return None
        total += float(part.group(1)) * UNIT_SECONDS[_SPOKEN_UNITS[part.group(2)]]
        at = part.end()
    return total if at else None
