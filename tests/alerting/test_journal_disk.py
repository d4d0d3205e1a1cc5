"""The accept journal on a disk that fills up: a batch is kept whole or refused, and nothing else is hurt."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine

from alerting import journal as journal_module
from alerting.journal import KIND_POSTABLE, AcceptJournal, JournalUnwritable, applied_offset


def _body(node: str) -> bytes:
    return orjson.dumps([{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": node}}])


def _open(sql: Engine, directory: Path, **kwargs: int) -> AcceptJournal:
    return AcceptJournal(directory, lambda jid: applied_offset(sql, jid), **kwargs)


def _full_disk_for(journal: AcceptJournal, monkeypatch: pytest.MonkeyPatch, written: int | None) -> None:
    """Writes to the journal's segment fail as on a full disk: ``written`` bytes go through, or none."""
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if fd != journal._fd:
            return real_write(fd, data)
        if written is None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data[:written])

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("written", [None, 7], ids=["nothing-written", "short-write"])
def test_a_full_disk_refuses_the_batch_naming_the_segment_and_keeps_nothing_of_it(
    sql: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    written: int | None,
) -> None:
    journal = _open(sql, tmp_path / "j")
    first = journal.append(KIND_POSTABLE, _body("r01-n01"), 1)
    with monkeypatch.context() as patch:
        _full_disk_for(journal, patch, written)
        for node in ("r01-n02", "r01-n03"):
            with pytest.raises(JournalUnwritable, match="No space left on device") as refused:
                journal.append(KIND_POSTABLE, _body(node), 1)
    assert refused.value.path == tmp_path / "j" / "00000000000000000000.seg"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(refused.value) in errors[0]  # once, not once per refused POST
    assert journal.end == first == (tmp_path / "j" / "00000000000000000000.seg").stat().st_size
    third = journal.append(KIND_POSTABLE, _body("r01-n04"), 1)  # space again: taken, no restart
    assert [r.end for r in journal.read(0)] == [first, third]
    assert journal.problem is None and journal.alerts_appended == 2


def test_a_segment_that_cannot_be_made_leaves_appends_in_the_current_one_and_other_files_untouched(
    sql: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _open(sql, tmp_path / "j", segment_bytes=100)
    real_create = journal_module._create

    def no_inode_left(path: Path, flags: int = 0) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    ends = [journal.append(KIND_POSTABLE, _body("r01-n01"), 1)]
    with monkeypatch.context() as patch:
        patch.setattr(journal_module, "_create", no_inode_left)
        ends.append(journal.append(KIND_POSTABLE, _body("r01-n02"), 1))
        journal.discard_applied(ends[-1], start_over_bytes=1)
        # The lowest free descriptor: the one a closed segment's would have been handed on as.
        other = tmp_path / "store.db"
        fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            ends.append(journal.append(KIND_POSTABLE, _body("r01-n03"), 1))
        finally:
            os.close(fd)
    assert other.stat().st_size == 0
    assert journal.segments() == [0]
    assert [r.end for r in journal.read(0)] == ends
    patched_back = journal.append(KIND_POSTABLE, _body("r01-n04"), 1)  # inodes again: the next segment
    assert journal_module._create is real_create and journal.segments() == [0, ends[-1]]
    assert journal.read(ends[-1])[0].end == patched_back


def test_a_journal_whose_directory_was_deleted_refuses_batches_instead_of_acknowledging_them_unreadable(
    sql: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = _open(sql, tmp_path / "j")
    end = journal.append(KIND_POSTABLE, _body("r01-n01"), 1)
    shutil.rmtree(tmp_path / "j")  # rm -rf of the store's directory while serve runs
    for node in ("r01-n02", "r01-n03"):
        with pytest.raises(JournalUnwritable, match="was deleted") as refused:
            journal.append(KIND_POSTABLE, _body(node), 1)
    assert refused.value.path == tmp_path / "j" / "00000000000000000000.seg"
    assert journal.end == end and journal.alerts_appended == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "restart serve" in errors[0]
