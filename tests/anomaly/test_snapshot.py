"""The anomaly service's state snapshot: a restart from it scores as if there had been none (also where the
ticks a crash lost read a node outage or NaN samples), and the restored service holds every field, firing
and recalled alert of the saved one."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from anomaly.service import AnomalyService, _Firing
from anomaly.snapshot import load_snapshot, save_snapshot
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertSource, label_fingerprint
from tests.anomaly.snapshot_fields import _PARTS, _assert_same_fields, _service_fields
from tests.anomaly.snapshot_grid import (
    EVERY,
    GPUS,
    QUERIES,
    CounterGridSource,
    GridSource,
    Scores,
    _config,
    _same,
    _saved,
    _service,
    _ticks,
    saved_with_one_firing,
)

BEFORE, DOWN, AFTER = 3 * 288, 2, 12  # three days of ticks, a restart of two ticks, an hour after it


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, float, Scores]:
    """One run of three days, the restarts' snapshot saved from it at their end (taking one only reads, as
    ``anomaly run`` does while ticking), then the ticks a restart is down and the hour after: the saved file,
    the time it was saved at, and the uninterrupted run's scores of that hour. Both restarts take up the
    same file instead of ticking three days each."""
    clock = FakeClock()
    _, service = _service(clock)
    service.warm_up()
    _ticks(clock, service, BEFORE)
    path = tmp_path_factory.mktemp("saved") / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    saved_at = clock.time()
    _ticks(clock, service, DOWN)
    return path, saved_at, _ticks(clock, service, AFTER)


@pytest.fixture
def straight(uninterrupted: tuple[Path, float, Scores]) -> Scores:
    """The uninterrupted run's scores of the hour after the restart's downtime."""
    return uninterrupted[2]


def _restarted(
    uninterrupted: tuple[Path, float, Scores], *, saved: bool, **later: object
) -> tuple[int, AnomalyService, Scores]:
    """The state saved after three days of ticks (``uninterrupted``), two ticks down, a new service warmed up
    (from the snapshot when ``saved``): the ticks of history its warm-up fed, the new service, and its scores
    of the next hour."""
    path, saved_at, _ = uninterrupted
    clock = FakeClock(saved_at)
    clock.advance(DOWN * EVERY)
    source, second = _service(clock, **later)
    fed = second.warm_up(snapshot=load_snapshot(path, second.cfg) if saved else None)
    ((start, end),) = source.reads
    assert end - start == 3600.0  # the hour of history is read either way (whose fleet it is, it tells)
    return fed, second, _ticks(clock, second, AFTER)


def test_a_restart_from_its_snapshot_scores_the_next_ticks_exactly_as_the_uninterrupted_run(
    uninterrupted, straight
):
    fed, service, scores = _restarted(uninterrupted, saved=True)
    assert _same(scores, straight)
    assert fed == DOWN  # only the history after the snapshot was replayed
    adaptive = next(d for d in service.detectors if d.name == "adaptive")
    model = next(iter(adaptive._models.values()))
    assert np.isfinite(model.day[:8]).all()  # three days of hour-of-day profile, kept
    detectors = {d for tick in straight for d, _ in tick}
    assert {"adaptive", "level_shift", "multivariate", "fleet", "thermal"} <= detectors


def test_todays_restart_without_a_snapshot_forgets_the_seasonal_profile_and_scores_otherwise(
    uninterrupted, straight
):
    fed, service, scores = _restarted(uninterrupted, saved=False)
    assert not _same(scores, straight)
    assert fed == 12  # the hour of history, all that is left of three days
    model = next(iter(next(d for d in service.detectors if d.name == "adaptive")._models.values()))
    assert np.isnan(model.day[:8]).sum() > 8 * 12  # half the day's hours never seen


def test_every_component_taken_up_from_the_file_is_saved_again_as_it_was(tmp_path):
    """A round trip through the file: a restored service's own snapshot equals the one it was restored from,
    every component's arrays and JSON alike (a field saved but not restored would differ)."""
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    saved = load_snapshot(path, service.cfg)
    assert saved is not None
    _, other = _service(clock)
    other.warm_up(snapshot=saved)
    again = other.snapshot()
    assert again.components.keys() == saved.components.keys()
    assert {"detector:adaptive", "detector:thermal", "detector:presence", "index"} <= saved.components.keys()
    for name, state in saved.components.items():
        as_json = json.loads(json.dumps(again.components[name].meta))  # tuples are lists in the file
        assert as_json == json.loads(json.dumps(state.meta)), name
        assert again.components[name].arrays.keys() == state.arrays.keys(), name
        for key, array in state.arrays.items():
            assert np.array_equal(again.components[name].arrays[key], array, equal_nan=True), (name, key)


