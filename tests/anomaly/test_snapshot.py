"""The anomaly service's state snapshot: a restart from it scores as if there had been none; one that cannot
be used is said, left alone, and the warm-up replays the whole hour as without one."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import stat
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import typer
from pydantic import ValidationError

from anomaly import scheduler as scheduler_module
from anomaly import snapshot as snapshot_module
from anomaly.detectors import SavedDetector
from anomaly.scheduler import _COPIES_WHILE_TICKING, AnomalyScheduler
from anomaly.service import AnomalyService, _Firing
from anomaly.snapshot import Snapshot, load_snapshot, save_snapshot
from anomaly.sources import Frame, SourceHealth
from gpuwarden.cli import anomaly_cmd, anomaly_run
from gpuwarden.cli.consoles import CliConsole
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertSource

EVERY = 300.0  # a tick every 5 minutes: three days are 864 ticks
DAY = 86_400.0
# The multivariate detector's (temperature, power, SM clock, utilisation, memory), which the fleet and thermal
# detectors read too, and a step time for the level-shift detector.
QUERIES = (*AnomalyConfig().multivariate_queries, "train_step_time_seconds")
GPUS = [
    {"Hostname": f"n{i // 4}", "gpu": str(i % 4), "UUID": f"GPU-{i}", "modelName": "H100", "slurm_job": "7"}
    for i in range(8)
]


def _value(query: int, t: float) -> np.ndarray:
    """Each GPU's value of query number ``query`` at ``t``: a daily cycle (busy by day) plus noise drawn
    from ``t``, so a replay of the history reads what the live ticks read."""
    rng = np.random.default_rng([int(t), query])
    hour = (t % DAY) / 3600.0
    busy = 0.5 + 0.5 * math.sin(2 * math.pi * (hour - 9) / 24)
    base = (60 + 20 * busy, 300 + 300 * busy, 1400 + 300 * busy, 40 + 50 * busy, 20_000 + 5000 * busy, 1.0)
    return base[query] * (1 + 0.01 * rng.standard_normal(len(GPUS)))


class GridSource:
    """Prometheus as the service reads it: every query on a grid of ``EVERY`` seconds, at any time."""

    name = "prometheus"

    def __init__(self, gpus: list[dict[str, str]] = GPUS) -> None:
        self.reads: list[tuple[float, float]] = []
        self._health = SourceHealth(self.name)
        self.gpus = gpus

    def read(self, start: float, end: float) -> list[Frame]:
        self.reads.append((start, end))
        ts = np.arange(math.floor(start / EVERY) * EVERY + EVERY, end + 1, EVERY)
        ts = ts[(ts > start) & (ts <= end)]
        self._health.succeeded(end, len(GPUS))
        if not ts.size:
            return []
        return [
            Frame(q, self.gpus, ts, np.column_stack([_value(k, t) for t in ts.tolist()]))
            for k, q in enumerate(QUERIES)
        ]

    def health(self) -> SourceHealth:
        return self._health


def _config(**overrides: object) -> AnomalyConfig:
    return AnomalyConfig(
        infer_every_seconds=EVERY,
        adaptive_metrics=["*"],
        adaptive_seasonality=True,  # the hour-of-day and hour-of-week profiles a restart forgot
        presence_queries=["DCGM_FI_DEV_GPU_TEMP"],
        **overrides,
    )


def _service(clock: FakeClock, **overrides: object) -> tuple[GridSource, AnomalyService]:
    source = GridSource()
    return source, AnomalyService(_config(**overrides), [source], clock)


Scores = list[dict[tuple[str, str], np.ndarray]]


def _ticks(clock: FakeClock, service: AnomalyService, n: int) -> Scores:
    """``n`` ticks: each one's scores by detector and query."""
    out = []
    for _ in range(n):
        clock.advance(EVERY)
        result = service.infer()
        out.append({(f.detector, f.query): f.score.copy() for f in result.findings if f.detector != "source"})
    return out


def _same(a: Scores, b: Scores) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=True) for k in x)
        for x, y in zip(a, b, strict=True)
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


def _saved(tmp_path, clock: FakeClock, ticks: int = 30) -> tuple[AnomalyService, object]:
    _, service = _service(clock)
    service.warm_up()
    _ticks(clock, service, ticks)
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    return service, path


