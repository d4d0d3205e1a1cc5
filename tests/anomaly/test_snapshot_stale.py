"""A restart from a snapshot ages a source, or a query, that fails through it from its last good read before
the restart, as the uninterrupted service does: ``GpuwardenSourceStale`` neither resolves at the restart nor
comes later for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.health import report
from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, save_snapshot
from gpuwarden.clock import FakeClock
from tests.anomaly.snapshot_grid import EVERY, QUERIES
from tests.anomaly.snapshot_grid import _few_trees as _config
from tests.anomaly.snapshot_query_reads import OutageSource

STALE_AFTER = 3 * EVERY  # raised past 3 ticks of failing: when it is raised tells the ages apart


def _service(
    clock: FakeClock, failing: bool, down: bool, path: Path | None = None, stale_after: float = STALE_AFTER
) -> AnomalyService:
    """A service reading a new ``OutageSource`` (a new process), the temperature query failing (``failing``)
    or the whole source down (``down``), warmed up from the snapshot at ``path`` (None: none)."""
    source = OutageSource()
    source.failing = {QUERIES[0]} if failing else set()
    source.down = down
    service = AnomalyService(_config(stale_after_seconds=stale_after), [source], clock)
    service.warm_up(snapshot=None if path is None else load_snapshot(path, service.cfg))
    return service


Stale = tuple[list[float], bool]


def _stale(clock: FakeClock, service: AnomalyService, n: int) -> list[Stale]:
    """``n`` ticks: each one's staleness ages (the source's, then each query's) and whether
    ``GpuwardenSourceStale`` fires after it."""
    out = []
    for _ in range(n):
        clock.advance(EVERY)
        out.append(_tick(service))
    return out


def _tick(service: AnomalyService) -> Stale:
    """One tick of ``service``, at the clock's time: its staleness ages and whether the alert fires."""
    found = service.infer().findings
    ages = next(f.value for f in found if f.query == "source_staleness")
    firing = any(s.alert.labels["alertname"] == "GpuwardenSourceStale" for s in service.firing.values())
    return np.round(ages, 6).tolist(), firing


def _fail(source: OutageSource, down: bool) -> None:
    """Fail the temperature query of ``source``, or, ``down``, the whole source."""
    if down:
        source.down = True
    else:
        source.failing = {QUERIES[0]}


def _saved_failing(clock: FakeClock, tmp_path: Path, down: bool) -> tuple[AnomalyService, Path]:
    """A service warm for 12 ticks, then failing (a query, or ``down`` the whole source) for one tick,
    its snapshot saved then: the uninterrupted run, and the path a restart takes it up from."""
    straight = _service(clock, failing=False, down=False)
    _stale(clock, straight, 12)
    _fail(straight.sources[0], down)  # type: ignore[arg-type]
    _stale(clock, straight, 1)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    return straight, path


@pytest.mark.parametrize("down", [False, True], ids=["a-query-failing", "the-source-down"])
@pytest.mark.parametrize("lost", [0, 1], ids=["restarted-at-once", "down-a-tick"])
def test_a_restart_ages_what_fails_through_it_from_its_last_good_read(tmp_path, down, lost):
    """Failing from the tick before the save through the restart: the new process aged it from its own
    start (300 s at its first tick where the uninterrupted run read 600 s or 900 s), so its
    ``GpuwardenSourceStale``, raised in the uninterrupted run once the failure outlived
    ``stale_after_seconds``, was raised after the restart only ``stale_after_seconds`` after it (restart fuzz
    ``--mid-tick --failed-warm-ups``: 12 of 20 seeds held that alert otherwise)."""
    clock = FakeClock()
    straight, path = _saved_failing(clock, tmp_path, down)
    _stale(clock, straight, lost)
    restarted = _service(clock, failing=not down, down=down, path=path)
    row = 0 if down else 1  # the source's, else the query's (a source down reports no query after a start)
    want, got = [], []
    for _ in range(4):  # the two services tick together
        clock.advance(EVERY)
        for service, out in ((straight, want), (restarted, got)):
            ages, firing = _tick(service)
            out.append((ages[row], firing))
    assert got == want
    # Failed from 2 (+ lost) ticks before: raised past stale_after_seconds, 4 ticks.
    assert want == [((2 + lost + i) * EVERY, 2 + lost + i > 3) for i in range(4)]


