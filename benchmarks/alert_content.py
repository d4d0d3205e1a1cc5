"""What an alert says to users, beside its fingerprint, as the restart fuzz compares it
(``anomaly_restart_fuzz.py``).

A fingerprint is the hash of the labels, so two runs holding the same fingerprints agreed on which alerts
fire; whether they said the same of them (the recommended action an operator or remediation acts on, the
score that ranks them, a label the fingerprint does not cover, such as a severity set downstream) needs
their content. Anomaly alerts carry no ``severity`` label (alerting computes priority from impact); one
that did would be compared as a label.

The score is compared within ``SCORE_TOLERANCE`` (relative), not exactly: the per-tick scores are compared
rounded to 12 digits for the same reason, a restarted service's series index may number the series in
another order, so a reduction across series (a fleet median, a multivariate distance) adds the same terms
in another order, which moves the last bits of a float; a restart that scored otherwise differs far more.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from gpuwarden.model import Alert

SCORE_TOLERANCE = 1e-9


class AlertContent(NamedTuple):
    """An alert's labels (sorted pairs), recommended action and score, as serve receives them."""

    labels: tuple[tuple[str, str], ...]
    action: str
    score: float | None


def alert_content(alert: Alert) -> AlertContent:
    """``alert``'s content as compared."""
    return AlertContent(tuple(sorted(alert.labels.items())), str(alert.recommended_action), alert.score)


def same_content(a: AlertContent, b: AlertContent) -> bool:
    """Whether ``a`` and ``b`` say the same: equal labels and action, scores within ``SCORE_TOLERANCE``
    (two NaNs alike)."""
    if (a.labels, a.action) != (b.labels, b.action):
        return False
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
