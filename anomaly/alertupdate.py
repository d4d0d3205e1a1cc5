"""The per-tick alert update: which findings raise, hold, re-raise and resolve alerts, and which alerts a
tick has no evidence about (a source or query down, a query not due) and so leaves as they are."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from anomaly.collective import collective_workloads
from anomaly.detectors import Findings
from anomaly.firing import TickResult, _deviation, _Firing, _make_alert, _resolution
from anomaly.ledger import GpuKey, gpu_key
from anomaly.presence import PresenceDetector
from anomaly.series import SeriesIndex, View
from anomaly.serieskeys import SeriesKey, series_key
from anomaly.servicecore import ServiceCore
from anomaly.writeback import output_labels
from gpuwarden.model import Alert, label_fingerprint

DEFAULT_ALERTNAME = "GpuwardenAnomaly"

# Labels an alert says of itself: an input series' own (a query over ``ALERTS``, a recording rule's
# ``deviation``) named the alert after another and set the side it raised on, which its re-escalation reads.
_OWN_LABELS = ("alertname", "deviation")


def _but_metric(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` without ``metric`` and ``deviation`` (an alert's, or a row's before it is set)."""
    return {k: v for k, v in labels.items() if k not in ("metric", "deviation")}


@dataclass(slots=True)
class _Row:
    """An anomalous row of a tick's findings, as the alert it raises or holds (``AlertUpdater._row``)."""

    f: Findings
    i: int
    key: str  # what the service keys its alerts by: their labels before ``deviation``
    deviation: str  # the side of its band the value left (``_deviation``)
    alert: Alert
    first: bool  # the tick's first row of that key

    @property
    def score(self) -> float:
        """The row's score."""
        return float(self.f.score[self.i])