@pytest.fixture(scope="module")
def thirty_ticks(tmp_path_factory) -> tuple[float, bytes]:
    """What ``_saved`` writes (a quiet fleet's 30 ticks) and when, made once for the tests that only read or
    damage the file: each takes its own copy (``_saved_file``)."""
    clock = FakeClock()
    _, path = _saved(tmp_path_factory.mktemp("thirty"), clock)
    return clock.time(), path.read_bytes()


def _saved_file(tmp_path, thirty_ticks: tuple[float, bytes]) -> tuple[FakeClock, Path]:
    """``_saved``'s file, copied into ``tmp_path``, and a clock at its save."""
    saved_at, data = thirty_ticks
    path = tmp_path / "anomaly.state.npz"
    path.write_bytes(data)
    path.chmod(0o600)
    return FakeClock(saved_at), path


def _refused(
    path, clock: FakeClock, caplog, why: str, source: GridSource | None = None, **later: object
) -> AnomalyService:
    """Warming up from ``path`` (reading ``source``, else the fleet it was saved from) falls back to the
    whole hour of history, says ``why`` naming the file, and leaves the file as it was: the service."""
    before = path.read_bytes()
    source = source or GridSource()
    service = AnomalyService(_config(**later), [source], clock)
    with caplog.at_level(logging.INFO):
        snapshot = load_snapshot(path, service.cfg)
        fed = service.warm_up(snapshot=snapshot)
    ((start, end),) = source.reads
    assert end - start == 3600.0 and fed == 12
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in line and why in line and "left as it is" in line for line in said), said
    assert path.read_bytes() == before
    assert len(service.index) == 8 * len(QUERIES)  # what the hour held, nothing from the file
    return service


def test_a_snapshot_older_than_the_hour_of_history_is_refused(tmp_path, thirty_ticks, caplog):
    clock, path = _saved_file(tmp_path, thirty_ticks)
    clock.advance(3600.0 + EVERY)
    _refused(path, clock, caplog, "s old, older than the 3600 s of history")


def test_a_snapshot_saved_after_now_is_refused_as_a_clock_set_back(tmp_path, thirty_ticks, caplog):
    clock, path = _saved_file(tmp_path, thirty_ticks)
    _refused(path, FakeClock(clock.time() - 2 * EVERY), caplog, "s after now (the clock was set back?)")


