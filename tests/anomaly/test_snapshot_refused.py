"""A state snapshot that cannot be used (too old, saved after now, under other settings, another fleet's, of
another format version, damaged, crafted, not fitting the detectors) is said, left alone, and the warm-up
replays the whole hour as without one; one that can is taken up (Prometheus down at the start)."""

from __future__ import annotations

import copy
import io
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from anomaly import snapshot as snapshot_module
from anomaly.scheduler import AnomalyScheduler
from anomaly.service import AnomalyService, _Firing
from anomaly.snapshot import Snapshot, load_snapshot, save_snapshot, shaping_settings
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertSource
from tests.anomaly import snapshot_grid as grid
from tests.anomaly.snapshot_grid import EVERY, FEW_TREES, OTHER_FLEET, QUERIES, GridSource, _ticks
from tests.anomaly.snapshot_grid import _few_trees as _config


def _service(clock: FakeClock) -> tuple[GridSource, AnomalyService]:
    """``grid._service`` with the smallest forest."""
    return grid._service(clock, **FEW_TREES)


def _saved(tmp_path, clock: FakeClock) -> tuple[AnomalyService, Path]:
    """``grid._saved`` (a quiet fleet's 30 ticks, saved) with the smallest forest."""
    service, path = grid._saved(tmp_path, clock, **FEW_TREES)
    assert isinstance(path, Path)
    return service, path


@pytest.fixture(scope="module")
def thirty_ticks(tmp_path_factory) -> tuple[float, bytes, Snapshot]:
    """What ``_saved`` writes (a quiet fleet's 30 ticks), when, and the service's snapshot then, made once for
    the tests that only read the file, damage it or save a changed snapshot: each takes its own copy
    (``_saved_file``, ``_saved_snapshot``)."""
    clock = FakeClock()
    service, path = _saved(tmp_path_factory.mktemp("thirty"), clock)
    return clock.time(), path.read_bytes(), service.snapshot()


def _saved_file(tmp_path, thirty_ticks: tuple[float, bytes, Snapshot]) -> tuple[FakeClock, Path]:
    """``_saved``'s file, copied into ``tmp_path``, and a clock at its save."""
    saved_at, data, _ = thirty_ticks
    path = tmp_path / "anomaly.state.npz"
    path.write_bytes(data)
    path.chmod(0o600)
    return FakeClock(saved_at), path


def _saved_snapshot(
    tmp_path, thirty_ticks: tuple[float, bytes, Snapshot]
) -> tuple[FakeClock, Path, Snapshot]:
    """``_saved_file``, and a copy of the snapshot saved in it (``service.snapshot()`` after ``_saved``) for
    the test to change and save over it."""
    clock, path = _saved_file(tmp_path, thirty_ticks)
    return clock, path, copy.deepcopy(thirty_ticks[2])


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


@pytest.mark.parametrize("saved_before", [False, True], ids=["saved-now", "saved-with-source-compared"])
def test_writing_or_leaving_out_source_prometheus_does_not_refuse_a_snapshot(
    tmp_path, thirty_ticks, caplog, saved_before
):
    """`anomaly run` reads Prometheus whether `source: prometheus` is written or left unset (`in-process`):
    adding the line threw away the state, weeks of learnt profiles. A snapshot saved while `source` was
    still compared (in its header's settings) is taken up too."""
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    if saved_before:
        snapshot.settings = {**snapshot.settings, "source": "in-process"}
        assert save_snapshot(path, snapshot)
    cfg = _config(source="prometheus")
    clock.advance(EVERY)
    service = AnomalyService(cfg, [GridSource()], clock)
    with caplog.at_level(logging.INFO):
        assert service.warm_up(snapshot=load_snapshot(path, cfg)) == 1
    assert f"anomaly state restored from {path}" in caplog.text