class AlertUpdater(ServiceCore):
    """Raises and resolves the service's alerts from each tick's findings (``_update_alerts``)."""

    def _drop_collective(self, f: Findings, rows: list[int]) -> list[int]:
        """Rows left after removing workload-wide changes (``anomaly.collective``): the rows of a workload
        whose GPUs moved together this tick, and those that moved with it and have not settled since.

        Computed whenever a row is anomalous: gated on several anomalous rows, a job slowed by a straggler for
        half an hour alerted on two of its waiting ranks once the others' widening bands took them under 1,
        while all four were still half-way out. And at every tick while a move holds rows, so a held row is
        released at the first read that finds it settled. So a move starts at the first tick its workload
        moves while a row of ``f`` is anomalous: until then no row of it could alert.
        """
        if not rows and not self.collective.holds(f.detector, f.query):
            return rows
        kept = self.collective.kept(f, collective_workloads(f), rows)
        self.collective_suppressed += len(rows) - len(kept)
        return kept

    def _unreadable(self, view: View) -> Callable[[str, str, Mapping[str, str]], bool]:
        """Which alerts (by detector, query and labels) this tick has no evidence about: their query, or
        their source, failed, or their query was not due (``View.not_due``).

        Alerts of a query that cannot be read neither resolve nor count quiet ticks (a Prometheus outage
        must not resolve every alert, then raise them again); nor do those of a source that answers with no
        series at all (every exporter gone). An alert judged by several queries (``judged_by``) waits while
        any of them cannot be read: a failing SM-active query resolved GpuHung while the GPU was still hung.
        One not tied to a query read yet (presence) waits while any source is down; so does one of a query
        this process has not read yet that a source reports failing (a restart whose warm-up read failed it:
        its pending alerts lost their counts at the replayed ticks, restart fuzz seed 205). A pending alert
        keeps its count through such a tick.
        """
        down_sources = {s.name for s in self.sources if not s.health().up or s.health().empty}
        failing = {(s.name, q) for s in self.sources for q, h in s.health().queries.items() if not h.up}
        failing_names = {q for _, q in failing}
        not_due = self._not_due_alerts(view)

        def unreadable(detector: str, query: str, labels: Mapping[str, str]) -> bool:
            if detector == "source":
                # A failing query's own staleness alert waits out its source's outage, and its own failing
                # (nothing says the query works again): a restart's warm-up replays ticks with no staleness
                # row, and their quiet resolved the alert the uninterrupted service held through a second
                # failure, raised again aged from a later read (restart fuzz seed 317). The source's alert
                # says the source is down meanwhile.
                if "query" not in labels:
                    return False
                source = labels.get("source")
                return source in down_sources or (source, labels["query"]) in failing
            if not_due(detector, query):
                return True
            by = self._judged.get(detector)
            for q in by(query) if by is not None else (query,):
                source = self._query_source.get(q)
                if source is None:  # not read by this process yet: a restart's warm-up read failed it
                    if down_sources or q in failing_names:
                        return True
                elif source in down_sources or (source, q) in failing:
                    return True
            return False

        return unreadable

    def _not_due_alerts(self, view: View) -> Callable[[str, str], bool]:
        """Whether the tick read nothing an alert (by detector and query) is judged by, its query not due.

        Before, such a tick counted quiet: with ``step_seconds`` 30 and ``infer_every_seconds`` 5, GpuLost
        resolved 20 s after it fired while the GPU was still lost, and fired again at the next step. An alert
        judged by several queries (``judged_by``: multivariate, thermal, GpuHung, a load-adjusted fleet
        metric) is judged at a tick that read every one of them, and held at the others: GpuHung, with the
        SM-active share on a longer step than utilisation, never raised: each tick between two SM steps read
        utilisation, found no GpuHung and dropped its pending count. Presence waits when none of its queries
        was read."""
        if not view.not_due:
            return lambda detector, query: False
        not_due = view.not_due
        presence = {d.name: d.not_due(view) for d in self.detectors if isinstance(d, PresenceDetector)}

        def held(detector: str, query: str) -> bool:
            if detector in presence:
                return presence[detector]
            by = self._judged.get(detector)
            return query in not_due if by is None else not not_due.isdisjoint(by(query))

        return held

    def _update_alerts(
        self, result: TickResult, now: float, unreadable: Callable[[str, str, Mapping[str, str]], bool]
    ) -> None:
        """Raise, hold, re-raise and resolve the alerts from a tick's findings (``result``, whose ``raised``
        and ``resolved`` it fills), a tick ending at ``now``; ``unreadable``: what it has no evidence of."""
        at = self.clock.now()
        if self._recalled:
            # Serve resolves an alert whose endsAt is not past (Alertmanager's rule): ended at its end.
            self._recalled = {k: s for k, s in self._recalled.items() if now < self._recall_ends[k]}
        active: set[str] = set()
        pending: dict[str, tuple[int, str, str]] = {}
        self._busy = self._busy_gpus()
        self._metric_series = None  # found again at this tick's first row that may need it (``_metric_kept``)
        # Per detector and query with an alert firing, the series of the rows dropped as their workload's.
        dropped: dict[tuple[str, str], set[int]] = {
            (s.detector, s.query): set() for s in self.firing.values()
        }
        scanned: set[str] = set()  # queries whose metric names were looked at this tick
        for f in result.findings:
            rows = list(f.anomalous())
            if rows and f.query not in scanned:
                scanned.add(f.query)
                self._note_several_metrics(f)
            if not f.immediate:
                rows = self._drop_workloads(f, rows, dropped)
            for i in rows:
                row = self._row(f, i, at, active)
                state = self.firing.get(row.key)
                if state is not None:
                    self._hold(row, state, result)
                else:
                    self._pend(row, pending, result)
        # A tick that read nothing of a pending alert's query neither agreed nor broke the run: before, the
        # ticks between two steps dropped every count, and a learned detector never raised at all.
        for key, (agreed, detector, query) in self._pending.items():
            if key not in active and unreadable(detector, query, {}):
                pending[key] = (agreed, detector, query)
        self._pending = pending
        self._rest(active, unreadable, result, at, dropped)

    def _busy_gpus(self) -> frozenset[GpuKey]:
        """The GPUs (``gpu_key``) with an alert firing at the tick's start, or recalled by the warm-up (firing
        before the restart, not raised again yet), whose detector gives no ``rearm_after``: where a recovered
        fleet alert is not ``alone`` (``_Firing.escalates``). Only where a firing or recalled alert may ask
        (``wants_alone``): none most ticks."""
        held = (*self.firing.values(), *self._recalled.values())
        if not any(s.wants_alone() for s in held):
            return frozenset()
        return frozenset(gpu_key(s.alert.labels) for s in held if s.rearm_after is None)

    def _alone(self, state: _Firing, alert: Alert) -> bool:
        """Whether ``state``'s alert may re-escalate, or resolve, as alone on its GPU (``_Firing.escalates``,
        ``_Firing.rests``)."""
        return state.wants_alone() and gpu_key(alert.labels) not in self._busy

    def _drop_workloads(
        self, f: Findings, rows: list[int], dropped: dict[tuple[str, str], set[int]]
    ) -> list[int]:
        """``_drop_collective``, noting in ``dropped`` the series of the rows it dropped where an alert of
        ``f``'s detector and query fires (``_reads``: such a row is no read of its alert)."""
        kept = self._drop_collective(f, rows)
        ids = dropped.get((f.detector, f.query))
        if ids is not None and f.ids is not None and len(kept) < len(rows):
            gone = sorted(set(rows).difference(kept))
            ids.update(np.asarray(f.ids)[gone].tolist())
        return kept

    def _note_several_metrics(self, f: Findings) -> None:
        """Note ``f``'s query where its series hold more than one metric name. Their alerts drop
        ``__name__`` (as the scores Prometheus scrapes must), so the temperature and the power of one GPU read
        by ``{__name__=~"DCGM_FI_DEV_GPU_TEMP|DCGM_FI_DEV_POWER_USAGE"}`` were one alert: same alertname,
        labels and summary, whichever metric left its band. Such a query's alerts keep the name as ``metric``
        from then on (a metric gone from its answer later changes no alert's labels)."""
        if f.query in self._several_metrics:
            return
        names = {lab.get("__name__") for lab in f.labels}
        if len(names - {None}) > 1:
            self._several_metrics.add(f.query)

    def _row(self, f: Findings, i: int, at: datetime, active: set[str]) -> _Row:
        """Row ``i`` of ``f``, anomalous at ``at``, as its alert; ``active``: the keys met this tick."""
        labels = output_labels(f.labels[i], f.query, f.detector)
        name = f.labels[i].get("__name__")
        if name is not None and f.query in self._several_metrics:
            labels.setdefault("metric", name)
        for own in _OWN_LABELS:  # the input's, kept beside as Prometheus keeps a target's clashing label
            if own in labels:
                labels[f"exported_{own}"] = labels.pop(own)
        labels.update(f.alert_labels)
        labels.setdefault("alertname", DEFAULT_ALERTNAME)
        if "metric" in labels and f.ids is not None and f.query in self._several_metrics:
            labels = self._metric_kept(f, i, labels)
        # The series' alert is one, whichever side of its band: a value back from a spike that the
        # band followed leaves it below, and is no new alert. ``deviation`` is the side it raised on.
        key = label_fingerprint(labels)
        deviation = _deviation(f, i)
        if deviation:
            labels.setdefault("deviation", deviation)
        window = self.evidence.window(int(f.ids[i])) if f.ids is not None else []
        first = key not in active
        active.add(key)
        alert = _make_alert(f, i, labels, at, window)
        if name is not None and labels.get("metric") == name and name not in alert.annotations["summary"]:
            summary = f"{alert.annotations['summary']} ({name})"  # it names the query, not the metric
            alert = replace(alert, annotations={**alert.annotations, "summary": summary})
        return _Row(f, i, key, deviation, alert, first)

    def _metric_kept(self, f: Findings, i: int, labels: dict[str, str]) -> dict[str, str]:
        """``labels`` of row ``i`` of ``f`` with the ``metric`` of the alert firing (or recalled) on its
        series under another metric name, or none (``_note_several_metrics`` met the second name after it was
        raised), its other labels the same: that alert goes on. An exporter upgrade renaming the metric of a
        query that selects both names (``{__name__=~"OLD|NEW"}``) resolved the GPU's alert and raised it
        again under ``metric="NEW"``; the first tick to read both names did so to every alert of the query."""
        key = label_fingerprint(labels)
        if key in self.firing or key in self._recalled or f.ids is None:
            return labels
        held = {**self._recalled, **self.firing}
        if self._metric_series is None:
            replaced, self._metric_series = self.index.replaced, {}
            for key, state in held.items():
                if state.series is not None and state.query in self._several_metrics:
                    now = replaced.get(state.series, state.series)  # followed (``_rest``) this tick
                    self._metric_series.setdefault((state.detector, state.query, now), []).append(key)
        series = self.index.id_key(int(f.ids[i]))
        if series is None:
            return labels
        for key in self._metric_series.get((f.detector, f.query, series), []):
            before = held[key].alert.labels if key in held else {}
            if before and _but_metric(before) == _but_metric(labels):
                kept = _but_metric(labels)
                kept.update({k: before[k] for k in ("metric",) if k in before})
                return {k: kept[k] for k in [*labels, *kept] if k in kept}
        return labels

    def _hold(self, row: _Row, state: _Firing, result: TickResult) -> None:
        """An anomalous read of a firing alert: it stays firing, re-raised where it re-escalates."""
        state.quiet = 0
        f = row.f
        if (
            self.cfg.reescalate_alerts
            and not f.immediate
            and row.first
            and state.escalates(
                row.score, row.deviation, self.cfg.pending_ticks, alone=self._alone(state, row.alert)
            )
        ):
            self._reraise(row.key, state, row.alert, row.score, result)

    def _pend(self, row: _Row, pending: dict[str, tuple[int, str, str]], result: TickResult) -> None:
        """An anomalous read of an alert not firing: one more tick agreed (``pending``, this tick's counts),
        raised once ``pending_ticks`` have (an immediate detector's at once)."""
        f, key = row.f, row.key
        # An alert the warm-up's history left firing reads on as it would have without the restart: heard
        # (its quiet reads start again) with re-escalation off too, re-raised only with it on.
        recalled = self._recalled.get(key)
        escalated = (
            recalled is not None
            and row.first
            and not f.immediate
            and recalled.heard(
                row.score, row.deviation, self.cfg.pending_ticks, alone=self._alone(recalled, row.alert)
            )
            and self.cfg.reescalate_alerts
        )
        # Learned detectors must agree for `pending_ticks` ticks in a row (Prometheus' `for:`).
        agreed = self._pending.get(key, (0, "", ""))[0] + 1
        pending[key] = (agreed, f.detector, f.query)
        if not f.immediate and agreed < self.cfg.pending_ticks:
            return
        pending.pop(key)
        alert = row.alert if recalled is None or escalated else _as_recalled(row.alert, recalled.alert)
        hold = self.cfg.immediate_resolve_after if f.immediate else self.cfg.thresholds.resolve_after
        self.firing[key] = state = _Firing(
            alert,
            f.resolve_after or hold,
            f.query,
            f.detector,
            peak=row.score,
            trough=row.score,
            series=self._series(f, row.i),
            rearm_after=f.rearm_after,
        )
        if recalled is not None:
            del self._recalled[key]
            if escalated:  # as it would have been without the restart: serve holds it firing
                self._reraise(key, recalled, row.alert, row.score, result)
                return
            state.resume(recalled)
        result.raised.append(alert)

    def _rest(
        self,
        active: set[str],
        unreadable: Callable[[str, str, Mapping[str, str]], bool],
        result: TickResult,
        at: datetime,
        dropped: Mapping[tuple[str, str], set[int]],
    ) -> None:
        """Count this tick's quiet reads of the recalled and firing alerts not ``active``: drop the recalled
        ones and resolve (at ``at``) the firing ones it rests; ``dropped``: the series whose rows were dropped
        as their workload's (``_reads``)."""
        read = _reads(result.findings, self.index, dropped)
        # An alert whose series its GPU answers under new labels now (``SeriesIndex.replaced``) goes on there:
        # the same alert where its labels are the same (a metric renamed), ended where the new series holds
        # an alert of its own (``pod`` added: one alert at a time, not the old one for 11 minutes beside it).
        replaced = self.index.replaced
        for key, state in [*self.firing.items(), *self._recalled.items()]:
            if state.series is not None and state.series in replaced:
                state.series = replaced[state.series]
                self.relabelled.add(key)
        self.relabelled &= self.firing.keys()
        if self.relabelled:
            held = {(s.detector, s.query, s.series) for k, s in self.firing.items() if k in active}
            for key in [k for k in self.relabelled if k not in active]:
                state = self.firing[key]
                if (state.detector, state.query, state.series) in held:
                    del self.firing[key]
                    result.resolved.append(_resolution(state.alert, at))
        for key in [
            k for k, state in self._recalled.items() if self._rested(k, state, active, unreadable, read)
        ]:
            del self._recalled[key]  # it would have resolved without the restart; serve let it end
        for key, state in list(self.firing.items()):
            if self._rested(key, state, active, unreadable, read):
                del self.firing[key]
                result.resolved.append(_resolution(state.alert, at))

    def _series(self, f: Findings, i: int) -> SeriesKey:
        """What row ``i`` of ``f`` is about (``_Firing.series``)."""
        key = None if f.ids is None else self.index.id_key(int(f.ids[i]))
        return key if key is not None else _row_key(f, i)

    def _rested(
        self,
        key: str,
        state: _Firing,
        active: set[str],
        unreadable: Callable[[str, str, Mapping[str, str]], bool],
        read: Callable[[_Firing], bool],
    ) -> bool:
        """Whether this tick, where the alert was not found anomalous, is the quiet read that resolves it;
        a tick with no evidence about it (``_unreadable``) counts neither way, one that did not ``read`` its
        series counts towards resolving it but is no recovery (``_Firing.rests``)."""
        if key in active or unreadable(state.detector, state.query, state.alert.labels):
            return False
        return state.rests(self.cfg.pending_ticks, read=read(state), alone=self._alone(state, state.alert))

    def _reraise(self, key: str, state: _Firing, alert: Alert, score: float, result: TickResult) -> None:
        """End the alert's activity and raise it anew (``alert``, scored ``score``): Alertmanager and
        ``gpuwarden serve`` take a firing alert posted again as the same one (nothing new reaches anyone), and
        a resolved one firing again as a new activity."""
        result.resolved.append(_resolution(state.alert, alert.starts_at or self.clock.now()))
        why = f"score {score:.3g} after it fell to {state.trough:.3g} from {state.peak:.3g}"
        again = replace(alert, annotations={**alert.annotations, "reescalated": why})
        self.firing[key] = _Firing(
            again,
            state.resolve_after,
            state.query,
            state.detector,
            peak=score,
            trough=score,
            series=state.series,
            rearm_after=state.rearm_after,
        )
        result.raised.append(again)


