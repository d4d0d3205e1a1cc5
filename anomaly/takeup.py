"""The service's snapshot: what it has learnt, copied for ``anomaly.snapshot.write_snapshot``, and taken up
again at start when it fits the detectors and is this fleet's (``_take_up``, ``_other_fleet``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from anomaly.detectors import SavedDetector
from anomaly.firing import _TakenAlerts
from anomaly.series import SeriesIndex
from anomaly.serieskeys import series_key
from anomaly.servicecore import ServiceCore
from anomaly.snapshot import Arrays, Snapshot, State, refused, shaping_settings
from anomaly.sources import Frame, SavedSource

# The service's name: its log lines read as they did before it was split into modules (``anomaly run``
# logs the logger's name; an operator filters on it).
logger = logging.getLogger("anomaly.service")

# Series of the history looked up in a snapshot's series index to tell whether it is this fleet's, at most.
_FLEET_SAMPLE = 1000


class SnapshotKeeper(ServiceCore):
    """Copies the service's state into a snapshot, restores it, and judges whether one fits at start."""

    def snapshot(self) -> Snapshot:
        """What the service has learnt, now (copies: later ticks leave them as they are), for
        ``anomaly.snapshot.write_snapshot``. It only reads: a tick run meanwhile leaves a copy of parts before
        it and parts after, which the scheduler drops and makes again (``AnomalyScheduler.capture``)."""
        components = {
            "index": self.index.state(),
            "counters": self.counters.state(),
            "evidence": self.evidence.state(),
            "alerts": State(self._alert_state()),
        }
        for d in self.detectors:
            if isinstance(d, SavedDetector):
                components[f"detector:{d.name}"] = d.state()
        components["sources"] = self._sources_state()
        components.update({name: state() for name, state in self.kept_with.items()})
        source_success: dict[str, float] = {}
        query_success: dict[str, float] = {}
        source_series: dict[str, int] = {}
        series_at: dict[str, float] = {}
        query_series: dict[str, int] = {}
        for h in self.health():  # the last good reads any process made, none where none did
            if h.last_success is not None:
                source_success[h.name] = h.last_success
            source_series[h.name] = h.series
            if h.last_series is not None:
                series_at[h.name] = h.last_series
            query_success.update(
                {n: q.last_success for n, q in h.queries.items() if q.last_success is not None}
            )
            query_series.update({n: q.series for n, q in h.queries.items()})
        return Snapshot(
            saved_at=self.clock.time(),
            read_until=self.read_until,
            last_read=dict(self._last_read),
            query_read=dict(self._query_read),
            settings=shaping_settings(self.cfg),
            components=components,
            source_success=source_success,
            query_success=query_success,
            source_series=source_series,
            series_at=series_at,
            query_series=query_series,
            started=self._chain_started,
        )

    def _sources_state(self) -> State:
        """Each source's own learnt state (``SavedSource``: PromQL's answer steps), in one component: its
        arrays numbered by the source's place in ``names``."""
        names: list[str] = []
        metas: list[dict[str, Any]] = []
        arrays: Arrays = {}
        for source in self.sources:
            if isinstance(source, SavedSource):
                state = source.state()
                arrays.update({f"s{len(names)}_{key}": array for key, array in state.arrays.items()})
                names.append(source.name)
                metas.append(state.meta)
        return State({"names": names, "states": metas}, arrays)

    def restore_sources(self, snapshot: Snapshot | None) -> None:
        """Give each ``SavedSource`` its state in ``snapshot`` before its first read; None (or a source the
        snapshot has none of): nothing learnt. One that does not fit is said, and the source starts from
        nothing, the rest of the snapshot taken up as it would be."""
        saved = None if snapshot is None else snapshot.components.get("sources")
        for source in self.sources:
            if not isinstance(source, SavedSource):
                continue
            try:
                source.restore(None if saved is None else _source_state(saved, source.name))
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                source.restore(None)
                logger.warning(
                    "anomaly state snapshot %s: what source %s learnt of its answer steps and range edges"
                    " not used (%s: %s)",
                    "" if snapshot is None else snapshot.origin,
                    source.name,
                    type(exc).__name__,
                    exc,
                )

    def _alert_state(self) -> dict[str, Any]:
        """The firing alerts, those recalled after a restart and not raised again (``_recall``) with when
        their recall ends, the pending ones, and the workloads' moves with the rows they hold
        (``anomaly.collective``: restarted without them, a rank held after its job's slowdown could alert as
        its job came back, where the uninterrupted service raised nothing), as JSON values
        (``_TakenAlerts.restored`` reads them back). A recalled alert saved as firing fired on after a
        restart from the snapshot, where the uninterrupted run ended its recall (fuzz seed 45)."""
        return {
            "firing": {key: state.state() for key, state in self.firing.items()},
            "recalled": {key: state.state() for key, state in self._recalled.items()},
            "recall_ends": {key: self._recall_ends[key] for key in self._recalled},
            "pending": {key: list(state) for key, state in self._pending.items()},
            "collective": self.collective.state(),
        }

    def restore(self, snapshot: Snapshot) -> None:
        """Take up ``snapshot``'s series index, counters, evidence and detectors (not its alerts: the warm-up
        replays from them); ``KeyError`` or ``ValueError`` when it does not fit, some components taken up."""
        parts = snapshot.components
        self.index.restore(parts["index"])
        self.counters.restore(parts["counters"])
        self.evidence.restore(parts["evidence"])
        for d in self.detectors:
            if isinstance(d, SavedDetector):
                d.restore(parts[f"detector:{d.name}"])
        self._last_read = dict(snapshot.last_read)
        self._query_read = dict(snapshot.query_read)
        self._source_success = dict(snapshot.source_success)
        self._query_success = dict(snapshot.query_success)
        self._series_kept = {
            name: (count, snapshot.series_at.get(name)) for name, count in snapshot.source_series.items()
        }
        self._query_series = dict(snapshot.query_series)
        self._chain_started = snapshot.started if snapshot.started is not None else self._started

    def _learnt_from(self, snapshot: Snapshot | None) -> Snapshot | None:
        """``snapshot`` where it learnt anything, else None with the start of its chain taken (a source none
        of its processes read well is aged from there, ``_succeeded``). One whose processes read no source
        nor query (``last_read``, ``query_read`` empty) was saved while its warm-up was deferred, Prometheus
        down since it started (``anomaly.warmupretry``): nothing was fed to its detectors. Taken up, its
        ``read_until`` said the history before it had been read: the restart read the ticks since as after
        an outage, never deferred its warm-up nor replayed the history, the defect the deferral fixed back
        through a restart. Without it the warm-up goes as a fresh start's: the history read, deferred again
        where Prometheus is still down.

        Its alerts are taken up all the same (``_alerts_of_deferred``): what its ticks raised while they read
        nothing (``GpuwardenSourceStale``) fires on."""
        if snapshot is None or snapshot.last_read or snapshot.query_read:
            return snapshot
        self._chain_started = snapshot.started if snapshot.started is not None else self._started
        self._alerts_of_deferred(snapshot)
        logger.info(
            "anomaly state snapshot %s holds nothing learnt (its process never read a source: its warm-up was"
            " deferred); warming up from the history, as a fresh start does",
            snapshot.origin,
            extra={"state_file": snapshot.origin},
        )
        return None

    def _alerts_of_deferred(self, snapshot: Snapshot) -> None:
        """Take up the alerts of ``snapshot``, saved while deferred (``_learnt_from``): those its ticks raised
        reading nothing, ``GpuwardenSourceStale`` (aged from the chain's start, as it was), fire on from
        where they were, posted again at the first tick (``_resend``), as the process that ran on kept them.
        Dropped with the rest of the snapshot, a restart at the tick Prometheus answered again resolved the
        alert at once, where the uninterrupted run kept it firing ``pending_ticks`` quiet reads (restart
        fuzz seeds 2708 and 2731 of ``--snapshot --promql --down-at-start 20``): an operator saw it resolve,
        and raised again where Prometheus was still down. One that does not fit is said and left out."""
        try:
            alerts = _TakenAlerts.restored(snapshot.components["alerts"].meta)
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            logger.warning(
                "anomaly state snapshot %s: the alerts its process held firing are not taken up (%s: %s)",
                snapshot.origin,
                type(exc).__name__,
                exc,
                extra={"state_file": snapshot.origin},
            )
            return
        self.firing, self._pending = alerts.firing, alerts.pending
        self._recalled, self._recall_ends = alerts.recalled, alerts.recall_ends
        self._resend = [state.alert for state in self.firing.values()]

    def _take_up(
        self, snapshot: Snapshot, start: float, until: float, history: Sequence[Frame]
    ) -> tuple[float, _TakenAlerts] | None:
        """Restore ``snapshot`` if it fits: the time it had read up to, and its alerts; None, said in a
        warning naming its file, when it is older than the ``history`` read (from ``start``), newer than now
        (``until``: a clock set back), does not fit the detectors or is another fleet's (``_other_fleet``),
        nothing restored."""
        why = None
        if snapshot.read_until < start:
            why = (
                f"is {until - snapshot.read_until:.0f} s old, older than the {until - start:.0f} s of history"
            )
        elif snapshot.read_until > until:
            why = f"was saved {snapshot.read_until - until:.0f} s after now (the clock was set back?)"
        else:
            before = self.snapshot()
            # The history's reads: the next tick reads on from them.
            read, queries = dict(self._last_read), dict(self._query_read)
            try:
                self.restore(snapshot)
                alerts = _TakenAlerts.restored(snapshot.components["alerts"].meta)
                why = self._other_fleet(history, snapshot.read_until)
            except (KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
                why = f"does not fit the detectors ({type(exc).__name__}: {exc})"
            self._last_read.update(read)
            self._query_read.update(queries)
            if why is not None:
                self.restore(before)
        if why is not None:
            refused(snapshot.origin, why)
            return None
        logger.info("anomaly state restored from %s", snapshot.origin, extra={"state_file": snapshot.origin})
        return snapshot.read_until, alerts

    def _other_fleet(self, history: Sequence[Frame], saved: float) -> str | None:
        """Why the series index taken up is another fleet's; None when it holds at least half the series
        ``history`` holds from ``forget_after_seconds`` before it was ``saved`` (what it still knew then, and
        what came since), or when those it holds are at least half of its own series of then (the fleet grew
        while the service was stopped), or when the history holds none (Prometheus down: nothing to tell by).

        ``prometheus_url`` shapes nothing the detectors learn and is no setting that refuses a snapshot (a
        Prometheus moved behind a proxy, or renamed, reads the same series), so two fleets run one after the
        other in one directory took up each other's state, and the first tick posted the one's alerts to the
        other's serve. The series tell them apart: those a detector's state is of, by query and labels. At
        most ``_FLEET_SAMPLE`` of them are looked up, evenly spread: all 250,000 of 10,000 GPUs took 4 s. A
        fleet scaled up 3 times during an upgrade held a third of the hour's series: refused, its GPUs lost
        what they had learnt (a week of seasonal profile), though every series of the snapshot was read."""
        lower = saved - self.cfg.forget_after_seconds
        recent = [(f, np.flatnonzero(f.sampled(f.timestamps > lower))) for f in history]
        read = sum(rows.size for _, rows in recent)
        stride = max(1, read // _FLEET_SAMPLE)
        keys = [series_key(f.query, f.labels[i]) for f, rows in recent for i in rows[::stride].tolist()]
        known = sum(self.index.id_of(key) is not None for key in keys)
        # The snapshot's series of then, and how many of them were read since (``known`` scaled to ``read``);
        # none held (all exporters gone past forget_after_seconds before the save) tells nothing of its fleet.
        held = int(np.count_nonzero(self.index.last_seen[: len(self.index.keys)] > lower))
        if 2 * known >= len(keys) or (held and 2 * known * read >= len(keys) * held):
            return None
        return (
            f"is another fleet's: {known:,} of {len(keys):,} series the history holds since"
            f" {self.cfg.forget_after_seconds:.0f} s before its save (at most {_FLEET_SAMPLE:,} looked up)"
            f" are in it, where at least half must be, or at least half of the {held:,} it held then"
            " (anomaly.prometheus_url reads another Prometheus, or the series' labels changed)"
        )


def read_by_this_fleet(service: SnapshotKeeper, snapshot: Snapshot) -> bool:
    """Whether ``snapshot``, not taken up (saved under other settings), is of the fleet ``service`` read since
    its start (its warm-up's history, in its series index): at least half of the series it held in its last
    ``forget_after_seconds`` are read now, or nothing tells (it held none; nothing was read, Prometheus
    down), as ``SnapshotKeeper._other_fleet`` judges a snapshot taken up. The alerts it had not delivered go
    to this fleet's serve only (two configurations run one after the other in one directory, the default
    state file, must not post each other's); a series index that cannot be read tells no fleet."""
    saved = SeriesIndex()
    try:
        saved.restore(snapshot.components["index"])
    except (KeyError, ValueError, TypeError, IndexError, AttributeError):
        return False
    lower = snapshot.read_until - service.cfg.forget_after_seconds
    seen = saved.last_seen[: len(saved.keys)]
    held = [key for key, at in zip(saved.keys, seen.tolist(), strict=True) if key is not None and at > lower]
    if not held or not len(service.index):
        return True
    looked = held[:: max(1, len(held) // _FLEET_SAMPLE)]
    return 2 * sum(service.index.id_of(key) is not None for key in looked) >= len(looked)


def _source_state(saved: State, name: str) -> State | None:
    """Source ``name``'s state in the snapshot's ``sources`` component (``_sources_state``); None: none."""
    names = list(saved.meta["names"])
    if name not in names:
        return None
    i = names.index(name)
    prefix = f"s{i}_"
    arrays = {k.removeprefix(prefix): a for k, a in saved.arrays.items() if k.startswith(prefix)}
    return State(dict(saved.meta["states"][i]), arrays)