@pytest.mark.parametrize("down", [0.0, EVERY], ids=["within-a-step", "a-tick-later"])
def test_another_fleets_snapshot_is_refused_and_none_of_its_alerts_is_posted(
    tmp_path, thirty_ticks, caplog, down
):
    """Two configurations run one after the other in one directory (another ``prometheus_url``, the same
    default state file): the second took up the first's state, and its first tick posted the first fleet's
    alerts to its own serve. Told by the series the history holds, also where no step came since the save."""
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    alert = Alert(labels={"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}, source=AlertSource.ANOMALY)
    firing = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=40)
    snapshot.components["alerts"].meta["firing"]["k"] = firing.state()  # as saved with it in service.firing
    assert save_snapshot(path, snapshot)
    clock.advance(down)
    why = "is another fleet's: 0 of 48 series the history holds since 900 s before its save (at most 1,000"
    other = _refused(path, clock, caplog, why, GridSource(OTHER_FLEET), prometheus_url="http://prom-b:9090")
    posted: list[Alert] = []
    other.on_alert = posted.append
    clock.advance(EVERY)
    other.infer()
    assert other.firing == {} and posted == []


def test_a_snapshot_of_another_format_version_is_refused(tmp_path, thirty_ticks, caplog, monkeypatch):
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    version = snapshot_module.VERSION
    monkeypatch.setattr(snapshot_module, "VERSION", version + 1)
    assert save_snapshot(path, snapshot)
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
    tmp_path, thirty_ticks, caplog
):
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    fleet = snapshot.components["detector:fleet"].arrays
    fleet["smooth"] = fleet["smooth"][:10]  # fewer rows than its other arrays
    assert save_snapshot(path, snapshot)
    _refused(path, clock, caplog, "does not fit the detectors (ValueError: fleet ")


def test_a_snapshot_whose_numbers_overflow_the_detectors_is_refused_not_a_traceback(
    tmp_path, thirty_ticks, caplog
):
    """A number past a float's range in the JSON (a crafted or damaged file: ``1e400`` reads as infinity,
    a 400-digit integer as itself) stopped the start with an ``OverflowError``: refused as any misfit."""
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    snapshot.components["detector:presence"].meta["last_tick"] = 10**400
    assert save_snapshot(path, snapshot)
    _refused(path, clock, caplog, "does not fit the detectors (OverflowError: int too large to convert")


def test_a_snapshot_of_before_recalled_alerts_were_kept_apart_is_refused(tmp_path, thirty_ticks, caplog):
    """Its firing alerts may be recalled ones saved as firing (they would fire on past their recall's end):
    refused, the hour's warm-up recalls what the history left firing."""
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    alerts = snapshot.components["alerts"].meta
    del alerts["recalled"], alerts["recall_ends"]  # as saved before: recalled alerts among the firing
    assert save_snapshot(path, snapshot)
    _refused(path, clock, caplog, "does not fit the detectors (KeyError: 'recalled')")


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
        lambda s: s.components["detector:adaptive"].meta["models"][0].update(capacity=10**12, held=10**12),
    ],
    ids=["evidence-size", "adaptive-capacity"],
)
def test_a_size_claimed_in_the_header_is_not_allocated_past_the_rows_the_file_holds(
    tmp_path, thirty_ticks, caplog, claim
):
    """The evidence buffer's and an adaptive model's sizes are numbers in the JSON header: a billion claimed
    there made the restore allocate terabytes (a MemoryError out of the warm-up, the process gone)."""
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    claim(snapshot)
    assert save_snapshot(path, snapshot)
    _, other = _service(clock)
    with caplog.at_level(logging.INFO):
        other.warm_up(snapshot=load_snapshot(path, other.cfg))
    assert f"anomaly state restored from {path}" in caplog.text
    model = next(iter(next(d for d in other.detectors if d.name == "adaptive")._models.values()))
    assert (other.evidence.pos.size, model.capacity) == (1024, 1024)


def test_a_series_index_whose_free_ids_are_in_use_is_refused(tmp_path, thirty_ticks, caplog):
    """An id both free and held would be given to the next new series, which would then share the old one's
    state in every detector."""
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    snapshot.components["index"].meta["free"] = [0]
    assert save_snapshot(path, snapshot)
    _refused(path, clock, caplog, "does not fit the detectors (ValueError: the free slots listed (1) are not")


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


def test_the_queries_written_in_another_order_do_not_refuse_a_snapshot_and_a_changed_one_does(
    tmp_path, thirty_ticks, caplog
):
    """Each query is found by its name: sorting `anomaly.queries` in the file, or moving one beside its
    neighbours, changes nothing learnt, and threw the state (weeks of learnt profiles) away as
    "anomaly.queries changed". A query whose expr changed still refuses it."""
    queries = [{"name": name, "expr": name} for name in QUERIES]
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    snapshot.settings = shaping_settings(_config(queries=queries))
    assert save_snapshot(path, snapshot)
    clock.advance(EVERY)
    cfg = _config(queries=queries[::-1])
    service = AnomalyService(cfg, [GridSource()], clock)
    with caplog.at_level(logging.INFO):
        assert service.warm_up(snapshot=load_snapshot(path, cfg)) == 1
    assert f"anomaly state restored from {path}" in caplog.text
    changed = [*queries[1:], {**queries[0], "expr": f"avg_over_time({queries[0]['name']}[1m])"}]
    _refused(path, clock, caplog, "saved under other settings (anomaly.queries changed)", queries=changed)


