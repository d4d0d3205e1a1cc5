"""The detector seam: the ``Detector`` protocol, what a detector returns, and the one registry object.

A detector reads the tick's ``View`` and returns ``Findings``: arrays of scores (>1 means anomalous) with
the label set of each scored thing, optional bands (``yhat``, ``yhat_lower``, ``yhat_upper``) and the action
the evidence suggests. Built-ins are listed explicitly in ``builtin_registry``; a duplicate name is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from anomaly.series import View
from anomaly.snapshot import State
from anomaly.thresholds import BoolArray, FloatArray, IntArray
from gpuwarden.errors import ConfigError
from gpuwarden.model import RecommendedAction


@dataclass(frozen=True, slots=True)
class Findings:
    """One detector's scores for one tick; arrays are aligned with ``labels``."""

    detector: str
    query: str
    labels: Sequence[Mapping[str, str]]
    score: FloatArray
    value: FloatArray
    yhat: FloatArray | None = None
    lower: FloatArray | None = None
    upper: FloatArray | None = None
    action: RecommendedAction | Sequence[RecommendedAction] = RecommendedAction.INVESTIGATE
    summary: str | Sequence[str] = ""
    alert_labels: Mapping[str, str] = field(default_factory=dict)
    immediate: bool = False  # deterministic evidence: alert on the first anomalous tick
    ids: IntArray | None = None  # series ids of the rows, so the service can attach an evidence window
    resolve_after: int | None = None  # quiet ticks before the alert resolves; None: thresholds.resolve_after
    # Reads recovered and out at none of which a firing alert of a row re-escalates at a new departure,
    # even within ``resolve_after`` reads of its raise, where no alert of another kind is open on its GPU
    # (the fleet detector's long hold: ``anomaly.firing``); None: only past ``resolve_after`` reads.
    rearm_after: int | None = None
    # When each row's condition began (Unix seconds), where the detector knows it before the tick that
    # raises it (the presence detector: the last sample seen); told as the alert's ``onset`` annotation.
    onset: FloatArray | None = None
    # Per row, the sign of the deviation (above 0: the value is high, below: low) for a detector without
    # bands; None: read from ``lower``/``upper`` where they are given.
    sign: FloatArray | None = None
    # Per row, whether the detector judged it: False where it reports a row it could not score for want of
    # what it needs (thermal: no power draw, or a guess above any power it learnt at; fleet: no peers;
    # GpuHung: no SM-active share; adaptive and thermal: a warm-up sample), at 0. Such a row is no read of the
    # series: a firing alert does not recover by it (``anomaly.service``). None: every row with a value (with
    # ``ids``; without, every row).
    judged: BoolArray | None = None

    def action_at(self, i: int) -> RecommendedAction:
        """The recommended action for row ``i``."""
        if isinstance(self.action, RecommendedAction):
            return self.action
        return self.action[i]

    def summary_at(self, i: int) -> str:
        """The human summary for row ``i``."""
        if isinstance(self.summary, str):
            return self.summary
        return self.summary[i]

    def judged_rows(self) -> BoolArray:
        """Per row, whether it was judged (``judged``, by default every row with a value)."""
        if self.judged is not None:
            return self.judged
        if self.ids is None:
            return np.ones(len(self.labels), np.bool_)
        return np.isfinite(self.value)

    def anomalous(self) -> Iterator[int]:
        """Rows whose score is above 1."""
        return iter(np.flatnonzero(self.score > 1.0).tolist())


class Detector(Protocol):
    """Scores what a tick read; ``fit`` is called on the ``fit_every`` schedule."""

    name: str

    def fit(self, view: View) -> None:
        """Refit models that are not online (may be a no-op)."""
        ...

    def detect(self, view: View) -> list[Findings]:
        """Score the tick."""
        ...

    def forget(self, ids: np.ndarray) -> None:
        """Series ids that disappeared; drop their state."""
        ...


@runtime_checkable
class JudgedDetector(Detector, Protocol):
    """A detector whose alerts are judged by several queries (thermal: temperature and power): the service
    holds such an alert at a tick that did not read, or failed, any of them, and judges it at the others."""

    def judged_by(self, query: str) -> tuple[str, ...]:
        """The queries an alert of ``query`` is judged by (its own query among them)."""
        ...


@runtime_checkable
class SavedDetector(Detector, Protocol):
    """A detector whose learnt state a snapshot keeps (``anomaly.snapshot``); one without starts afresh at
    a restart, and learns from the history the warm-up replays."""

    def state(self) -> State:
        """Its state: copies, which later ticks leave as they are. It only reads: a save calls it while a
        tick may run (and then drops what it gave and calls it again)."""
        ...

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()`` of a detector of the same settings); ``ValueError`` or
        ``KeyError`` when it does not fit."""
        ...


DetectorFactory = Callable[[], Detector]


class DetectorRegistry:
    """Names to detector factories; one object, built-ins registered in one visible place."""

    def __init__(self) -> None:
        self._factories: dict[str, DetectorFactory] = {}

    def register(self, name: str, factory: DetectorFactory) -> None:
        """Add a detector; a duplicate name is a configuration error."""
        if name in self._factories:
            raise ConfigError(f"detector {name!r} is registered twice", field="anomaly.detectors")
        self._factories[name] = factory

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._factories)

    def create(self, names: Sequence[str]) -> list[Detector]:
        """Instantiate the named detectors; an unknown name is a configuration error."""
        unknown = [n for n in names if n not in self._factories]
        if unknown:
            raise ConfigError(
                f"unknown detector(s) {unknown}; known: {self.names()}", field="anomaly.detectors"
            )
        return [self._factories[n]() for n in names]