def test_no_snapshot_yet_is_no_warning_and_the_whole_hour_is_replayed(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert load_snapshot(tmp_path / "none.npz", _config()) is None
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert f"no anomaly state snapshot at {tmp_path / 'none.npz'} yet" in caplog.text


def test_a_snapshot_saved_under_other_settings_is_refused_naming_what_changed(tmp_path, thirty_ticks, caplog):
    clock, path = _saved_file(tmp_path, thirty_ticks)
    _refused(path, clock, caplog, "saved under other settings (anomaly.fleet_k changed)", fleet_k=5.0)


def test_where_the_service_reads_and_posts_is_no_setting_that_refuses_a_snapshot(
    tmp_path, thirty_ticks, caplog
):
    """The same fleet read through another Prometheus (moved behind Thanos, renamed) takes its state up."""
    clock, path = _saved_file(tmp_path, thirty_ticks)
    cfg = _config(prometheus_url="http://thanos:10902", port=9800, state_save_seconds=60.0)
    clock.advance(EVERY)
    service = AnomalyService(cfg, [GridSource()], clock)
    with caplog.at_level(logging.INFO):
        assert service.warm_up(snapshot=load_snapshot(path, cfg)) == 1
    assert f"anomaly state restored from {path}" in caplog.text


OTHER_FLEET = [{**gpu, "Hostname": f"b{gpu['Hostname']}", "UUID": f"GPU-B{i}"} for i, gpu in enumerate(GPUS)]


@pytest.mark.parametrize("down", [0.0, EVERY], ids=["within-a-step", "a-tick-later"])
def test_another_fleets_snapshot_is_refused_and_none_of_its_alerts_is_posted(tmp_path, caplog, down):
    """Two configurations run one after the other in one directory (another ``prometheus_url``, the same
    default state file): the second took up the first's state, and its first tick posted the first fleet's
    alerts to its own serve. Told by the series the history holds, also where no step came since the save."""
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    alert = Alert(labels={"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}, source=AlertSource.ANOMALY)
    service.firing["k"] = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=40)
    assert save_snapshot(path, service.snapshot())
    clock.advance(down)
    why = "is another fleet's: 0 of 48 series the history holds since 900 s before its save (at most 1,000"
    other = _refused(path, clock, caplog, why, GridSource(OTHER_FLEET), prometheus_url="http://prom-b:9090")
    posted: list[Alert] = []
    other.on_alert = posted.append
    clock.advance(EVERY)
    other.infer()
    assert other.firing == {} and posted == []


def test_a_snapshot_of_another_format_version_is_refused(tmp_path, caplog, monkeypatch):
    clock = FakeClock()
    version = snapshot_module.VERSION
    monkeypatch.setattr(snapshot_module, "VERSION", version + 1)
    _, path = _saved(tmp_path, clock)
    monkeypatch.undo()
    _refused(path, clock, caplog, f"is of format version {version + 1}; this gpuwarden reads {version}")


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty", "not-npz"])
def test_a_damaged_snapshot_is_refused(tmp_path, thirty_ticks, caplog, damage):
    clock, path = _saved_file(tmp_path, thirty_ticks)
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "corrupt": data[:1000] + bytes(b ^ 0xFF for b in data[1000:3000]) + data[3000:],
        "empty": b"",
        "not-npz": b"timestamp,value\n1,2\n",
    }[damage]
    path.write_bytes(damaged)
    _refused(path, clock, caplog, "cannot be read (cut short or corrupt?)")


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "is not an anomaly state snapshot (no header)"),
        (["a", "list"], "is not an anomaly state snapshot (its header is a list)"),
        ({"format": "other"}, "is not an anomaly state snapshot (format 'other')"),
        (
            {"format": "gpuwarden-anomaly-state", "version": snapshot_module.VERSION},
            "has no 'saved_at' in its header",
        ),
        ({"format": "gpuwarden-anomaly-state", "version": 1}, "is of format version 1; this gpuwarden reads"),
    ],
    ids=["no-header", "list", "other-format", "incomplete", "before-recalled-alerts-were-kept-apart"],
)
def test_an_npz_that_is_no_snapshot_of_this_service_is_refused(tmp_path, thirty_ticks, caplog, header, why):
    clock, path = _saved_file(tmp_path, thirty_ticks)
    arrays = {"x": np.zeros(3)}
    if header is not None:
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with path.open("wb") as out:
        np.savez(out, **arrays)
    _refused(path, clock, caplog, why)


def test_a_snapshot_whose_arrays_do_not_fit_the_detectors_is_refused_and_nothing_of_it_kept(
    tmp_path, caplog, monkeypatch
):
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    fleet = next(d for d in service.detectors if d.name == "fleet")
    monkeypatch.setattr(fleet, "smooth", fleet.smooth[:10])  # fewer rows than its other arrays
    assert save_snapshot(path, service.snapshot())
    _refused(path, clock, caplog, "does not fit the detectors (ValueError: fleet ")


def test_a_snapshot_whose_numbers_overflow_the_detectors_is_refused_not_a_traceback(tmp_path, caplog):
    """A number past a float's range in the JSON (a crafted or damaged file: ``1e400`` reads as infinity,
    a 400-digit integer as itself) stopped the start with an ``OverflowError``: refused as any misfit."""
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    snapshot = service.snapshot()
    snapshot.components["detector:presence"].meta["last_tick"] = 10**400
    assert save_snapshot(path, snapshot)
    _refused(path, clock, caplog, "does not fit the detectors (OverflowError: int too large to convert")


def test_a_snapshot_of_before_recalled_alerts_were_kept_apart_is_refused(tmp_path, caplog):
    """Its firing alerts may be recalled ones saved as firing (they would fire on past their recall's end):
    refused, the hour's warm-up recalls what the history left firing."""
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    snapshot = service.snapshot()
    alerts = snapshot.components["alerts"].meta
    del alerts["recalled"], alerts["recall_ends"]  # as saved before: recalled alerts among the firing
    assert save_snapshot(path, snapshot)
    _refused(path, clock, caplog, "does not fit the detectors (KeyError: 'recalled')")