def test_a_query_no_process_read_well_is_aged_from_the_first_ones_start(tmp_path):
    """A query failing since the first process started, through two restarts (the second before any tick,
    its save holding what it took up): aged from the first start, as the uninterrupted run ages it."""
    clock = FakeClock()
    straight = _service(clock, failing=True, down=False)
    _stale(clock, straight, 1)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    restarted = _service(clock, failing=True, down=False, path=path)
    assert save_snapshot(path, restarted.snapshot())
    again = _service(clock, failing=True, down=False, path=path)
    assert _stale(clock, again, 3) == [
        ([0.0, 2 * EVERY, 0.0, 0.0, 0.0, 0.0, 0.0], False),
        ([0.0, 3 * EVERY, 0.0, 0.0, 0.0, 0.0, 0.0], False),  # raised past stale_after_seconds
        ([0.0, 4 * EVERY, 0.0, 0.0, 0.0, 0.0, 0.0], True),
    ]


def test_a_refused_snapshot_ages_from_the_new_process_start(tmp_path):
    """A snapshot older than the warm-up's history is refused, and with it what it knew of the last good
    reads: the query is aged from the new process' start, as without a snapshot."""
    clock = FakeClock()
    straight = _service(clock, failing=False, down=False)
    _stale(clock, straight, 12)
    straight.sources[0].failing = {QUERIES[0]}  # type: ignore[attr-defined]
    _stale(clock, straight, 1)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    clock.advance(straight.warmup_seconds() + EVERY)
    restarted = _service(clock, failing=True, down=False, path=path)
    assert [ages[1] for ages, _ in _stale(clock, restarted, 2)] == [EVERY, 2 * EVERY]


def _stale_alert(service: AnomalyService) -> tuple[object, float | None] | None:
    """The ``GpuwardenSourceStale`` alert ``service`` holds firing, as users read it: when it was raised
    and its score; None: none."""
    held = [s.alert for s in service.firing.values() if s.alert.labels["alertname"] == "GpuwardenSourceStale"]
    return (held[0].starts_at, held[0].score) if held else None


