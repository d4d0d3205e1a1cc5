"""A firing alert's state (``_Firing``: its peak, recovery and re-escalation), the alerts a snapshot holds,
what one tick changed, and the making and resolving of an alert from a detector's findings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from anomaly.collective import CollectiveMoves
from anomaly.detectors import Findings
from anomaly.serieskeys import SeriesKey, key_state, restored_key
from anomaly.snapshot import alert_state, restored_alert
from anomaly.writeback import exported_score
from gpuwarden.clock import rfc3339
from gpuwarden.model import Alert, AlertSource, AlertStatus, EvidencePoint

# A firing alert re-escalates when, after its score came down to at most half its peak, its value no longer
# past its band on the side it was raised on, for ``pending_ticks`` reads in a row (a recovery), it climbs to
# at least twice the lowest it came down to (a quiet read counts as 1, the band's edge) for ``pending_ticks``
# reads, and no sooner than ``resolve_after`` reads after it was raised, unless it was recovered for
# ``rearm_after`` reads with no alert of another kind open on its GPU (see ``_Firing.escalates``).
_RECOVERED_SHARE = 0.5
_ESCALATION_FACTOR = 2.0
# What a snapshot keeps of a firing alert besides the alert and its series (``_Firing.state``).
_FIRING_STATE = (
    "resolve_after",
    "query",
    "detector",
    "quiet",
    "peak",
    "trough",
    "low",
    "recovered",
    "rising",
    "reads",
    "rearm_after",
    "calm",
    "calmed",
)


@dataclass(slots=True)
class _Firing:
    alert: Alert
    resolve_after: int
    query: str
    detector: str
    quiet: int = 0
    peak: float = 0.0  # the highest score since it was raised (or re-raised)
    trough: float = 0.0  # the lowest score since that peak
    low: int = 0  # reads in a row at ``_RECOVERED_SHARE`` of the peak or less, off the side raised on
    recovered: bool = False  # ``low`` reached ``pending_ticks`` since the peak: the fault's effect ended
    rising: int = 0  # reads in a row at ``_ESCALATION_FACTOR`` times the trough or more, after a recovery
    reads: int = 0  # reads since it was raised (or re-raised)
    rearm_after: int | None = None  # ``Findings.rearm_after`` of the detector that raised it
    # Reads since its last read out (not back at half its peak or less): unread ones count, as time passing.
    calm: int = 0
    # ``calm`` as it stood before the read out that ended it: the calm a departure began after.
    calmed: int = 0
    # What it is about (``_reads``): its series' key in the index, not its id, which is freed once the series
    # is forgotten and given to the next new one; where the detector gives no ids, its row's query and labels.
    series: SeriesKey | None = None

    def heard(self, score: float, side: str, pending: int, *, alone: bool = False) -> bool:
        """An anomalous read of an alert the warm-up recalled, not raised again yet: ``escalates``."""
        self.quiet = 0
        return self.escalates(score, side, pending, alone=alone)

    def escalates(self, score: float, side: str, pending: int, *, alone: bool = False) -> bool:
        """Whether ``score``, the alert's at a read where it is anomalous (past its band on ``side``, see
        ``_deviation``), is the ``pending``-th read in a row of a re-escalation: a new fault on its target,
        which the open alert would otherwise hide.

        A fault that began while an earlier fault's alert was still open (decaying, or held after the repair)
        raised nothing: every alert it would raise was open (seed 905's straggler 472 s after a power brake's
        repair: its SM-clock score fell from 8.6 to 1.64, then rose to 5.2). "Recovered" is relative to the
        alert's own peak, and "worse again" to the level it came down to, so a score hovering at its band's
        edge, or noisy at one level, does not re-raise. Nor does one sooner than ``resolve_after`` reads after
        its raise, what a flapping alert that resolved would have needed to be raised again: a GPU drifting
        out of its peers' band every 50 minutes stays one fleet alert in its 2-hour hold, as built.

        But that hold hid a new fault begun a while after an earlier one's repair: eval seed 1621's straggler
        began 38 minutes after its GPU's hour-long thermal runaway was repaired. Its fleet SM-clock alert,
        raised for the runaway, recovered minutes after the repair and read 6.7 for the straggler, 192 reads
        after its raise; every other alert of the GPU had resolved, and the adaptive SM clock, its band
        widened by the runaway's throttled hour, was held as a rank of its job's earlier move
        (``anomaly.collective``). Never raised. Seed 1649's the same, raised at the 241st read, 1,170 s late.
        So an alert whose detector gives ``rearm_after`` (the fleet's, ``anomaly.fleet_rearm_ticks``: half an
        hour) re-escalates sooner once it has been recovered and read out at none of the last that many reads
        (``calm``; reads without its series count, as time passing: seed 1649's GPU came back from its
        node's outage a straggler, 45 reads after the runaway's repair and 20 minutes down), where no alert
        of another kind is open on its GPU (``alone``, the caller's to tell): the GPU is healthy by every
        other measure, and back among its peers longer than a lemon drifts back between departures (40
        reads, ``test_a_gpu_drifting_in_and_out_of_its_peers_band_is_one_fleet_alert_that_stays_open``). A
        thermal runaway's waves, its thermal alert open, stay one alert (seed 1649's node-07 GPU 1, its fleet
        power back in band half an hour mid-fault, re-raised without ``alone``).

        A recovery is the value back in its band (or past its other side), not merely less far out on the side
        the alert was raised on, and it holds as a raise must: ``pending`` reads in a row. One fault that
        comes and goes in waves is one alert: a thermal runaway's GPU, its clock halved at 100 C and cut by a
        fifth below, read SM-clock scores of 6.5 with dips to 2.6 (still below its band) for one to three
        reads; counted from the lowest dip, the climb back re-raised the alert mid-fault in ``gpuwarden
        demo``, which serve told as the alert cycling. The repaired brake's clock read back inside its band.
        """
        self.reads += 1
        if self.recovered and score >= _ESCALATION_FACTOR * self.trough and self._rearmed(alone):
            self.rising += 1
            return self.rising >= pending
        self.rising = 0
        raised_on = self.alert.labels.get("deviation", "")
        self._settle(score, pending, back=not raised_on or side != raised_on)
        return False

    def _rearmed(self, alone: bool) -> bool:
        """Whether a climb may re-escalate it (``escalates``): past ``resolve_after`` reads since its raise,
        or, ``alone`` on its GPU and recovered, ``rearm_after`` reads since its last read out (``calm``)."""
        if self.reads > self.resolve_after:
            return True
        return alone and self._calm_long()

    def _calm_long(self) -> bool:
        """Whether it was calm ``rearm_after`` reads before its departure now (never without one): ``calm``
        where this read is the first out (a climb read before ``_settle``), else ``calmed`` (a departure
        whose first reads climbed less than twice the trough: seed 1621's straggler read 1.02, 1.29, 3.0)."""
        return self.rearm_after is not None and (self.calm or self.calmed) >= self.rearm_after

    def wants_alone(self) -> bool:
        """Whether ``escalates`` or ``rests`` may need to know if it is ``alone`` on its GPU (so the caller
        asks only then): recovered long enough, and within ``resolve_after`` reads of its raise; or quiet,
        with this tick's read, ``rearm_after`` reads and not yet ``resolve_after``."""
        if self.rearm_after is None:
            return False
        calm = self.recovered and self.reads < self.resolve_after and self._calm_long()
        return calm or self.rearm_after <= self.quiet + 1 < self.resolve_after

    def state(self) -> dict[str, Any]:
        """As JSON values (``anomaly.snapshot``; ``restored`` reads them back)."""
        return {
            "alert": alert_state(self.alert),
            "series": None if self.series is None else key_state(self.series),
            **{name: getattr(self, name) for name in _FIRING_STATE},
        }

    @classmethod
    def restored(cls, state: Mapping[str, Any]) -> _Firing:
        """The firing alert ``state()`` gave ``state`` of."""
        series = None if state["series"] is None else restored_key(state["series"])
        return cls(restored_alert(state["alert"]), series=series, **{k: state[k] for k in _FIRING_STATE})

    def resume(self, recalled: _Firing) -> None:
        """Raised anew after a restart: take up the peak, trough, recovery, rise and reads since its raise
        where ``recalled``, its state from the history the warm-up replayed and the reads since, left them."""
        self.peak, self.trough, self.low = recalled.peak, recalled.trough, recalled.low
        self.recovered, self.rising, self.reads = recalled.recovered, recalled.rising, recalled.reads
        self.calm, self.calmed = recalled.calm, recalled.calmed

    def rests(self, pending: int, *, read: bool = True, alone: bool = False) -> bool:
        """A quiet read: the score was at most 1, the band's edge; or, not ``read``, one without its series
        (its GPU gone, its node down) or that its detector could not judge (``Findings.judged``): no value
        back in its band, so no recovery, and it breaks a run of them.
        Counted as a read at 1, a runaway's alert (9-10) whose node was down for 21 reads recovered, and the
        runaway read back at 9.4 re-raised it mid-fault (seed 903).
        Whether it is the read that resolves it: its ``resolve_after``-th quiet read in a row, or, ``alone``
        on its GPU (no alert of another kind open there, ``escalates``), its ``rearm_after``-th. A fleet
        alert held its 240 quiet reads (2 hours) after every repair, and its incident with it; a departure
        after ``rearm_after`` quiet reads alone re-raises it anyway, so resolving it then tells the operator
        the GPU is clear without telling a lemon's drifts apart any less."""
        self.quiet += 1
        self.reads += 1
        self.rising = 0
        if read:
            self._settle(1.0, pending, back=True)
        else:
            self.low = 0
            self.calm += 1
        early = alone and self.rearm_after is not None and self.quiet >= self.rearm_after
        return early or self.quiet >= self.resolve_after

    def _settle(self, score: float, pending: int, *, back: bool) -> None:
        """Take a read that re-escalates nothing into the peak, the trough and the recovery; ``back``: its
        value is not past its band on the side the alert was raised on."""
        if score > self.peak:
            self.peak = self.trough = score
            self.low, self.recovered, self.calm, self.calmed = 0, False, 0, 0
            return
        self.trough = min(self.trough, score)
        low = back and score <= _RECOVERED_SHARE * self.peak
        self.low = self.low + 1 if low else 0
        if low:
            self.calm += 1
        elif self.calm:
            self.calm, self.calmed = 0, self.calm
        self.recovered = self.recovered or self.low >= pending


@dataclass(slots=True)
class _TakenAlerts:
    """The alerts a snapshot holds (``AnomalyService._alert_state``), as the service keeps them."""

    firing: dict[str, _Firing]
    recalled: dict[str, _Firing]
    recall_ends: dict[str, float]
    pending: dict[str, tuple[int, str, str]]
    collective: CollectiveMoves

    @classmethod
    def restored(cls, meta: Mapping[str, Any]) -> _TakenAlerts:
        """The alerts ``_alert_state`` gave ``meta`` of; ``KeyError``, ``ValueError`` or ``TypeError`` for
        one that does not fit, as a snapshot of before recalled alerts were kept apart (``recalled``)."""
        recalled = {k: _Firing.restored(v) for k, v in meta["recalled"].items()}
        return cls(
            firing={k: _Firing.restored(v) for k, v in meta["firing"].items()},
            recalled=recalled,
            recall_ends={k: float(meta["recall_ends"][k]) for k in recalled},
            pending={k: (int(n), str(d), str(q)) for k, (n, d, q) in meta["pending"].items()},
            collective=CollectiveMoves.restored(meta["collective"]),
        )


@dataclass(slots=True)
class TickResult:
    """What one tick changed."""

    raised: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    findings: list[Findings] = field(default_factory=list)

    def changes(self) -> list[Alert]:
        """The order to apply them in, the forwarder's (``anomaly.forwarder``): a re-escalated alert's old
        activity resolved before its new one is raised (``_Firing.escalates``), the raised alerts, then the
        other resolutions. A GPU's alert raised as its other alert resolves joins that alert's incident, in
        ``gpuwarden demo`` as at ``gpuwarden serve``; taken after the resolution, it opened another."""
        again = {a.fingerprint for a in self.raised}
        ended = [a for a in self.resolved if a.fingerprint in again]
        return [*ended, *self.raised, *(a for a in self.resolved if a.fingerprint not in again)]


def _resolution(alert: Alert, at: datetime) -> Alert:
    """``alert`` resolved at ``at``."""
    return replace(alert, status=AlertStatus.RESOLVED, ends_at=at)


def _deviation(f: Findings, i: int) -> str:
    """``up`` or ``down``: which side of its band (or of its peers, ``sign``) a learned detector's value
    left; "" when the detector says neither.

    Alerting reads it: a temperature that fell (a GPU idle after its reset) is no thermal fault."""
    if f.sign is not None:
        sign = float(f.sign[i])
        return "up" if sign > 0 else "down" if sign < 0 else ""
    if f.lower is None or f.upper is None:
        return ""
    value = float(f.value[i])
    if value < float(f.lower[i]):
        return "down"
    return "up" if value > float(f.upper[i]) else ""


def _make_alert(
    f: Findings, i: int, labels: dict[str, str], at: datetime, window: list[tuple[float, float]]
) -> Alert:
    annotations = {"summary": f.summary_at(i), "detector": f.detector}
    if f.onset is not None:  # the postmortem measures MTTD and MTTR from it (alerting.postmortem.alert_onset)
        annotations["onset"] = rfc3339(datetime.fromtimestamp(float(f.onset[i]), UTC))
    for name, arr in (("yhat", f.yhat), ("yhat_lower", f.lower), ("yhat_upper", f.upper)):
        if arr is not None:
            annotations[name] = f"{float(arr[i]):.6g}"
    evidence = tuple(EvidencePoint(at=datetime.fromtimestamp(t, UTC), value=v) for t, v in window)
    if not evidence:
        evidence = (EvidencePoint(at=at, value=float(f.value[i])),)
    return Alert(
        labels=labels,
        starts_at=at,
        annotations=annotations,
        source=AlertSource.ANOMALY,
        score=exported_score(float(f.score[i])),
        evidence=evidence,
        recommended_action=f.action_at(i),
    )