def test_a_snapshot_is_written_whole_and_private_and_a_failed_save_leaves_the_last_one(
    tmp_path, monkeypatch, caplog
):
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_bytes()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with caplog.at_level(logging.WARNING):
        assert not save_snapshot(path, service.snapshot())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left beside it
    assert f"anomaly state not saved to {path}: [Errno 28] No space left on device" in caplog.text


def test_a_snapshot_is_a_copy_that_the_ticks_after_it_leave_as_it_was(tmp_path):
    """The scheduler writes a snapshot while the next ticks run: what it holds must not move with them."""
    clock = FakeClock()
    service, _ = _saved(tmp_path, clock)
    snapshot = service.snapshot()
    assert save_snapshot(tmp_path / "then.npz", snapshot)
    _ticks(clock, service, 3)
    assert save_snapshot(tmp_path / "later.npz", snapshot)
    then, later = (load_snapshot(tmp_path / name, service.cfg) for name in ("then.npz", "later.npz"))
    assert then is not None and later is not None
    for name, state in then.components.items():
        assert later.components[name].meta == state.meta, name
        for key, array in state.arrays.items():
            assert np.array_equal(later.components[name].arrays[key], array, equal_nan=True), (name, key)


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
    _, service = _service(clock)
    service.warm_up()
    _ticks(clock, service, 30)
    assert service.firing == {}  # a quiet fleet: plant one firing alert, as a fault would have left it
    alert = Alert(labels={"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}, source=AlertSource.ANOMALY)
    service.firing["k"] = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=40)
    path = tmp_path / "s.npz"
    assert save_snapshot(path, service.snapshot())
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


def test_the_scheduler_saves_on_its_interval_and_once_more_at_stop(tmp_path):
    clock = FakeClock()
    _, service = _service(clock)
    service.warm_up()
    path = tmp_path / "anomaly.state.npz"
    scheduler = AnomalyScheduler(service, state_file=path)
    scheduler.infer_job()
    scheduler.save_job()
    assert scheduler.saves == 1 and load_snapshot(path, service.cfg) is not None
    scheduler.infer_job()
    scheduler.shutdown()
    assert scheduler.saves == 2
    assert load_snapshot(path, service.cfg).read_until == service.last_view.time  # type: ignore[union-attr]


def _assert_same_state(got: Snapshot, want: Snapshot) -> None:
    """``got`` (read from a file) holds what ``want`` holds: the time read to and every component."""
    assert (got.read_until, got.last_read, got.query_read) == (
        want.read_until,
        want.last_read,
        want.query_read,
    )
    assert got.components.keys() == want.components.keys()
    for name, state in want.components.items():
        assert got.components[name].meta == json.loads(json.dumps(state.meta)), name
        assert got.components[name].arrays.keys() == state.arrays.keys(), name
        for key, array in state.arrays.items():
            assert np.array_equal(got.components[name].arrays[key], array, equal_nan=True), (name, key)


@pytest.mark.parametrize(
    ("during", "ticks"),
    [("copy", 1), ("copy", _COPIES_WHILE_TICKING), ("write", 1)],
    ids=["a-tick-in-the-copy", "a-tick-in-every-copy-while-ticking", "a-tick-in-the-write"],
)
def test_a_tick_run_while_a_save_copies_or_writes_the_state_leaves_it_the_state_of_one_instant(
    tmp_path, monkeypatch, caplog, during, ticks
):
    """The ticks run while a save copies the state and while it writes it: a tick that lands in the copy
    (between two components' copies) must not leave the file half before it and half after, and one that
    lands in the write must not move what the file holds."""
    clock = FakeClock()
    _, service = _service(clock)
    service.warm_up()
    _ticks(clock, service, 3)
    path = tmp_path / "anomaly.state.npz"
    scheduler = AnomalyScheduler(service, state_file=path)
    before = service.snapshot()
    left = [ticks]

    def tick() -> None:
        if left[0]:
            left[0] -= 1
            clock.advance(EVERY)
            scheduler.infer_job()

    if (
        during == "copy"
    ):  # after the series index, counters and evidence were copied, before the last detector
        last = [d for d in service.detectors if isinstance(d, SavedDetector)][-1]
        copy = last.state
        monkeypatch.setattr(last, "state", lambda: (tick(), copy())[1])
    else:
        write = snapshot_module.save_snapshot
        monkeypatch.setattr(scheduler_module, "save_snapshot", lambda *args: (tick(), write(*args))[1])
    with caplog.at_level(logging.INFO, logger="anomaly.scheduler"):
        scheduler.save_job()
    saved = load_snapshot(path, service.cfg)
    assert saved is not None and scheduler.saves == 1 and scheduler.ticks == ticks
    _assert_same_state(saved, service.snapshot() if during == "copy" else before)
    assert (saved.read_until > before.read_until) == (
        during == "copy"
    )  # the tick's state, whole, or none of it
    assert ("copied with the ticks held" in caplog.text) == (ticks == _COPIES_WHILE_TICKING)


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"state_file": ""}, "names no file"),
        ({"state_file": "state/"}, "names no file"),
        ({"state_save_seconds": 0}, "greater than or equal to 1"),
    ],
    ids=["empty", "a-directory", "no-interval"],
)
def test_a_state_file_or_save_interval_that_cannot_work_is_refused_naming_the_field(setting, said):
    with pytest.raises(ValidationError) as info:
        AnomalyConfig(**setting)
    assert said in str(info.value) and next(iter(setting)) in str(info.value)


