"""What the rules of the ``signatures`` detector share: the score a rule fires with, the bound on a believable
jump, how a rule finds its query's step and builds its findings."""

from __future__ import annotations

from collections.abc import Sequence

from anomaly.detectors import Findings
from anomaly.ledger import GpuValueLedger
from anomaly.series import Step, View
from anomaly.thresholds import FloatArray
from gpuwarden.model import RecommendedAction

FIRED = 2.0
# More errors of one kind in one read than a GPU makes (a DBE or an XID ends the work on it; an SBE storm is
# a hundred or so): believed only if the next read still has them, as a counter would. A garbage reading
# (dcgm-exporter has served 808334905) is gone by then; a real jump this large is told one read later.
IMPLAUSIBLE_JUMP = 1e6


def find_step(view: View, name: str) -> Step | None:
    """The newest step of the query ``name``."""
    # prometheus_client may add ``_total`` to a counter's sample name; accept either spelling.
    return view.latest.get(name) or view.latest.get(name + "_total")


class SignatureRules:
    """What every family of rules reads: the detector's name and its per-GPU ledger (``anomaly.ledger``)."""

    name = "signatures"
    _values: GpuValueLedger

    def _immediate(
        self,
        step: Step,
        score: FloatArray,
        action: RecommendedAction,
        summary: str | Sequence[str],
        alertname: str,
    ) -> Findings:
        """A deterministic rule's findings: raised at the first tick that scores above 1; ``summary`` one for
        all series or one per series."""
        return Findings(
            self.name,
            step.query,
            step.labels,
            score,
            step.raw,
            action=action,
            summary=summary,
            alert_labels={"alertname": alertname},
            immediate=True,
        )
