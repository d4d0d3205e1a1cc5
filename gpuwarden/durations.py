"""Prometheus' duration units (``1h30m``, a range's ``[5m]``), largest first as Prometheus writes them.

One table for every stage that reads or writes a duration: silences and their CLI, PromQL ranges in the
anomaly service, the durations written into incident outcomes.
"""

from __future__ import annotations

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
