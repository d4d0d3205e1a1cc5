"""One active server per store and journal: a second one is refused, or waits as a standby."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import ArgumentError

from alerting.advisory_lock import application_name, holder_name
from alerting.instance_lock import (
    FILE_POLL_SECONDS,
    FileLock,
    InstanceBusy,
    InstanceLocks,
    store_lock,
)
from alerting.journal import AcceptJournal


def _locks(tmp_path: Path, db: str = "gw.db", journal: str = "gw.db.journal") -> InstanceLocks:
    return InstanceLocks.for_server(str(tmp_path / db), tmp_path / journal)


def test_second_server_on_one_sqlite_store_is_refused_naming_the_store_and_the_holder(tmp_path: Path) -> None:
    first = _locks(tmp_path)
    first.try_acquire()
    second = _locks(tmp_path)
    with pytest.raises(InstanceBusy) as err:
        second.try_acquire()
    assert err.value.what == f"store {tmp_path / 'gw.db'}"
    assert f"pid {os.getpid()} on " in err.value.holder
    assert "in use by another gpuwarden serve" in str(err.value)
    first.release()
    second.try_acquire()  # free once the first is gone
    second.release()


def test_locks_are_all_or_nothing(tmp_path: Path) -> None:
    """A server refused over the journal directory does not keep the store locked."""
    other = FileLock(tmp_path / "shared.journal" / "lock", "journal", "pid 1 on elsewhere")
    (tmp_path / "shared.journal").mkdir()
    assert other.try_acquire()
    refused = _locks(tmp_path, "a.db", "shared.journal")
    with pytest.raises(InstanceBusy) as err:
        refused.try_acquire()
    assert err.value.what == f"journal directory {tmp_path / 'shared.journal'}"
    assert err.value.holder == "pid 1 on elsewhere"
    # The store of the refused server is free: another server can use it.
    store = store_lock(str(tmp_path / "a.db"), "me")
    assert store is not None and store.try_acquire()
    store.release()
    other.release()


def test_standby_waits_until_the_active_server_is_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    active = _locks(tmp_path)
    active.try_acquire()
    standby = _locks(tmp_path)
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            active.release()  # the active server stops after three polls

    with caplog.at_level(logging.INFO, logger="alerting.instance_lock"):
        standby.acquire(wait=True, sleep=sleep, poll_seconds=0.5)
    assert polls == [0.5, 0.5, 0.5]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("standby, waiting" in m for m in messages) == 1  # said once, not every poll
    assert messages[-1] == "instance lock: taken; this server is now active"
    with pytest.raises(InstanceBusy):
        _locks(tmp_path).try_acquire()
    standby.release()


class _Stopped(Exception):
    """The test's stop of a standby's wait."""


def test_a_standby_that_cannot_ask_the_store_warns_while_one_waiting_behind_a_holder_informs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong password or database name keeps every replica of a Deployment waiting as a standby: its one
    line was logged at info among the start-up lines, where a holder's name belongs."""
    with socket.socket() as probe:  # a port nothing listens on: the store is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = InstanceLocks.for_server(
        f"postgresql+psycopg://gw:secret@127.0.0.1:{port}/gw", tmp_path / "journal", connect_timeout=2
    )

    def stop(seconds: float) -> None:
        raise _Stopped

    with caplog.at_level(logging.INFO, logger="alerting.instance_lock"), pytest.raises(_Stopped):
        unreachable.acquire(wait=True, sleep=stop)
    waiting = [r for r in caplog.records if "standby, waiting" in r.getMessage()]
    assert [r.levelno for r in waiting] == [logging.WARNING], waiting
    caplog.clear()
    active = _locks(tmp_path)
    active.try_acquire()
    with caplog.at_level(logging.INFO, logger="alerting.instance_lock"), pytest.raises(_Stopped):
        _locks(tmp_path).acquire(wait=True, sleep=stop)
    assert [r.levelno for r in caplog.records if "standby, waiting" in r.getMessage()] == [logging.INFO]
    active.release()