def test_an_alert_firing_at_the_save_fires_on_after_the_restart_and_is_posted_again_to_serve(tmp_path):
    """Taken up firing, as without the restart (its peak, reads and quiet reads since), not recalled to be
    raised again after ``pending_ticks``; the first tick posts it again, so the new forwarder holds it at
    serve (one firing alert posted again is the same one there)."""
    clock = FakeClock()
    _, alert, path = saved_with_one_firing(tmp_path, clock)
    clock.advance(EVERY)
    posted: list[Alert] = []
    other = AnomalyService(_config(), [GridSource()], clock, on_alert=posted.append)
    other.warm_up({alert.fingerprint: clock.now()}, load_snapshot(path, other.cfg))
    state = other.firing["k"]
    assert (state.alert, state.peak, state.reads) == (alert, 7.5, 41)  # and the replayed tick's read
    assert (state.trough, state.quiet) == (1.0, 1)  # it was quiet: at the band's edge, 1
    assert other._recalled == {} and posted == []
    clock.advance(EVERY)
    other.infer()
    assert posted == [alert] and other.firing["k"].quiet == 2


def _held(service: AnomalyService) -> tuple[list[str], list[str]]:
    """The keys of the alerts ``service`` holds firing, and of those it holds recalled."""
    return sorted(service.firing), sorted(service._recalled)


