"""The anomaly service's state snapshot: a restart from it scores as if there had been none; one that cannot
be used is said, left alone, and the warm-up replays the whole hour as without one."""

from __future__ import annotations

import json
import logging
import math
import os
import stat

import numpy as np
import pytest
from pydantic import ValidationError

from anomaly import snapshot as snapshot_module
from anomaly.scheduler import AnomalyScheduler
from anomaly.service import AnomalyService, _Firing
from anomaly.snapshot import load_snapshot, save_snapshot
from anomaly.sources import Frame, SourceHealth
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

    def __init__(self) -> None:
        self.reads: list[tuple[float, float]] = []
        self._health = SourceHealth(self.name)

    def read(self, start: float, end: float) -> list[Frame]:
        self.reads.append((start, end))
        ts = np.arange(math.floor(start / EVERY) * EVERY + EVERY, end + 1, EVERY)
        ts = ts[(ts > start) & (ts <= end)]
        self._health.succeeded(end, len(GPUS))
        if not ts.size:
            return []
        return [
            Frame(q, GPUS, ts, np.column_stack([_value(k, t) for t in ts.tolist()]))
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
def straight() -> Scores:
    """The uninterrupted run's scores of the hour after the restart's downtime."""
    clock = FakeClock()
    _, service = _service(clock)
    service.warm_up()
    _ticks(clock, service, BEFORE + DOWN)
    return _ticks(clock, service, AFTER)


def _restarted(tmp_path, *, saved: bool, **later: object) -> tuple[GridSource, AnomalyService, Scores]:
    """Three days of ticks, the state saved (``saved``), two ticks down, a new service warmed up (from the
    snapshot when ``saved``): its source, the new service, and its scores of the next hour."""
    clock = FakeClock()
    _, first = _service(clock)
    first.warm_up()
    _ticks(clock, first, BEFORE)
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, first.snapshot())
    clock.advance(DOWN * EVERY)
    source, second = _service(clock, **later)
    second.warm_up(snapshot=load_snapshot(path, second.cfg) if saved else None)
    return source, second, _ticks(clock, second, AFTER)


def test_a_restart_from_its_snapshot_scores_the_next_ticks_exactly_as_the_uninterrupted_run(
    tmp_path, straight
):
    source, service, scores = _restarted(tmp_path, saved=True)
    assert _same(scores, straight)
    ((start, end), *_) = source.reads
    assert end - start == DOWN * EVERY  # only the history after the snapshot was replayed
    adaptive = next(d for d in service.detectors if d.name == "adaptive")
    model = next(iter(adaptive._models.values()))
    assert np.isfinite(model.day[:8]).all()  # three days of hour-of-day profile, kept
    detectors = {d for tick in straight for d, _ in tick}
    assert {"adaptive", "level_shift", "multivariate", "fleet", "thermal"} <= detectors


def test_todays_restart_without_a_snapshot_forgets_the_seasonal_profile_and_scores_otherwise(
    tmp_path, straight
):
    source, service, scores = _restarted(tmp_path, saved=False)
    assert not _same(scores, straight)
    ((start, end), *_) = source.reads
    assert end - start == 3600.0  # the hour of history, all that is left of three days
    model = next(iter(next(d for d in service.detectors if d.name == "adaptive")._models.values()))
    assert np.isnan(model.day[:8]).sum() > 8 * 12  # half the day's hours never seen


def _saved(tmp_path, clock: FakeClock, ticks: int = 30) -> tuple[AnomalyService, object]:
    _, service = _service(clock)
    service.warm_up()
    _ticks(clock, service, ticks)
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    return service, path


def _refused(path, clock: FakeClock, caplog, why: str, **later: object) -> None:
    """Warming up from ``path`` falls back to the whole hour of history, says ``why`` naming the file, and
    leaves the file as it was."""
    before = path.read_bytes()
    source, service = _service(clock, **later)
    with caplog.at_level(logging.INFO):
        snapshot = load_snapshot(path, service.cfg)
        fed = service.warm_up(snapshot=snapshot)
    ((start, end),) = source.reads
    assert end - start == 3600.0 and fed == 12
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in line and why in line and "left as it is" in line for line in said), said
    assert path.read_bytes() == before
    assert len(service.index) == 8 * len(QUERIES)  # what the hour held, nothing from the file


def test_a_snapshot_older_than_the_hour_of_history_is_refused(tmp_path, caplog):
    clock = FakeClock()
    _, path = _saved(tmp_path, clock)
    clock.advance(3600.0 + EVERY)
    _refused(path, clock, caplog, "s old, older than the 3600 s of history")


def test_a_snapshot_saved_after_now_is_refused_as_a_clock_set_back(tmp_path, caplog):
    clock = FakeClock()
    _, path = _saved(tmp_path, clock)
    _refused(path, FakeClock(clock.time() - 2 * EVERY), caplog, "s after now (the clock was set back?)")


def test_no_snapshot_yet_is_no_warning_and_the_whole_hour_is_replayed(tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        assert load_snapshot(tmp_path / "none.npz", _config()) is None
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert f"no anomaly state snapshot at {tmp_path / 'none.npz'} yet" in caplog.text


def test_a_snapshot_saved_under_other_settings_is_refused_naming_what_changed(tmp_path, caplog):
    clock = FakeClock()
    _, path = _saved(tmp_path, clock)
    _refused(path, clock, caplog, "saved under other settings (anomaly.fleet_k changed)", fleet_k=5.0)


def test_where_the_service_reads_and_posts_is_no_setting_that_refuses_a_snapshot(tmp_path):
    clock = FakeClock()
    _, path = _saved(tmp_path, clock)
    cfg = _config(prometheus_url="http://prom-2:9090", port=9800, state_save_seconds=60.0)
    assert load_snapshot(path, cfg) is not None


def test_a_snapshot_of_another_format_version_is_refused(tmp_path, caplog, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(snapshot_module, "VERSION", 2)
    _, path = _saved(tmp_path, clock)
    monkeypatch.undo()
    _refused(path, clock, caplog, "is of format version 2; this gpuwarden reads 1")


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "empty", "not-npz"])
def test_a_damaged_snapshot_is_refused(tmp_path, caplog, damage):
    clock = FakeClock()
    _, path = _saved(tmp_path, clock)
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
        ({"format": "gpuwarden-anomaly-state", "version": 1}, "has no 'saved_at' in its header"),
    ],
    ids=["no-header", "list", "other-format", "incomplete"],
)
def test_an_npz_that_is_no_snapshot_of_this_service_is_refused(tmp_path, caplog, header, why):
    clock = FakeClock()
    _, path = _saved(tmp_path, clock)
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