def test_the_state_file_is_kept_beside_the_store_by_default_and_null_keeps_none():
    assert AnomalyConfig().state_file == "gpuwarden-anomaly.state.npz"
    assert AnomalyConfig(state_file=None).state_file is None


class DownSource(GridSource):
    """Prometheus unreachable: every read fails."""

    def read(self, start: float, end: float) -> list[Frame]:
        self.reads.append((start, end))
        self._health.failed("connection refused")
        return []


def test_a_snapshot_saved_before_prometheus_was_ever_read_leaves_the_whole_hour_to_the_warm_up(tmp_path):
    """Saved by a service that never read its source (Prometheus down since its start), the snapshot holds
    nothing of it: the next start must replay the hour of history as without one, not only what came after
    the save (the adaptive bands then scored nothing for their ``warmup`` ticks)."""
    clock = FakeClock()
    first = AnomalyService(_config(), [DownSource()], clock)
    first.warm_up()
    _ticks(clock, first, 3)
    path = tmp_path / "s.npz"
    assert save_snapshot(path, first.snapshot())
    clock.advance(EVERY)
    source, second = _service(clock)
    fed = second.warm_up(snapshot=load_snapshot(path, second.cfg))
    ((start, end), *_) = source.reads
    assert (end - start, fed) == (3600.0, 12)


def _with_member(path, name: str, shape: tuple[int, ...]) -> None:
    """Add to the zip at ``path`` an array member whose header claims ``shape`` (float64) over 16 bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = shape
    data = io.BytesIO()
    np.lib.format.write_array_header_1_0(data, header)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(name, data.getvalue() + bytes(16))


def _deflated(path) -> None:
    """Store every member of the zip at ``path`` compressed (a few KB can inflate to gigabytes)."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    ("craft", "why"),
    [
        (
            lambda path: _with_member(path, "index.huge.npy", (10**12,)),
            "holds an array 'index.huge.npy' of float64 (1000000000000,) (8,000,000,000,000 bytes) in a"
            " member of 144 bytes",
        ),
        (_deflated, "holds a compressed array"),
        (lambda path: np.savez(path, header=np.frombuffer(b"[" * 100_000, np.uint8)), "RecursionError"),
    ],
    ids=["shape-claimed-past-its-data", "compressed", "header-nested-past-the-limit"],
)
def test_a_crafted_snapshot_is_refused_before_it_allocates_anything(
    tmp_path, thirty_ticks, caplog, craft, why
):
    """Numpy allocates an array's claimed shape before it reads it, and inflates a compressed member whole:
    a crafted file must be a refusal (a warning, the hour's warm-up), not a MemoryError or an
    out-of-memory kill at start."""
    clock, path = _saved_file(tmp_path, thirty_ticks)
    craft(path)
    _refused(path, clock, caplog, why)


