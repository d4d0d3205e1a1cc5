"""Durable accept journal: ``POST /api/v2/alerts`` acknowledges once the validated batch is appended here.

The request path only authenticates, parses, validates and appends one record; an applier thread reads
the records in order and runs them through the incident engine in large batches. The offset it has
applied is committed in the same store transaction as the alerts it applied, so after a crash replay
starts exactly where the store stopped: every acknowledged alert is applied once.

Record: ``MAGIC (2) | length (u32) | crc32 (u32) | kind (u8) | accepted-at (f64 seconds) | body``, written
with ONE ``os.write`` on an ``O_APPEND`` descriptor, without fsync. That survives SIGKILL of the process
(the bytes are in the OS page cache), exactly like the store's SQLite WAL with ``synchronous=NORMAL``; a
power loss or kernel crash can lose the last records, as it can lose the last SQLite commits. A record
cut short by a crash during the write fails its length or checksum; it was never acknowledged and is
dropped at recovery. ``alerting.applier`` applies the records.

Offsets are logical (bytes since the journal was created); segment files are named by the offset of
their first byte and deleted once applied. The journal directory belongs to one server: for SQLite it
defaults to ``<db>.journal`` next to the database, for PostgreSQL it is ``alerting.journal_dir`` (or
``./gpuwarden-journal`` under the working directory, which serve warns about). Its random id keys the
applied offset in the store, so a lost directory starts a fresh journal instead of skipping records.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import Engine, Table, insert, select

from alerting.ingest import parse_postable_alerts, parse_webhook
from alerting.store_models import JournalOffsetRow
from gpuwarden.model import Alert

logger = logging.getLogger(__name__)

MAGIC = b"GW"
_HEADER = struct.Struct("<2sII")  # magic, payload length, crc32 of the payload
_META = struct.Struct("<Bd")  # kind, accepted-at (epoch seconds)
KIND_POSTABLE = 1  # Prometheus' postableAlerts (``POST /api/v2/alerts``)
KIND_WEBHOOK = 2  # Alertmanager's webhook v4
_SUFFIX = ".seg"
_OFFSETS = cast(Table, JournalOffsetRow.__table__)
_DELETED = (
    "it was deleted (its directory removed?) while serve runs; restart serve to start a new journal there"
)


class JournalCorrupt(Exception):
    """A record before the last one is unreadable: not a torn write but damage (the applier stops there, and
    serve does not start on such a journal)."""

    def __init__(self, detail: str, segment: Path | None = None) -> None:
        self.detail = detail  # what is wrong, without the file
        self.segment = segment  # the segment file at fault, when one is
        super().__init__(f"journal {segment}: {detail}" if segment else f"journal: {detail}")


class JournalUnwritable(Exception):
    """A batch could not be appended (a full disk, a directory gone or read-only): nothing of it was kept,
    so the POST is refused and its sender retries."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"the alert journal cannot be written: {path}: {reason}")


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One acknowledged batch as the applier reads it."""

    kind: int
    accepted_at: float
    body: bytes
    end: int  # logical offset just past this record

    def alerts(self, resolve_timeout: timedelta | None = None) -> list[Alert]:
        """Parse the body again (it was validated before it was appended, so this does not fail).

        ``resolve_timeout`` ends posted alerts that carry no ``endsAt``, counted from the accept time.
        """
        data = _loads(self.body)
        if self.kind == KIND_WEBHOOK:
            return parse_webhook(data, strict=False)  # accepted before: read as it was then
        at = datetime.fromtimestamp(self.accepted_at, UTC)
        return parse_postable_alerts(data, at, resolve_timeout, refuse_late=False)


def _loads(body: bytes) -> Any:
    return orjson.loads(body)


def encode_record(kind: int, accepted_at: float, body: bytes) -> bytes:
    """Header and payload of one record, as one buffer for one write."""
    payload = _META.pack(kind, accepted_at) + body
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _record_after(data: bytes, pos: int) -> int:
    """Where the first whole, checksummed record after ``pos`` starts; -1 when none does."""
    at = data.find(MAGIC, pos + 1)
    while at != -1 and at + _HEADER.size <= len(data):
        _, length, crc = _HEADER.unpack_from(data, at)
        start = at + _HEADER.size
        if (
            length >= _META.size
            and start + length <= len(data)
            and zlib.crc32(data[start : start + length]) == crc
        ):
            return at
        at = data.find(MAGIC, at + 1)
    return -1


def scan(data: bytes, base: int) -> tuple[list[JournalRecord], int]:
    """Whole, checksummed records at the start of ``data``; also how many bytes they take."""
    records: list[JournalRecord] = []
    pos = 0
    size = len(data)
    while pos + _HEADER.size <= size:
        magic, length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        if magic != MAGIC or length < _META.size or start + length > size:
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        kind, at = _META.unpack_from(payload)
        pos = start + length
        records.append(JournalRecord(kind, at, payload[_META.size :], base + pos))
    return records, pos


PRIVATE_DIR = 0o700
"""A new journal directory's mode: its segments hold acknowledged batches until applied, for serve alone."""


