"""How the anomaly service's state snapshot is saved: whole and private, a copy of one instant that ticks
during the copy or the write leave as it was, on the scheduler's interval; the state file's settings and its
lock (one process per file)."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import stat

import numpy as np
import pytest
import typer
from pydantic import ValidationError

from anomaly import scheduler as scheduler_module
from anomaly import snapshot as snapshot_module
from anomaly.detectors import SavedDetector
from anomaly.scheduler import _COPIES_WHILE_TICKING, AnomalyScheduler
from anomaly.service import AnomalyService
from anomaly.snapshot import Snapshot, load_snapshot, save_snapshot
from gpuwarden.cli import anomaly_cmd, startup
from gpuwarden.cli.consoles import CliConsole
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.snapshot_fields import _PARTS, _assert_same_fields, _service_fields
from tests.anomaly.snapshot_grid import EVERY, CounterGridSource, _config, _saved, _service, _ticks


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


def test_two_processes_cannot_keep_their_state_in_one_file(tmp_path, monkeypatch, capsys):
    """Each would take up the other's state at its restart (another fleet's, where only the Prometheus
    differed): the second is refused, naming the file, or warned and keeps none where the file is the
    default; once the first lets go it can be taken. A save killed midway left its temporary file: removed."""
    path = tmp_path / "s.npz"
    leftover = tmp_path / ".s.npz.x1y2z3.tmp"
    leftover.write_bytes(b"half a snapshot")
    stderr = io.StringIO()
    monkeypatch.setattr(startup, "err_console", CliConsole(file=stderr, width=400))
    kept = anomaly_cmd._state_path(AnomalyConfig(state_file=str(path)), None, 0)
    assert kept is not None and not leftover.exists()
    with pytest.raises(typer.Exit) as refused:
        anomaly_cmd._state_path(AnomalyConfig(), path, 0)
    assert refused.value.exit_code == 75  # EX_TEMPFAIL: it can start once the other lets go
    said = " ".join(stderr.getvalue().split())
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