def test_without_standby_acquire_raises_at_once(tmp_path: Path) -> None:
    active = _locks(tmp_path)
    active.try_acquire()

    def sleep(seconds: float) -> None:
        raise AssertionError("must not wait")

    with pytest.raises(InstanceBusy):
        _locks(tmp_path).acquire(wait=False, sleep=sleep)
    active.release()


def test_a_killed_server_leaves_no_stale_lock(tmp_path: Path) -> None:
    """The OS releases the lock with the process, even on SIGKILL: a restart never waits."""
    code = (
        "import sys, pathlib\n"
        "from alerting.instance_lock import InstanceLocks\n"
        "p = pathlib.Path(sys.argv[1])\n"
        "InstanceLocks.for_server(str(p / 'gw.db'), p / 'gw.db.journal').try_acquire()\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"locked\n"
            with pytest.raises(InstanceBusy) as err:
                _locks(tmp_path).try_acquire()
            assert f"pid {proc.pid} on " in err.value.holder
        finally:
            proc.kill()
            proc.wait(timeout=10)
    _locks(tmp_path).try_acquire()


def test_in_memory_sqlite_store_needs_no_store_lock(tmp_path: Path) -> None:
    assert store_lock(":memory:", "me") is None
    assert store_lock("sqlite://", "me") is None
    locks = InstanceLocks.for_server("sqlite://", tmp_path / "j")
    assert [lock.what for lock in locks.locks] == [f"journal directory {tmp_path / 'j'}"]


def test_a_database_gpuwarden_does_not_support_is_refused_before_any_lock_file_is_made(
    tmp_path: Path,
) -> None:
    with pytest.raises(ArgumentError):
        InstanceLocks.for_server("mysql://host/x", tmp_path / "journal")
    assert not (tmp_path / "journal").exists()


def test_only_a_postgresql_lock_can_be_lost_while_the_process_lives(tmp_path: Path) -> None:
    assert not _locks(tmp_path).can_be_lost
    assert InstanceLocks.for_server("postgresql+psycopg://u@127.0.0.1:1/x", tmp_path / "j").can_be_lost


def test_a_store_url_that_does_not_parse_is_refused_as_unusable_before_any_lock_file_is_made(
    tmp_path: Path,
) -> None:
    """SQLAlchemy's make_url raised ValueError for it, which serve did not expect: a traceback."""
    with pytest.raises(ArgumentError, match="not a valid URL"):
        InstanceLocks.for_server("postgresql+psycopg://u@[::1/x", tmp_path / "journal")
    assert not (tmp_path / "journal").exists()


def test_a_postgres_lock_names_its_holder_within_the_63_bytes_postgres_keeps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name was identity() cut at 63 bytes: behind a pod's long host name the start time was lost."""
    host = "gpuwarden-serve-production-us-east-1-7d9f8c6b5d-x2k4p"
    monkeypatch.setattr(socket, "gethostname", lambda: host)
    name = application_name()
    assert len(name.encode()) <= 63
    assert name.startswith(f"gpuwarden serve, pid {os.getpid()} on ..")
    assert name.endswith("7d9f8c6b5d-x2k4p")  # the part that tells one replica from another
    monkeypatch.setattr(socket, "gethostname", lambda: "node-1")
    assert application_name() == f"gpuwarden serve, pid {os.getpid()} on node-1"


def test_this_releases_lock_name_is_never_taken_for_an_earlier_releases_cut_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full 63 bytes without ".." is how an earlier release's name looks once PostgreSQL cut it inside the
    host: a host that fills the name exactly is cut with ".." too, so the holder is named as it is."""
    room = 63 - len(f"gpuwarden serve, pid {os.getpid()} on ")
    for size in (room - 1, room, room + 1):
        monkeypatch.setattr(socket, "gethostname", lambda size=size: "h" * size)
        name = application_name()
        assert len(name) <= 63 and holder_name(name) == name, name


def test_a_sqlite_store_reached_through_a_symlink_has_the_lock_of_the_file_it_points_to(
    tmp_path: Path,
) -> None:
    """``--db alias.db`` (a link to gw.db) got alias.db.lock: two active servers on one store."""
    (tmp_path / "alias.db").symlink_to(tmp_path / "gw.db")
    first = _locks(tmp_path, "gw.db", "j1")
    first.try_acquire()
    with pytest.raises(InstanceBusy) as err:
        _locks(tmp_path, "alias.db", "j2").try_acquire()  # its own journal: only the store is shared
    assert err.value.what == f"store {tmp_path / 'alias.db'}"
    first.release()
    via_link = _locks(tmp_path, "alias.db", "j2")
    via_link.try_acquire()
    with pytest.raises(InstanceBusy):
        _locks(tmp_path, "gw.db", "j1").try_acquire()
    via_link.release()


def test_a_sqlite_standby_polls_often_and_tells_who_holds_the_lock_at_each_attempt(tmp_path: Path) -> None:
    """A file lock is free the moment its holder dies: a standby that polled every 5 s idled up to 5 s of
    every handover. Each attempt's finding goes to ``on_wait`` (the standby's port says who is active)."""
    active = _locks(tmp_path)
    active.try_acquire()
    standby = _locks(tmp_path)
    polls: list[float] = []
    found: list[Exception] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            active.release()

    standby.acquire(wait=True, sleep=sleep, on_wait=found.append)
    assert polls == [FILE_POLL_SECONDS, FILE_POLL_SECONDS] and FILE_POLL_SECONDS <= 0.5
    assert [type(e) for e in found] == [InstanceBusy, InstanceBusy]
    assert f"pid {os.getpid()} on " in str(found[0])
    standby.release()


def test_the_journal_directory_the_lock_makes_is_the_owners_alone_whatever_the_umask(tmp_path: Path) -> None:
    """serve takes the journal's lock before it opens the journal: the lock made the directory with the umask
    (0755), and the journal's own 0700 came too late to apply."""
    previous = os.umask(0o022)
    try:
        locks = _locks(tmp_path)
        locks.try_acquire()
        AcceptJournal(tmp_path / "gw.db.journal", lambda journal_id: 0)
    finally:
        os.umask(previous)
    locks.release()
    assert oct(stat.S_IMODE((tmp_path / "gw.db.journal").stat().st_mode)) == oct(0o700)


