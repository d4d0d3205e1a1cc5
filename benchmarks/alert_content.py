"""What an alert says to users, beside its fingerprint, as the restart fuzz compares it
(``anomaly_restart_fuzz.py``).

A fingerprint is the hash of the labels, so two runs holding the same fingerprints agreed on which alerts
fire; whether they said the same of them (the recommended action an operator or remediation acts on, the
score that ranks them, a label the fingerprint does not cover, such as a severity set downstream) needs
their content. Anomaly alerts carry no ``severity`` label (alerting computes priority from impact); one
that did would be compared as a label.

A ``GpuwardenSourceStale`` alert is compared by when the failure it tells of is aged from (its
``aged_from``: when raised, less the age it was raised with, its evidence's one point), not by its score. Its
score is that age over ``stale_after_seconds``, fixed when raised: a restarted process that first reads a
query failing at a later time than the uninterrupted run did (its warm-up, a tick past the restart) raises
the same alert with a higher score (598 / 120 where the uninterrupted run raised 300 / 120), and compared by
score the fuzz reported that as a divergence (12 of 20 seeds with failures drawn 2 ticks longer), where the
alert said the same. Aged from another time, it tells of another failure: a restart that ages it from its own
start, not from the last good read, still differs (by the downtime at least; ``STALE_TOLERANCE`` covers the
microseconds an alert's ``starts_at`` rounds to). Where that time is a tick of the run, it is compared as the
tick (``read_at``): a process started between ticks (``--mid-tick``) reads each tick's samples at another
time than the uninterrupted run, so its last good read of a query, the same tick's, is 35 s later (seed 2).

The score is compared within ``SCORE_TOLERANCE`` (relative), not exactly: the per-tick scores are compared
rounded to 12 digits for the same reason, a restarted service's series index may number the series in
another order, so a reduction across series (a fleet median, a multivariate distance) adds the same terms
in another order, which moves the last bits of a float; a restart that scored otherwise differs far more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from gpuwarden.model import Alert

SCORE_TOLERANCE = 1e-9
STALE_TOLERANCE = 1e-3  # seconds: ``starts_at`` holds microseconds
STALE = "GpuwardenSourceStale"


class AlertContent(NamedTuple):
    """An alert's labels (sorted pairs), recommended action and score, as serve receives them."""

    labels: tuple[tuple[str, str], ...]
    action: str
    score: float | None
    # A GpuwardenSourceStale's, compared instead of its score: when its failure is aged from, or the tick
    # whose good read that is (``read_at``).
    aged_from: float | str | None = None


def alert_content(alert: Alert) -> AlertContent:
    """``alert``'s content as compared."""
    aged_from = None
    if alert.labels.get("alertname") == STALE and len(alert.evidence) == 1 and alert.starts_at is not None:
        point = alert.evidence[0]  # the age it was raised with, exact (its score is capped at SCORE_CAP)
        aged_from = point.at.timestamp() - point.value
    labels = tuple(sorted(alert.labels.items()))
    return AlertContent(labels, str(alert.recommended_action), alert.score, aged_from)


def read_at(content: AlertContent, ticks: Mapping[float, int]) -> AlertContent:
    """``content`` with its ``aged_from`` the tick (``tick N``) whose time it is, by ``ticks`` (each tick's
    time in the run, its step), where it is one; as it is otherwise."""
    at = content.aged_from
    if not isinstance(at, float):
        return content
    step = next((s for t, s in ticks.items() if abs(t - at) <= STALE_TOLERANCE), None)
    return content if step is None else content._replace(aged_from=f"tick {step}")


def same_content(a: AlertContent, b: AlertContent) -> bool:
    """Whether ``a`` and ``b`` say the same: equal labels and action, scores within ``SCORE_TOLERANCE``
    (two NaNs alike), or for two staleness alerts their ``aged_from`` within ``STALE_TOLERANCE``."""
    if (a.labels, a.action) != (b.labels, b.action):
        return False
    if isinstance(a.aged_from, float) and isinstance(b.aged_from, float):
        return abs(a.aged_from - b.aged_from) <= STALE_TOLERANCE
    if a.aged_from is not None or b.aged_from is not None:
        return a.aged_from == b.aged_from  # the same tick's good read (``read_at``), or differing
    if a.score is None or b.score is None:
        return a.score is b.score
    if math.isnan(a.score) or math.isnan(b.score):
        return math.isnan(a.score) and math.isnan(b.score)
    return math.isclose(a.score, b.score, rel_tol=SCORE_TOLERANCE, abs_tol=SCORE_TOLERANCE)


def firing_divergence(
    step: int, straight: dict[str, AlertContent], restarted: dict[str, AlertContent]
) -> dict[str, Any] | None:
    """How the alerts the two runs hold at ``step`` differ: fingerprints held by one run only, and those
    both hold saying otherwise (``changed``: fingerprint, straight's content, restarted's); None if alike."""
    changed = [
        (fp, straight[fp], restarted[fp])
        for fp in sorted(straight.keys() & restarted.keys())
        if not same_content(straight[fp], restarted[fp])
    ]
    if straight.keys() == restarted.keys() and not changed:
        return None
    return {
        "step": step,
        "only_straight": sorted(straight.keys() - restarted.keys()),
        "only_restarted": sorted(restarted.keys() - straight.keys()),
        "changed": changed,
    }