def _create(path: Path, flags: int = 0) -> int:
    """A write descriptor of the segment ``path``, made (if new) readable by its owner alone, whatever the
    umask."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)


class AcceptJournal:
    """Append-only, segmented, checksummed journal of acknowledged batches (thread-safe appends)."""

    def __init__(self, directory: Path, applied: Callable[[str], int], segment_bytes: int = 64 << 20) -> None:
        """Open (or create) ``directory``; ``applied(journal_id)`` gives the offset the store has applied.

        Recovery: fully applied segments are deleted; a torn last record is cut off (it was never
        acknowledged).
        """
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        id_file = directory / "journal-id"
        if not id_file.exists():
            tmp = directory / "journal-id.tmp"
            tmp.write_text(uuid.uuid4().hex)
            os.replace(tmp, id_file)
        self.journal_id = id_file.read_text().strip()
        self._lock = threading.Lock()
        self.torn_bytes = 0
        start = applied(self.journal_id)
        segments = self.segments()
        # Drop segments that end at or before the applied offset (the next one starts there).
        while len(segments) > 1 and segments[1] <= start:
            (directory / _name(segments.pop(0))).unlink()
        if not segments:
            segments = [start]
            os.close(_create(directory / _name(start)))
        for i, base in enumerate(segments):
            path = directory / _name(base)
            data = path.read_bytes()
            good = _recover(path, data, base, start, later_segments=len(segments) - 1 - i)
            if good < len(data):
                self.torn_bytes += len(data) - good
                logger.warning(
                    "journal: dropped %d bytes of a torn record in %s (never acknowledged)",
                    len(data) - good,
                    path.name,
                )
                with path.open("r+b") as f:
                    f.truncate(good)
                for later in segments[i + 1 :]:
                    (directory / _name(later)).unlink()
                segments = segments[: i + 1]
                break
        self._base = segments[-1]
        self._size = (directory / _name(self._base)).stat().st_size
        self._fd = _create(directory / _name(self._base), os.O_APPEND)
        self._end = self._base + self._size
        self.first = max(start, segments[0])
        self.records_appended = 0
        self.alerts_appended = 0
        self.last_append = 0.0
        self.problem: str | None = None  # why the last append failed; None once one succeeds
        self._rotate_failed = False  # said once, not at every append

    def segments(self) -> list[int]:
        """Base offsets of the segment files, ascending."""
        return _segments(self.directory)

    @property
    def end(self) -> int:
        """Offset just past the last acknowledged record."""
        return self._end

    def append(self, kind: int, body: bytes, alerts: int, accepted_at: float | None = None) -> int:
        """Append one validated batch; returns its end offset. After this returns it may be acknowledged.

        Raises ``JournalUnwritable`` when the batch cannot be written whole (nothing of it is kept)."""
        record = encode_record(kind, time.time() if accepted_at is None else accepted_at, body)
        with self._lock:
            if self._size >= self.segment_bytes:
                self._rotate()
            path = self.directory / _name(self._base)
            if os.fstat(self._fd).st_nlink == 0:  # a write would succeed, into a file no reader can open
                raise self._unwritable(path, _DELETED)
            try:
                written = os.write(self._fd, record)
            except OSError as exc:
                raise self._unwritable(path, exc.strerror or str(exc)) from exc
            if written != len(record):  # disk full: undo the partial record, refuse the batch
                os.ftruncate(self._fd, self._size)
                why = f"{os.strerror(errno.ENOSPC)} (wrote {written} of {len(record)} bytes)"
                raise self._unwritable(path, why)
            if self.problem is not None:
                logger.info("journal: %s takes alerts again", self.directory)
                self.problem = None
            self._size += written
            self._end += written
            self.last_append = time.monotonic()
            self.records_appended += 1
            self.alerts_appended += alerts
            return self._end

    def _unwritable(self, path: Path, reason: str) -> JournalUnwritable:
        """The error for a failed append, logged once until an append succeeds again (not once per POST)."""
        error = JournalUnwritable(path, reason)
        if self.problem is None:
            logger.error("%s; alerts are refused (503) until it can be written again", error)
        self.problem = str(error)
        return error

    def _rotate(self) -> None:
        """Start the next segment. Its file is opened before the current one is closed: one that cannot be
        made (no inode left, a read-only directory) leaves the journal appending to the current segment,
        not to a closed descriptor whose number the process may since have given to a socket or the store's
        file (a client was sent journal bytes as its answer, and the records were lost)."""
        path = self.directory / _name(self._end)
        try:
            fd = _create(path, os.O_APPEND | os.O_EXCL)
        except OSError as exc:
            if not self._rotate_failed:
                logger.warning(
                    "journal: cannot start the segment %s: %s; appending to %s meanwhile",
                    path,
                    exc.strerror or exc,
                    _name(self._base),
                )
            self._rotate_failed = True
            return
        os.close(self._fd)
        self._fd, self._base, self._size = fd, self._end, 0
        self._rotate_failed = False

    def read(self, start: int, max_bytes: int = 4 << 20) -> list[JournalRecord]:
        """Records from ``start`` (a record boundary) up to about ``max_bytes``, never past ``end``."""
        end = self._end
        if start >= end:
            return []
        segments = self.segments()
        base = max((b for b in segments if b <= start), default=None)
        if base is None:
            raise JournalCorrupt(f"journal: no segment holds offset {start}")
        later = [b for b in segments if b > base]
        stop = min(end, later[0]) if later else end
        want = min(stop - start, max(max_bytes, _HEADER.size))
        with (self.directory / _name(base)).open("rb") as f:
            f.seek(start - base)
            data = f.read(want)
            if len(data) >= _HEADER.size:
                _, length, _ = _HEADER.unpack_from(data)
                whole = _HEADER.size + length
                if whole > len(data) and start + whole <= stop:  # one record larger than max_bytes
                    data += f.read(whole - len(data))
        records, _ = scan(data, start)
        if not records:
            raise JournalCorrupt(f"journal: unreadable record at offset {start}")
        return records

    def discard_applied(self, applied: int, start_over_bytes: int = 1 << 20) -> None:
        """Delete segments entirely before ``applied`` (never the one being written).

        When everything is applied and the current segment holds at least ``start_over_bytes``, a new
        segment starts first, so an idle journal does not keep old records around.
        """
        with self._lock:
            if applied == self._end and self._size >= start_over_bytes:
                self._rotate()
            current = self._base
        segments = self.segments()
        for base, nxt in itertools.pairwise(segments):
            if nxt <= applied and base != current:
                (self.directory / _name(base)).unlink(missing_ok=True)

    def close(self) -> None:
        """Close the append descriptor."""
        with self._lock:
            os.close(self._fd)


def _recover(path: Path, data: bytes, base: int, applied: int, later_segments: int) -> int:
    """How many bytes of the segment ``data`` (starting at offset ``base``) to keep.

    Bytes the store has applied (before ``applied``) are never read again: damage there is logged, and the
    unapplied rest is read from the applied offset, a record boundary. Past it only the end of the last
    segment can be a torn write; bytes that do not read followed by records that do (in this segment or a
    later one) are damage, and those records were acknowledged: ``JournalCorrupt``, never cut off.
    """
    skip = min(max(applied - base, 0), len(data))
    if skip:
        _, done = scan(data[:skip], base)
        if done < skip:
            after = _record_after(data, done)
            end = skip if after == -1 else min(skip, after)
            logger.warning(
                "journal: %s at offsets %d-%d of %s do not read as records; the store had applied them (its"
                " offset is %d), so nothing is lost",
                _count(end - done, "byte"),
                base + done,
                base + end - 1,
                path,
                applied,
            )
    _, good = scan(data[skip:], base + skip)
    good += skip
    if good == len(data):
        return good
    after = _record_after(data, good)
    if after == -1 and not later_segments:
        return good  # a torn last write: never acknowledged
    end = after if after != -1 else len(data)
    if after != -1:
        follow = f"readable records follow them from offset {base + after}"
    else:
        verb = "follows" if later_segments == 1 else "follow"
        follow = f"{_count(later_segments, 'later segment')} of records {verb}"
    raise JournalCorrupt(
        f"{_count(end - good, 'byte')} at offsets {base + good}-{base + end - 1} do not read as records and "
        f"{follow}; the store has applied the journal up to offset {applied} only, so acknowledged alerts "
        f"would be lost and serve does not start. Restore the file, or move {path.parent} aside to start "
        "without its unapplied records",
        path,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _name(base: int) -> str:
    return f"{base:020d}{_SUFFIX}"


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.name.removesuffix(_SUFFIX)) for p in directory.glob(f"*{_SUFFIX}"))


def unapplied_bytes(sql: Engine, directory: Path) -> int:
    """Bytes of the journal in ``directory`` that the store ``sql`` has not applied, read without opening it
    (nothing made, recovered or cut); 0 where there is no journal, or one this store never applied from (a
    journal is known to the store it opened on: ``applied_offset``). One there that cannot be read (its
    files another user's, its id not text) raises ``OSError`` or ``ValueError``: it may hold some."""
    try:
        journal_id = (directory / "journal-id").read_text().strip()
    except FileNotFoundError:  # no journal there
        return 0
    segments = _segments(directory)
    end = segments[-1] + (directory / _name(segments[-1])).stat().st_size if segments else 0
    with sql.connect() as conn:
        query = select(_OFFSETS.c.applied_offset).where(_OFFSETS.c.journal_id == journal_id)
        applied = conn.execute(query).scalar()
    return 0 if applied is None else max(0, end - int(applied))


def applied_offset(sql: Engine, journal_id: str) -> int:
    """The offset the store has applied for this journal (creating its row at 0)."""
    with sql.begin() as conn:
        found = conn.execute(
            select(_OFFSETS.c.applied_offset).where(_OFFSETS.c.journal_id == journal_id)
        ).scalar()
        if found is None:
            conn.execute(insert(_OFFSETS).values(journal_id=journal_id, applied_offset=0))
            return 0
        return int(found)