def test_locks_discarded_remove_the_files_and_directories_they_made_and_nothing_else(tmp_path: Path) -> None:
    """A start refused once it held the locks (its port taken) left the store's lock file and a journal
    directory (the owner's alone) behind, which a later start as another user could not open."""
    fresh = InstanceLocks.for_server(str(tmp_path / "gw.db"), tmp_path / "journals" / "gw")
    fresh.try_acquire()
    fresh.discard()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "gw.db.lock").write_text("pid 1 on h, started earlier\n")  # a server that ran before
    (tmp_path / "journals").mkdir()
    again = InstanceLocks.for_server(str(tmp_path / "gw.db"), tmp_path / "journals" / "gw")
    again.try_acquire()
    again.discard()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["gw.db.lock", "journals"]


def test_a_lock_file_removed_between_its_open_and_its_lock_is_not_the_one_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start that gives up removes its lock file while it holds it; a start that had opened that file
    already must lock the file the path names now, or a third start would lock that one beside it."""
    path = tmp_path / "gw.db.lock"
    gave_up = FileLock(path, "store", "pid 1")
    assert gave_up.try_acquire()
    late = FileLock(path, "store", "pid 2")
    opened = late._open

    def opened_then_removed() -> int:
        fd = opened()
        gave_up.discard()  # after this open, before its flock
        return fd

    monkeypatch.setattr(late, "_open", opened_then_removed)
    assert late.try_acquire()
    assert not FileLock(path, "store", "pid 3").try_acquire()
    assert path.read_text() == "pid 2\n"
    late.release()