@pytest.mark.parametrize(
    "claim",
    [
        lambda s: s.components["evidence"].meta.update(size=10**12),
        lambda s: s.components["detector:adaptive"].meta["models"][0].update(capacity=10**12),
    ],
    ids=["evidence-size", "adaptive-capacity"],
)
def test_a_size_claimed_in_the_header_is_not_allocated_past_the_rows_the_file_holds(tmp_path, caplog, claim):
    """The evidence buffer's and an adaptive model's sizes are numbers in the JSON header: a billion claimed
    there made the restore allocate terabytes (a MemoryError out of the warm-up, the process gone)."""
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    snapshot = service.snapshot()
    claim(snapshot)
    assert save_snapshot(path, snapshot)
    _, other = _service(clock)
    with caplog.at_level(logging.INFO):
        other.warm_up(snapshot=load_snapshot(path, other.cfg))
    assert f"anomaly state restored from {path}" in caplog.text
    model = next(iter(next(d for d in other.detectors if d.name == "adaptive")._models.values()))
    assert (other.evidence.pos.size, model.capacity) == (1024, 1024)


def test_a_series_index_whose_free_ids_are_in_use_is_refused(tmp_path, caplog):
    """An id both free and held would be given to the next new series, which would then share the old one's
    state in every detector."""
    clock = FakeClock()
    service, path = _saved(tmp_path, clock)
    snapshot = service.snapshot()
    snapshot.components["index"].meta["free"] = [0]
    assert save_snapshot(path, snapshot)
    _refused(path, clock, caplog, "does not fit the detectors (ValueError: the free slots listed (1) are not")


def test_two_processes_cannot_keep_their_state_in_one_file(tmp_path, monkeypatch, capsys):
    """Each would take up the other's state at its restart (another fleet's, where only the Prometheus
    differed): the second is refused, naming the file, or warned and keeps none where the file is the
    default; once the first lets go it can be taken. A save killed midway left its temporary file: removed."""
    path = tmp_path / "s.npz"
    leftover = tmp_path / ".s.npz.x1y2z3.tmp"
    leftover.write_bytes(b"half a snapshot")
    stderr = io.StringIO()
    monkeypatch.setattr(anomaly_run, "err_console", CliConsole(file=stderr, width=400))
    kept = anomaly_cmd._state_path(AnomalyConfig(state_file=str(path)), None, 0)
    assert kept is not None and not leftover.exists()
    with pytest.raises(typer.Exit):
        anomaly_cmd._state_path(AnomalyConfig(), path, 0)
    said = " ".join(capsys.readouterr().err.split())
    assert f"error: --state-file '{path}': another process keeps its state in it" in said
    monkeypatch.chdir(tmp_path)
    held = anomaly_cmd._state_path(AnomalyConfig(), None, 0)
    assert held is not None
    assert anomaly_cmd._state_path(AnomalyConfig(), None, 0) is None
    assert "warning: anomaly.state_file 'gpuwarden-anomaly.state.npz': another process" in stderr.getvalue()
    kept[1].close()
    again = anomaly_cmd._state_path(AnomalyConfig(), path, 0)
    assert again is not None
    again[1].close()
    held[1].close()


class CounterGridSource(GridSource):
    """``GridSource`` with what the counters and the signatures detector keep state of: an XID count rising by
    one a step, single-bit ECC counts, each GPU's up flag (the last GPU's gone after ``gone_after``) and its
    NVLinks' status."""

    def __init__(self, gone_after: float) -> None:
        super().__init__()
        self.gone_after = gone_after

    def read(self, start: float, end: float) -> list[Frame]:
        frames = super().read(start, end)
        if frames:
            ts = frames[0].timestamps
            counts = np.tile(ts / EVERY, (len(GPUS), 1))
            up = GPUS[:-1] if ts[-1] > self.gone_after else GPUS
            links = [{**gpu, "link": "0"} for gpu in GPUS]
            frames += [
                Frame("DCGM_FI_DEV_XID_ERRORS", GPUS, ts, counts, "counter"),
                Frame("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", GPUS, ts, counts, "counter"),
                Frame("gpuwarden_gpu_up", up, ts, np.ones((len(up), ts.size))),
                Frame("DCGM_FI_DEV_NVLINK_LINK_STATUS", links, ts, np.ones_like(counts)),
            ]
        return frames


# What no snapshot keeps, and need not: caches rebuilt from the next read, counts for /metrics, log-once sets,
# the forest (fitted again on its rows: compared by its scores), the rows kept for the next fit (one array
# instead of a list of them: compared stacked), and the thermal detector's tick before and interval between
# ticks (its newest read after a restore, the interval from the next tick: ``_stepped_back``).
_REBUILT = re.compile(
    r"\._(last|key_cache|group_cache|group_keys|align_cache|matches|scored|params|floors|warned|join|model"
    r"|scorer|rows|read_at|interval)\b|\.uncompared\b"
)


