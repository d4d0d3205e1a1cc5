"""The journal's quarantine: what the applier could not apply, kept for its owner alone."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson

from alerting.journal import KIND_POSTABLE, JournalRecord
from alerting.quarantine import keep_record


def test_a_quarantined_record_is_readable_by_its_owner_alone_whatever_the_umask(tmp_path: Path) -> None:
    """The record's alerts came from a journal segment of mode 0600; kept with the umask (0644), every user
    of the machine read them."""
    body = orjson.dumps([{"labels": {"alertname": "GPULost", "node": "r01-n01"}}])
    record = JournalRecord(KIND_POSTABLE, 1.5, body, 100)
    (tmp_path / "quarantine").mkdir(mode=0o755)
    (tmp_path / "quarantine" / f"{0:020d}.tmp").write_bytes(b"left by a crash")  # 0644
    previous = os.umask(0o022)
    try:
        kept = keep_record(tmp_path, record, ValueError("value refused"), 0)
    finally:
        os.umask(previous)
    assert orjson.loads(kept.read_bytes())["body"] == body.decode()
    assert oct(stat.S_IMODE(kept.stat().st_mode)) == oct(0o600)


def test_the_quarantine_directory_is_the_owners_alone(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        keep_record(tmp_path, JournalRecord(KIND_POSTABLE, 1.5, b"[]", 10), ValueError("x"), 0)
    finally:
        os.umask(previous)
    assert oct(stat.S_IMODE((tmp_path / "quarantine").stat().st_mode)) == oct(0o700)