def test_a_refused_snapshot_is_said_to_be_replaced_at_stop_when_that_comes_before_the_first_save(
    tmp_path, thirty_ticks, caplog
):
    """The warning promised the file anomaly.state_save_seconds from now, and the save at stop replaced it
    sooner: an operator who rolled back, saw a snapshot of a newer format refused and stopped the process at
    once, to copy it, found it replaced."""
    clock, path = _saved_file(tmp_path, thirty_ticks)
    before = path.read_bytes()
    service = _refused(
        path, clock, caplog, "saved under other settings (anomaly.fleet_k changed)", fleet_k=5.0
    )
    AnomalyScheduler(service, state_file=path).shutdown()  # stopped before its first save was due
    assert path.read_bytes() != before
    said = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert len(said) == 1 and "anomaly.state_save_seconds from now or when this process stops" in said[0]


@pytest.mark.parametrize(
    ("data", "begins"),
    [
        (bytes(300_000), "b'\\x00\\x00\\x00\\x00\\x00\\x00'"),
        (b'{"version": 21}', "b'{\"vers'"),
        (b"timestamp,value\n1,2\n", "b'timest'"),
    ],
    ids=["zeros-after-a-power-cut", "json", "csv"],
)
def test_a_file_that_is_no_npz_is_refused_saying_so_not_as_pickled_data(
    tmp_path, thirty_ticks, caplog, data, begins
):
    """numpy reads a file that begins as no .npz does as a pickle: refused (no pickle is ever loaded), it was
    said to "contain pickled (object) data", with how to load it unsafely (``allow_pickle``, ``pickle.load``),
    of a file of zeros that a write lost in a power cut leaves."""
    clock, path = _saved_file(tmp_path, thirty_ticks)
    path.write_bytes(data)
    _refused(
        path,
        clock,
        caplog,
        f"cannot be read (cut short or corrupt?): it is no .npz file (it begins with {begins})",
    )
    assert "pickle" not in caplog.text


# What each older version lacked (anomaly/snapshot_versions.md): its arrays or meta no longer fit, or mean
# something else. Each is refused as any other version, said, and the hour of history replayed.
_OLDER = [
    pytest.param(21, id="21-no-adaptive-first-samples"),  # a series in its warm-up would judge zeros
    pytest.param(22, id="22-no-seeded-seasonal-buckets"),
    pytest.param(23, id="23-no-state-before-a-raised-fault"),  # no restore_ticks to find its models by
    pytest.param(24, id="24-no-level-before-a-shift"),  # a series just past one would read as out of it
    pytest.param(25, id="25-no-lone-spikes-parameter"),
    pytest.param(26, id="26-no-source-series"),  # a restart in a total exporter outage judged the hour
    # A source's series as one count: a query failing through a restart lost its series where the others
    # read none, "its targets are gone" raised.
    pytest.param(27, id="27-no-query-series"),
    # Seasonal buckets held each hour's value, not its offset from a kept base (``seasonal_offsets``).
    pytest.param(28, id="28-no-seasonal-base"),
    # A model without seasonality held buckets, and its parked rows their bytes (read as the series' last
    # sample time and what follows).
    pytest.param(29, id="29-buckets-without-seasonality"),
    # A mostly-0 series past its first 200 reads had no judgement of its first samples kept (``flat``).
    pytest.param(30, id="30-no-flat-first-samples"),
]


@pytest.mark.parametrize("version", _OLDER)
def test_a_snapshot_of_an_older_version_is_refused_its_series_warming_up_from_the_history(
    tmp_path, thirty_ticks, caplog, monkeypatch, version
):
    clock, path, snapshot = _saved_snapshot(tmp_path, thirty_ticks)
    monkeypatch.setattr(snapshot_module, "VERSION", version)
    assert save_snapshot(path, snapshot)
    monkeypatch.undo()
    assert snapshot_module.VERSION == 31
    _refused(path, clock, caplog, f"is of format version {version}; this gpuwarden reads 31")