def _fields(obj: object, at: str, out: dict[str, object]) -> dict[str, object]:
    """Every value reachable from ``obj``'s attributes, dict items and list items, by its path."""
    if isinstance(obj, np.ndarray | str | int | float | bool | type(None)):
        out[at] = obj
    elif isinstance(obj, dict):
        out[f"{at}.keys"] = sorted(map(repr, obj))
        for key, value in obj.items():
            _fields(value, f"{at}[{key!r}]", out)
    elif isinstance(obj, list | tuple):
        out[f"{at}.len"] = len(obj)
        for i, value in enumerate(obj):
            _fields(value, f"{at}[{i}]", out)
    else:
        slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
        for name in [*getattr(obj, "__dict__", {}), *slots]:
            if not _REBUILT.search(f"{at}.{name}") and not callable(value := getattr(obj, name)):
                _fields(value, f"{at}.{name}", out)
    return out


def _assert_same_fields(want: dict[str, object], got: dict[str, object], part: str) -> None:
    """``got`` (``_fields``) holds every path of ``want``, each with an equal value."""
    assert want.keys() == got.keys(), part
    for at, value in want.items():
        other = got[at]
        same = (
            np.array_equal(value, other, equal_nan=True) if isinstance(value, np.ndarray) else value == other
        )
        assert same or (value != value and other != other), (at, value, other)  # NaN is NaN


_PARTS = ["index", "counters", "evidence", "firing", "_pending", "_last_read", "_query_read", "saved"]


def _service_fields(service: AnomalyService) -> dict[str, dict[str, object]]:
    """Each part of ``service`` a snapshot keeps, by ``_fields``."""
    return {
        p: _fields(getattr(service, p) if p != "saved" else _saved_detectors(service), p, {}) for p in _PARTS
    }


def _saved_detectors(service: AnomalyService) -> list[object]:
    """The detectors a snapshot keeps (``SavedDetector``: a third party's may keep none)."""
    return [d for d in service.detectors if isinstance(d, SavedDetector)]


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


def test_a_snapshot_changes_nothing_of_the_state_it_copies():
    """A save copies the state while a tick may run, and drops a copy a tick began during: the copy itself
    must write nothing. The signatures detector's filled its cache of the GPUs the exporter counts: one filled
    from the read before a tick's new read (the tick resetting the cache between the two) was kept by the
    detector, for that new read."""
    clock = FakeClock()
    service = AnomalyService(_config(), [CounterGridSource(gone_after=math.inf)], clock)
    service.warm_up()
    _ticks(clock, service, 3)
    before = _service_fields(service)
    service.snapshot()
    after = _service_fields(service)
    for part in _PARTS:
        _assert_same_fields(before[part], after[part], part)


def test_a_state_file_whose_lock_cannot_be_opened_is_refused_naming_it(tmp_path, capsys):
    """The lock beside the file (``.NAME.lock``) that cannot be opened (here a directory, as another user's
    file would be) is said as a file that cannot be written, not a traceback."""
    path = tmp_path / "s.npz"
    (tmp_path / ".s.npz.lock").mkdir()
    with pytest.raises(typer.Exit):
        anomaly_cmd._state_path(AnomalyConfig(), path, 0)
    said = " ".join(capsys.readouterr().err.split())
    assert f"error: --state-file '{path}': cannot write its lock {tmp_path / '.s.npz.lock'}:" in said, said


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


def test_a_snapshot_is_taken_up_where_prometheus_is_down_at_the_start_and_nothing_tells_its_fleet(
    tmp_path, thirty_ticks, caplog
):
    """Which fleet a snapshot is of is told by the series the history holds: with Prometheus down at the
    restart there are none, and the state is kept, as it was before that check (a Prometheus outage during
    an upgrade must not cost a week of learning)."""
    clock, path = _saved_file(tmp_path, thirty_ticks)
    clock.advance(EVERY)
    service = AnomalyService(_config(), [DownSource()], clock)
    with caplog.at_level(logging.INFO):
        assert service.warm_up(snapshot=load_snapshot(path, service.cfg)) == 0
    assert f"anomaly state restored from {path}" in caplog.text
    assert len(service.index) == 8 * len(QUERIES)