def test_an_alert_recalled_at_the_save_stays_recalled_after_the_restart_and_ends_when_its_recall_does(
    tmp_path,
):
    """An alert the first start's warm-up recalled (the history left it firing) and not raised again by the
    save is taken up recalled, with the end serve gave it, not as an alert firing: saved as firing, it fired
    on after the restart where the uninterrupted run had ended its recall (fuzz seed 45: two fleet SM-clock
    alerts, their clock faults before the run). Nothing of it is posted again to serve."""

    def run(crash: bool) -> tuple[list[tuple[list[str], list[str]]], list[Alert]]:
        clock = FakeClock()
        posted: list[Alert] = []
        service = AnomalyService(_config(), [GridSource()], clock, on_alert=posted.append)
        service.warm_up()
        _ticks(clock, service, 30)
        assert service.firing == {} and service._recalled == {}  # a quiet fleet: plant one recalled alert
        alert = Alert(labels={"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}, source=AlertSource.ANOMALY)
        service._recalled["k"] = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=4)
        service._recall_ends["k"] = service.last_view.time + 2.5 * EVERY  # serve's hold of it ends then
        path = tmp_path / f"{crash}.npz"
        assert save_snapshot(path, service.snapshot())
        _ticks(clock, service, 1)  # lost by the crash
        if crash:
            service = AnomalyService(_config(), [GridSource()], clock, on_alert=posted.append)
            service.warm_up({alert.fingerprint: clock.now()}, load_snapshot(path, service.cfg))
        held = [_held(service)]
        for _ in range(3):
            _ticks(clock, service, 1)
            held.append(_held(service))
        return held, posted

    (straight, _), (restarted, posted) = run(crash=False), run(crash=True)
    assert straight == [([], ["k"]), ([], ["k"]), ([], []), ([], [])]  # its recall ends, nothing fires
    assert restarted == straight and posted == []


def test_a_recall_ends_at_serves_end_of_it_for_a_process_restarted_between_ticks_too(tmp_path):
    """A recalled alert is held until serve's hold of it ends (its ``endsAt``), and serve resolves an alert
    whose ``endsAt`` is not past (``ends_at <= now``, Alertmanager's rule): so at a tick at its end it is no
    longer held. Held there too (``now <= end``), the uninterrupted run held it one tick more than a process
    restarted between ticks, whose tick came 17 s after the end: a first start's recall ends on its grid
    (warm-up + ``held_seconds``), so the run that never restarted always had a tick at it (fuzz seed 2338 of
    ``--snapshot --promql --mid-tick --failed-warm-ups``: a fleet temperature alert held at step 3 by it
    alone)."""

    def run(restart_after: float | None) -> list[tuple[list[str], list[str]]]:
        clock = FakeClock()
        service = AnomalyService(_config(), [GridSource()], clock)
        service.warm_up()
        _ticks(clock, service, 30)
        assert service.firing == {} and service._recalled == {}  # a quiet fleet: plant one recalled alert
        alert = Alert(labels={"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}, source=AlertSource.ANOMALY)
        service._recalled["k"] = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=4)
        end = clock.time() + 2 * EVERY  # serve's hold of it ends at the second tick from here
        service._recall_ends["k"] = end
        if restart_after is not None:
            path = tmp_path / "saved.npz"
            assert save_snapshot(path, service.snapshot())
            clock.advance(restart_after)
            service = AnomalyService(_config(), [GridSource()], clock)
            held_until = {alert.fingerprint: datetime.fromtimestamp(end, UTC)}
            service.warm_up(held_until, load_snapshot(path, service.cfg))
        held = []
        for _ in range(3):
            _ticks(clock, service, 1)
            held.append(_held(service))
        return held

    straight, restarted = run(None), run(17.0)
    assert straight == [([], ["k"]), ([], []), ([], [])]  # at its end serve no longer holds it
    assert restarted == straight


class _ColdAt(GridSource):
    """``GridSource`` with GPU-3's temperature a third of itself at the sample at ``at``."""

    at: float | None = None

    def read(self, start: float, end: float) -> list[Frame]:
        frames = super().read(start, end)
        for f in frames:
            if f.query == QUERIES[0] and self.at is not None:
                f.values[3, f.timestamps == self.at] *= 0.3
        return frames


def test_a_recall_ends_at_its_tick_in_the_replay_of_the_ticks_a_restart_missed(tmp_path):
    """The warm-up's replay of the ticks a restart missed ends a recall at the tick that came at its end, as
    the live tick did: each replayed tick at its clock, not at the end of its read, ``latency_offset_seconds``
    before it. At its read's end, the replay still held recalled the alert serve had ended: GPU-3's
    temperature, recalled as a rise and read far below its band at that tick, was raised again as the rise
    (``deviation="up"``, the old activity) where the uninterrupted run raised a fall, a new alert."""
    config = partial(_config, latency_offset_seconds=30.0, pending_ticks=1)
    labels = {**GPUS[3], "for": QUERIES[0], "model": "adaptive", "alertname": "GpuwardenAnomaly"}
    key = label_fingerprint(labels)

    def run(restart: bool) -> dict[str, str]:
        clock = FakeClock()
        source = _ColdAt()
        service = AnomalyService(config(), [source], clock)
        service.warm_up()
        _ticks(clock, service, 30)
        alert = Alert(labels={**labels, "deviation": "up"}, source=AlertSource.ANOMALY)
        service._recalled[key] = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=4)
        end = clock.time() + 2 * EVERY  # serve's hold of it ends at the second tick from here
        service._recall_ends[key] = end
        source.at = math.floor((end - 30.0) / EVERY) * EVERY  # the sample that tick reads
        path = tmp_path / "saved.npz"
        assert save_snapshot(path, service.snapshot())
        if restart:  # down for both ticks: its warm-up replays them
            clock.advance(2 * EVERY)
            service = AnomalyService(config(), [source], clock)
            service.warm_up(
                {alert.fingerprint: datetime.fromtimestamp(end, UTC)}, load_snapshot(path, service.cfg)
            )
        else:
            _ticks(clock, service, 2)
        return {k: s.alert.labels.get("deviation", "") for k, s in service.firing.items() if k == key}

    straight, restarted = run(False), run(True)
    assert straight == {key: "down"}  # its recall ended: a new alert, on the side it read
    assert restarted == straight


def test_a_restored_service_holds_every_field_the_saved_one_held(tmp_path):
    """Field by field, not through ``state()``: a field that ``state()`` leaves out (or a component the
    snapshot leaves out, as the counters could be: the other tests read no counter) differs here."""
    clock = FakeClock()
    source = CounterGridSource(gone_after=clock.time() + 290 * EVERY)
    first = AnomalyService(_config(), [source], clock)
    first.warm_up()
    _ticks(clock, first, 300)  # a day: the hour-of-day profiles filled
    path = tmp_path / "s.npz"
    assert save_snapshot(path, first.snapshot())
    second = AnomalyService(_config(), [source], clock)
    second.warm_up(snapshot=load_snapshot(path, second.cfg))
    for service in (first, second):  # a free id's labels are its last series' until reused: no state
        index = service.index
        index.labels = [lab if key else {} for key, lab in zip(index.keys, index.labels, strict=True)]
    # The GPUs counted, looked up as the next read of the gauge would: a snapshot no longer fills that cache.
    next(d for d in first.detectors if d.name == "signatures")._counted_gpus()  # type: ignore[attr-defined]
    parts = _PARTS
    saved, taken = (_service_fields(s) for s in (first, second))
    assert np.isfinite(first.counters.last_value).sum() == 2 * len(GPUS)  # the counters hold state
    signatures = next(d for d in first.detectors if d.name == "signatures")
    assert signatures._sbe_read and signatures._vanished and signatures._links_active  # type: ignore[attr-defined]
    for part in parts:
        _assert_same_fields(saved[part], taken[part], part)
    forests = [next(d for d in s.detectors if d.name == "multivariate") for s in (first, second)]
    assert np.array_equal(*(np.vstack(f._rows) for f in forests))  # type: ignore[attr-defined]


class OutageSource(GridSource):
    """Node n1 (GPUs 4-7) down from ``down`` to ``up`` (times): as Prometheus answers a range read, its series
    have no samples then, and a read of a window without any sample of a series does not return it."""

    def __init__(self, down: float, up: float) -> None:
        super().__init__()
        self.down, self.up = down, up

    def read(self, start: float, end: float) -> list[Frame]:
        out = []
        for frame in super().read(start, end):
            values = frame.values.copy()
            values[4:, (frame.timestamps >= self.down) & (frame.timestamps < self.up)] = np.nan
            seen = np.isfinite(values).any(axis=1)
            labels = [gpu for gpu, s in zip(GPUS, seen.tolist(), strict=True) if s]
            out.append(Frame(frame.query, labels, frame.timestamps, values[seen]))
        return out


def test_a_crash_whose_lost_ticks_span_a_node_outage_scores_as_the_uninterrupted_run(tmp_path):
    """The ticks a crash lost are replayed from the history, where a node down for two of them and back by
    the third has its series with gaps; a live tick read them not at all. Replayed as gaps, the fleet
    detector restarted those GPUs' smoothing and the index took them as seen, so the first ticks after the
    restart scored the node otherwise than the uninterrupted run (fuzz seed 28)."""

    straight, restarted = _crashed_across(tmp_path, OutageSource)  # the node down, then back
    assert any(d == "fleet" for d, _ in straight[0])
    assert _same(restarted, straight)


def _crashed_across(tmp_path, source_for: Callable[[float, float], GridSource]) -> tuple[Scores, Scores]:
    """The scores of the 6 ticks after a crash that lost the ticks 13-15 (the state saved after 12), and of
    the same ticks uninterrupted, reading ``source_for(since, until)``: what happens at the ticks 13-14."""

    def run(crash: bool) -> Scores:
        clock = FakeClock()
        t0 = clock.time()
        source = source_for(t0 + 12.5 * EVERY, t0 + 14.5 * EVERY)
        service = AnomalyService(_config(), [source], clock)
        service.warm_up()
        _ticks(clock, service, 12)
        path = tmp_path / f"{crash}.npz"
        assert save_snapshot(path, service.snapshot())
        _ticks(clock, service, 3)  # lost by the crash
        if crash:
            service = AnomalyService(_config(), [source], clock)
            service.warm_up(snapshot=load_snapshot(path, service.cfg))
        return _ticks(clock, service, 6)

    return run(crash=False), run(crash=True)


class BlankSampleSource(GridSource):
    """GPU 2's temperature read as one ``blank`` sample (``nan``: Prometheus' ``NaN``, 0/0 in a query, the
    frame saying its cells hold samples; ``inf``: ``+Inf``) at each step from ``since`` to ``until``."""

    def __init__(self, blank: str, since: float, until: float) -> None:
        super().__init__()
        self.blank, self.since, self.until = blank, since, until

    def read(self, start: float, end: float) -> list[Frame]:
        frames = super().read(start, end)
        if not frames:
            return frames
        temperature, *rest = frames
        values = temperature.values.copy()
        values[2, (temperature.timestamps >= self.since) & (temperature.timestamps < self.until)] = (
            math.nan if self.blank == "nan" else math.inf
        )
        present = np.ones(values.shape, np.bool_) if self.blank == "nan" else None
        return [Frame(temperature.query, GPUS, temperature.timestamps, values, present=present), *rest]


@pytest.mark.parametrize("blank", ["nan", "inf"])
def test_a_crash_whose_lost_ticks_read_a_series_only_as_nan_or_inf_scores_as_the_uninterrupted_run(
    tmp_path, blank
):
    """A live tick whose read holds a series only as a NaN or infinite sample reads it as a gap row (the
    fleet detector restarts its smoothing, the index takes it as seen); the replay of the ticks a crash
    lost dropped it, as a series without a sample there, and scored the ticks after the restart otherwise."""

    straight, restarted = _crashed_across(tmp_path, partial(BlankSampleSource, blank))
    assert any(d == "fleet" for d, _ in straight[0])
    assert _same(restarted, straight)