@pytest.mark.parametrize("down", [False, True], ids=["a-query-failing", "the-source-down"])
def test_a_failure_only_the_warm_up_read_is_raised_as_the_uninterrupted_run_raised_it(tmp_path, down):
    """Failing from the first tick the restart missed through its warm-up's read, and read well at its first
    tick: the uninterrupted run raised ``GpuwardenSourceStale`` at that missed tick and held it for
    ``immediate_resolve_after`` quiet ticks; the restarted process, whose ticks never read the failure,
    raised nothing (restart fuzz ``--mid-tick --failed-warm-ups``, 12 of 20 seeds). Its warm-up's read is a
    read: aged from the snapshot's last good read past ``stale_after_seconds``, it raises the alert, told
    at the first tick, held and resolved at the ticks the uninterrupted run's are."""
    clock = FakeClock()
    straight = _service(clock, failing=False, down=False, stale_after=EVERY / 2)
    _stale(clock, straight, 12)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    _fail(straight.sources[0], down)  # type: ignore[arg-type]
    clock.advance(EVERY)
    _tick(straight)  # the tick the restart misses: raised (300 s past the last good read, over 150 s)
    restarted = _service(clock, failing=not down, down=down, path=path, stale_after=EVERY / 2)
    posted: list[object] = []
    restarted.on_alert = posted.append
    for source in (straight.sources[0], restarted.sources[0]):
        source.failing, source.down = set(), False  # type: ignore[attr-defined]
    want, got = [], []
    for _ in range(5):  # the two services tick together
        clock.advance(EVERY)
        for service, out in ((straight, want), (restarted, got)):
            service.infer()
            out.append(_stale_alert(service))
    assert got == want
    assert [a is not None for a in want] == [True, True, True, False, False]  # 4 quiet ticks resolve it
    assert [a.labels["alertname"] for a in posted][:1] == ["GpuwardenSourceStale"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("down", [False, True], ids=["a-query-failing", "the-source-down"])
def test_a_restart_reports_the_last_good_read_before_it_while_the_failure_goes_on(tmp_path, down):
    """``gpuwarden_anomaly_*_last_success_timestamp_seconds`` and ``/healthz``'s ``last_success`` are the
    last good read before the restart, which the snapshot kept, as the alert ages it; they showed none
    (the metric absent, ``null``) while the failure went on through the restart."""
    clock = FakeClock()
    straight, path = _saved_failing(clock, tmp_path, down)
    restarted = _service(clock, failing=not down, down=down, path=path)
    clock.advance(EVERY)
    for service in (straight, restarted):
        service.infer()
    want, got = _last_successes(straight), _last_successes(restarted)
    # The source's (its metric, /healthz) down; else the query's: a source down since its start read none
    # of its queries, which it does not report.
    shown = (0, 2) if down else (0, 1, 2)
    assert [got[i] for i in shown] == [want[i] for i in shown]
    assert None not in [want[i] for i in shown]


def test_a_query_no_process_read_well_reports_no_last_good_read_after_a_restart(tmp_path):
    """What ages a query no process read well (the first one's start) is no good read: none is reported."""
    clock = FakeClock()
    straight = _service(clock, failing=True, down=False)
    _stale(clock, straight, 2)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    restarted = _service(clock, failing=True, down=False, path=path)
    _stale(clock, restarted, 1)
    assert _last_successes(restarted)[1] is None


def _last_successes(service: AnomalyService) -> tuple[float | None, float | None, float | None]:
    """The source's last good read by its metric, the temperature query's by its metric, and the source's
    by ``/healthz``."""
    registry = CollectorRegistry()
    registry.register(service.collector)
    name = service.sources[0].name
    at = registry.get_sample_value
    return (
        at("gpuwarden_anomaly_source_last_success_timestamp_seconds", {"source": name}),
        at("gpuwarden_anomaly_query_last_success_timestamp_seconds", {"source": name, "query": QUERIES[0]}),
        report(service)["sources"][name]["last_success"],
    )


def test_a_query_a_restarts_warm_up_read_failed_holds_its_alerts_though_never_read_by_it(tmp_path):
    """A restarted process whose warm-up read failed a query has not read it yet, so it knew no source for
    it and took the query for readable: a pending alert judged by it lost its count at the warm-up's replayed
    ticks, where the uninterrupted service kept it, and was raised a tick later (restart fuzz ``--promql
    --mid-tick --failed-warm-ups`` seed 205: a thermal alert, its power query failing through the restart)."""
    clock = FakeClock(1_767_225_600.0)
    _, path = _saved_failing(clock, tmp_path, down=False)
    restarted = _service(clock, failing=True, down=False, path=path)
    unreadable = restarted._unreadable(restarted.last_view)
    assert QUERIES[0] not in restarted._query_source
    assert unreadable("adaptive", QUERIES[0], {}) and not unreadable("adaptive", QUERIES[1], {})


def test_a_failing_querys_staleness_alert_counts_no_quiet_tick_while_it_fails(tmp_path):
    """A restart's warm-up replays the ticks it missed with no staleness row: their quiet resolved the
    ``GpuwardenSourceStale`` the uninterrupted service held through the query's second failure, and the
    warm-up raised it again aged from a later read (restart fuzz ``--promql --failed-warm-ups
    --failed-reads``, seed 317). While its query fails, nothing says it works again."""
    clock = FakeClock(1_767_225_600.0)
    straight, _ = _saved_failing(clock, tmp_path, down=False)
    unreadable = straight._unreadable(straight.last_view)
    source = straight.sources[0].name
    assert unreadable("source", "source_staleness", {"source": source, "query": QUERIES[0]})
    assert not unreadable("source", "source_staleness", {"source": source, "query": QUERIES[1]})
    assert not unreadable("source", "source_staleness", {"source": source})