def _as_recalled(alert: Alert, recalled: Alert) -> Alert:
    """``alert``, raised again at a restart as the activity the warm-up recalled (``recalled``), on the side
    that was raised on: without the restart the alert fires on under it whichever side its reads are on
    (``_hold``). Raised on the side of its first reads, a rise whose value had come back below the band
    that followed it was a "down" alert, a second one at serve (another activity than the rise it holds,
    ``anomaly.forwarder``), and its recovery was judged against the wrong side (``_Firing.escalates``)."""
    side = recalled.labels.get("deviation", "")
    if not side or alert.labels.get("deviation", "") == side:
        return alert
    return replace(alert, labels={**alert.labels, "deviation": side})


def _reads(
    findings: Sequence[Findings], index: SeriesIndex, dropped: Mapping[tuple[str, str], set[int]]
) -> Callable[[_Firing], bool]:
    """Whether a tick's ``findings`` read a firing alert's series (``_Firing.series``; any score), under the
    id it has now: a detector giving ids reports every series of its step, one not read (a gap in Prometheus'
    answer, as an hour of history holds a node's downtime) without a value; one giving none reports the rows
    it read. A row its detector could not judge (``Findings.judged``: a GPU without power or peers) is none:
    the thermal detector scored a runaway's GPU whose power read 0 W at 0 for 8 reads, a recovery, and the
    runaway judged again re-raised its alert mid-fault. Nor is an anomalous row dropped as its workload's
    (``dropped``, per detector and query: ``_drop_collective``), no evidence that the alert's own fault ended:
    a runaway's SM-clock alert (6.6) whose job another fault stalled read 7.5-10 at the job's idle clock,
    dropped with its job for 20 reads, each taken as a quiet read at 1, a recovery, and once the job ran again
    the runaway's clock, past its band against its job, re-raised it mid-fault (fix/trace1507: eval seeds
    1504, 1508-1510). Each detector's and query's reads are gathered once, when first asked."""
    seen: dict[tuple[str, str], tuple[set[int], set[SeriesKey]]] = {}

    def read(state: _Firing) -> bool:
        if state.series is None:
            return True
        pair = (state.detector, state.query)
        if pair not in seen:
            seen[pair] = _read_rows(f for f in findings if (f.detector, f.query) == pair)
        ids, rows = seen[pair]
        sid = index.id_of(state.series)
        if sid is not None and sid in dropped.get(pair, ()):
            return False
        return (sid is not None and sid in ids) or state.series in rows

    return read


def _read_rows(findings: Iterable[Findings]) -> tuple[set[int], set[SeriesKey]]:
    """The ids of the series ``findings`` judged (``Findings.judged_rows``); the query and labels of their
    judged rows without ids."""
    ids: set[int] = set()
    rows: set[SeriesKey] = set()
    for f in findings:
        judged = f.judged_rows()
        if f.ids is None:
            rows.update(_row_key(f, i) for i in np.flatnonzero(judged).tolist())
        else:
            ids.update(f.ids[judged].tolist())
    return ids, rows


def _row_key(f: Findings, i: int) -> SeriesKey:
    """Row ``i`` of ``f`` by its query and labels: what an alert of a detector giving no ids is about,
    recorded when it is raised (``AnomalyService._series``) and matched against each tick's rows."""
    return series_key(f.query, f.labels[i])
