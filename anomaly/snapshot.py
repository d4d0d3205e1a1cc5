"""The anomaly service's state on disk: what its detectors learnt, kept across a restart.

Without it a restart forgot every adaptive band's long baseline and its hour-of-week profile (a week to
learn again), the thermal lines and the fleet and level-shift state: the warm-up replays one hour. A snapshot
is one ``.npz`` file (``np.savez``, read with ``allow_pickle=False``: nothing in it runs code): the named
arrays of each component (``State``) and, as the array ``header``, a JSON header with the format and its
version, when it was saved, the time the service had read up to (and each source and each query: a query
that failed at the ticks before the save is read again from its own), when each source and query was last
read well and each source's series and last read with series (a restart ages its staleness from there), a
fingerprint of the settings that shape the state, and each component's small JSON state (the series index's
keys among them).

It is written beside its final name, fsynced, renamed over it and the directory fsynced, mode 0600: a crash
leaves the previous snapshot or the new one, never half of one. A snapshot that cannot be used (corrupt,
cut short, of another version or other settings, too old, another fleet's) is said in a warning naming the
file and why, and left as it is until the first save replaces it; the service then warms up from the
history alone, as without one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertSource, AlertStatus, EvidencePoint, RecommendedAction
from gpuwarden.symlinks import resolved_path

logger = logging.getLogger(__name__)

FORMAT = "gpuwarden-anomaly-state"
# The format's version, bumped whenever what a snapshot holds changes (a component's arrays, their dtypes and
# dimensions, its meta's keys, the header's keys) or what any of it means: a snapshot of another version is
# refused. ``SCHEMA`` is the digest of what this version holds, pinned by
# tests/anomaly/test_snapshot_schema.py, which fails when they part and says what to do. What each earlier
# version lacked, and so why it is refused: anomaly/snapshot_versions.md.
VERSION = 31
SCHEMA = "45804a780a33d1a9"
_HEADER = "header"
_MODE = 0o600
# What an .npz (a zip archive, or an empty one) or an .npy begins with. numpy reads any other file as a
# pickle, and refused it (allow_pickle=False) saying that it "contains pickled (object) data" and how to load
# it unsafely: said of a file of zeros (a write lost in a power cut) or a JSON or CSV written in its place.
_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")
# Settings that do not shape what the detectors learn: where the service reads, listens and posts, and the
# snapshot's own. Any other change of the anomaly section (a query, a detector's parameter) refuses it. Which
# fleet it is of is told by its series, not by ``prometheus_url`` (``AnomalyService._other_fleet``).
_NOT_SHAPING = frozenset(
    {
        # `anomaly run` reads Prometheus whether `source: prometheus` is written or left unset (read
        # `in-process`): adding or removing the line threw away weeks of learnt profiles.
        "source",
        "prometheus_url",
        "query_timeout_seconds",
        "alert_url",
        "listen_address",
        "port",
        "state_file",
        "state_save_seconds",
    }
)

Arrays = dict[str, npt.NDArray[Any]]


@dataclass(slots=True)
class State:
    """One component's state: small JSON-able values (``meta``) and named arrays, copies of its own."""

    meta: dict[str, Any] = field(default_factory=dict)
    arrays: Arrays = field(default_factory=dict)


@dataclass(slots=True)
class Snapshot:
    """The service's state at one time: each component's ``State`` by name, and what the header says."""

    saved_at: float
    read_until: float  # the end of the last tick's read: the warm-up replays the history after it
    last_read: dict[str, float]  # per source, the end of its last good read
    query_read: dict[
        str, float
    ]  # per query, the end of its last good read: a failed one is read again from it
    settings: dict[str, Any]
    components: dict[str, State] = field(default_factory=dict)
    # Per source and per query, when its last good read ended (``clock.time()``, wall time; none where no
    # process read it well), and when the first process of the chain of snapshots started (``started``): a
    # restart while one fails ages its ``GpuwardenSourceStale`` from there (``ServiceCore._succeeded``), not
    # from its own start, and reports that last good read (``ServiceCore.health``).
    source_success: dict[str, float] = field(default_factory=dict)
    query_success: dict[str, float] = field(default_factory=dict)
    # Per source, its series and last read with series (``SourceHealth``; ``ServiceCore._seen`` reads them),
    # and per query the series its last good read returned (``QueryHealth.series``): a source's count is its
    # queries', each standing while that query fails or is not asked (``ServiceCore._query_counts``).
    source_series: dict[str, int] = field(default_factory=dict)
    series_at: dict[str, float] = field(default_factory=dict)
    query_series: dict[str, int] = field(default_factory=dict)
    started: float | None = None  # None: not known (a snapshot built without it); the new process' start
    origin: str = ""  # the file it was read from, for the warnings that name it

    @property
    def fingerprint(self) -> str:
        """The hash of the settings that shape the state."""
        return settings_fingerprint(self.settings)


class SnapshotRefused(Exception):
    """A snapshot that cannot be used; the message says why. ``snapshot``: the one read whole and refused for
    its settings alone, whose alerts not yet delivered no setting shapes (``load_state``); else None."""

    def __init__(self, why: str, snapshot: Snapshot | None = None) -> None:
        super().__init__(why)
        self.snapshot = snapshot


def shaping_settings(cfg: AnomalyConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that shape what the detectors learn, as JSON values."""
    dumped: dict[str, Any] = cfg.model_dump(mode="json", exclude=set(_NOT_SHAPING))
    return dumped


def settings_fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of ``settings`` (``shaping_settings``)."""
    raw = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def load_snapshot(path: Path, cfg: AnomalyConfig) -> Snapshot | None:
    """The snapshot at ``path`` when there is one that can be used with ``cfg``; otherwise None, said in a
    warning naming the file and why (``refused``), or, when there is no file yet, in an info line."""
    return load_state(path, cfg)[0]


def load_state(path: Path, cfg: AnomalyConfig) -> tuple[Snapshot | None, Snapshot | None]:
    """``load_snapshot``, and the snapshot at ``path`` refused for its settings alone (None where it was
    taken, or could not be read whole): the alerts its process had not delivered are shaped by no setting,
    and a restart to change one (a threshold, a query) lost a fault that fired and cleared while serve was
    down (``AlertForwarder.take_up``)."""
    if not path.exists():
        logger.info("no anomaly state snapshot at %s yet: warming up from the history alone", path)
        return None, None
    try:
        return read_snapshot(path, shaping_settings(cfg)), None
    except SnapshotRefused as exc:
        refused(str(path), str(exc))
        return None, exc.snapshot


def refused(origin: str, why: str) -> None:
    """Say that the snapshot read from ``origin`` is not used, and ``why`` (its verb first), and when it is
    replaced: the save at stop comes first where the process stops within ``state_save_seconds`` (an
    operator who rolled back, saw a newer format refused and stopped it at once found the file replaced)."""
    logger.warning(
        "anomaly state snapshot %s not used: it %s; warming up from the history alone (the file is left as"
        " it is until the first save replaces it, anomaly.state_save_seconds from now or when this process"
        " stops, whichever comes first: copy it now to keep it)",
        origin,
        why,
        extra={"state_file": origin},
    )


class StateFileInUse(Exception):
    """The state file cannot be held (``claim_state_file``): another process holds it, or its lock cannot be
    opened; the message says which."""


def claim_state_file(path: Path) -> BinaryIO:
    """Hold ``path`` for this process until the returned file is closed (an advisory lock on ``.NAME.lock``
    beside it), and remove what saves killed midway left beside it (their temporary files, each as large as a
    snapshot). Two processes keeping their state in one file overwrote each other's and each took up the
    other's at its restart (another fleet's, where only the Prometheus differed): ``StateFileInUse``;
    ``StateFileInUse`` too, naming it, for a lock that cannot be opened."""
    try:
        target = resolved_path(path)
    except OSError as exc:
        raise StateFileInUse(exc.strerror or str(exc)) from exc
    name = target.parent / f".{target.name}.lock"
    try:
        lock = name.open("ab")
    except OSError as exc:
        raise StateFileInUse(f"cannot write its lock {name}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        lock.close()
        raise StateFileInUse(
            f"another process keeps its state in it ({name} is locked); give each `anomaly run` a file of"
            " its own"
        ) from exc
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        leftover.unlink(missing_ok=True)
    return lock


def save_snapshot(path: Path, snapshot: Snapshot) -> bool:
    """Write ``snapshot`` (``write_snapshot``) and say so; a failure (a full disk, a directory gone) is said
    in a warning and the previous snapshot left as it was. Whether it was written."""
    t0 = time.perf_counter()
    try:
        size = write_snapshot(path, snapshot)
    except (OSError, ValueError) as exc:
        logger.warning(
            "anomaly state not saved to %s: %s; the previous snapshot, if any, is left as it was",
            path,
            exc,
            extra={"state_file": str(path)},
        )
        return False
    logger.info(
        "anomaly state saved to %s (%.1f MB in %.2f s)",
        path,
        size / 1e6,
        time.perf_counter() - t0,
        extra={"state_file": str(path)},
    )
    return True


def write_snapshot(path: Path, snapshot: Snapshot) -> int:
    """Write ``snapshot`` to ``path`` atomically (beside it, fsync, rename, fsync the directory), mode 0600;
    returns the bytes written."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": snapshot.saved_at,
        "read_until": snapshot.read_until,
        "last_read": snapshot.last_read,
        "query_read": snapshot.query_read,
        "source_success": snapshot.source_success,
        "query_success": snapshot.query_success,
        "source_series": snapshot.source_series,
        "series_at": snapshot.series_at,
        "query_series": snapshot.query_series,
        "started": snapshot.started,
        "fingerprint": snapshot.fingerprint,
        "settings": snapshot.settings,
        "components": {name: state.meta for name, state in snapshot.components.items()},
    }
    arrays = {
        f"{name}.{key}": array
        for name, state in snapshot.components.items()
        for key, array in state.arrays.items()
    }
    arrays[_HEADER] = np.frombuffer(json.dumps(header, separators=(",", ":")).encode(), np.uint8)
    target = resolved_path(path)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        os.fchmod(handle, _MODE)
        with os.fdopen(handle, "wb") as out:
            np.savez(out, allow_pickle=False, **arrays)
            out.flush()
            os.fsync(out.fileno())
            size = out.tell()
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(target.parent)
    return size


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_snapshot(path: Path, settings: Mapping[str, Any]) -> Snapshot:
    """The snapshot at ``path``, or ``SnapshotRefused`` saying why it cannot be used: unreadable, cut short
    or corrupt, not a snapshot, of another format version, or written under other ``settings``."""
    try:
        with path.open("rb") as file:
            _check_magic(file)
            npz = np.load(file, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise SnapshotRefused("is not an anomaly state snapshot (a single array, not an .npz)")
            with npz:
                _check_members(npz.zip)
                header = _header(npz)
                arrays = {key: npz[key] for key in npz.files if key != _HEADER}
    except SnapshotRefused:
        raise
    # MemoryError and RecursionError (JSON nested past Python's limit): a file crafted to take the process
    # down is refused as any other that cannot be read.
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, MemoryError, RecursionError) as exc:
        raise SnapshotRefused(f"cannot be read (cut short or corrupt?): {type(exc).__name__}: {exc}") from exc
    try:
        return _snapshot(path, header, arrays, settings)
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        raise SnapshotRefused(f"has a malformed header ({type(exc).__name__}: {exc})") from exc


def _snapshot(path: Path, header: dict[str, Any], arrays: Arrays, settings: Mapping[str, Any]) -> Snapshot:
    """The snapshot ``header`` and ``arrays`` make, checked against ``settings``."""
    snapshot = _made(path, header, arrays)
    if header.get("fingerprint") != settings_fingerprint(settings):
        saved = header["settings"]
        # A setting found not to shape what is learnt after a snapshot was saved with it: not compared.
        keys = {*settings, *saved} - _NOT_SHAPING
        changed = sorted(k for k in keys if _compared(k, settings.get(k)) != _compared(k, saved.get(k)))
        if changed:
            raise SnapshotRefused(
                f"was saved under other settings (anomaly.{', anomaly.'.join(changed)} changed)", snapshot
            )
    return snapshot


def _made(path: Path, header: dict[str, Any], arrays: Arrays) -> Snapshot:
    """The snapshot ``header`` and ``arrays`` make, read from ``path``."""
    components = {name: State(dict(meta)) for name, meta in header["components"].items()}
    for key, array in arrays.items():
        name, _, part = key.rpartition(".")  # a detector's name may hold a dot, an array's name none
        if name not in components:
            raise SnapshotRefused(f"holds arrays of {name!r}, a component its header does not list")
        components[name].arrays[part] = array
    return Snapshot(
        saved_at=float(header["saved_at"]),
        read_until=float(header["read_until"]),
        last_read={str(k): float(v) for k, v in header["last_read"].items()},
        query_read={str(k): float(v) for k, v in header["query_read"].items()},
        source_success={str(k): float(v) for k, v in header["source_success"].items()},
        query_success={str(k): float(v) for k, v in header["query_success"].items()},
        source_series={str(k): int(v) for k, v in header["source_series"].items()},
        series_at={str(k): float(v) for k, v in header["series_at"].items()},
        query_series={str(k): int(v) for k, v in header["query_series"].items()},
        started=None if header["started"] is None else float(header["started"]),
        settings=dict(header["settings"]),
        components=components,
        origin=str(path),
    )


def _compared(key: str, value: Any) -> Any:
    """A shaping setting as it is compared with a snapshot's: ``queries`` in any order. Each query is found
    by its name, unique in the section, so their order in the file shapes nothing learnt; sorting the list, or
    moving a query beside its neighbours, threw weeks of learnt profiles away ("anomaly.queries changed"). The
    other lists keep their order (``multivariate_queries`` is the order of its model's columns)."""
    if key == "queries" and isinstance(value, list):
        return sorted(value, key=lambda query: json.dumps(query, sort_keys=True))
    return value


def _check_magic(file: BinaryIO) -> None:
    """Refuse a file that begins as no .npz or .npy does (``_MAGIC``), saying what it begins with; an empty
    one is left to numpy (``No data left in file``)."""
    head = file.read(len(_MAGIC[-1]))
    file.seek(0)
    if head and not head.startswith(_MAGIC):
        raise SnapshotRefused(
            f"cannot be read (cut short or corrupt?): it is no .npz file (it begins with {head!r})"
        )


def _check_members(archive: zipfile.ZipFile | None) -> None:
    """Refuse, before any array is allocated, a member that would take more memory than the file holds: a
    compressed one (``np.savez`` stores them; a few KB deflated can be gigabytes of zeros), or one whose array
    header claims more data than the member has (numpy allocates the claimed shape first)."""
    assert archive is not None  # an open ``NpzFile``'s
    for info in archive.infolist():
        if info.compress_type != zipfile.ZIP_STORED:
            raise SnapshotRefused(f"holds a compressed array {info.filename!r} (np.savez writes none)")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise SnapshotRefused(f"holds an array {info.filename!r} of .npy version {version}")
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(member)
        claimed = math.prod(shape) * dtype.itemsize
        if dtype.hasobject or claimed > info.file_size:
            raise SnapshotRefused(
                f"holds an array {info.filename!r} of {dtype} {shape} ({claimed:,} bytes) in a member of"
                f" {info.file_size:,} bytes"
            )


def _header(npz: Mapping[str, npt.NDArray[Any]]) -> dict[str, Any]:
    """The JSON header, checked for its format and version."""
    if _HEADER not in npz:
        raise SnapshotRefused("is not an anomaly state snapshot (no header)")
    header = json.loads(npz[_HEADER].tobytes().decode())
    if not isinstance(header, dict):
        raise SnapshotRefused(f"is not an anomaly state snapshot (its header is a {type(header).__name__})")
    if header.get("format") != FORMAT:
        raise SnapshotRefused(f"is not an anomaly state snapshot (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise SnapshotRefused(
            f"is of format version {header.get('version')!r}; this gpuwarden reads {VERSION}"
        )
    keys = ("saved_at", "read_until", "last_read", "query_read", "source_success", "query_success")
    for key in (*keys, "source_series", "series_at", "query_series", "started", "settings", "components"):
        if key not in header:
            raise SnapshotRefused(f"has no {key!r} in its header")
    return header


def rows_to_hold(what: str, rows: npt.NDArray[Any], claimed: int, first: int) -> int:
    """How many rows to make for the saved ``rows`` of an array that held ``claimed`` (its size when saved,
    at least ``first``): up to the last saved row, not the claim, which a crafted header may set to billions
    (the arrays grow again on demand); ``ValueError`` for a row outside the claim."""
    last = int(rows.max()) if rows.size else -1
    if rows.size and not 0 <= int(rows.min()) <= last < claimed:
        raise ValueError(f"{what} rows outside 0..{claimed - 1}")
    return min(claimed, max(first, last + 1))


def alert_state(alert: Alert) -> dict[str, Any]:
    """``alert`` as JSON values (``restored_alert`` reads them back)."""
    return {
        "labels": dict(alert.labels),
        "status": alert.status.value,
        "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
        "ends_at": alert.ends_at.isoformat() if alert.ends_at else None,
        "annotations": dict(alert.annotations),
        "source": alert.source.value,
        "score": alert.score,
        "evidence": [[p.at.isoformat(), p.value] for p in alert.evidence],
        "recommended_action": alert.recommended_action.value,
        "generator_url": alert.generator_url,
        "timeout": alert.timeout,
    }


def restored_alert(state: Mapping[str, Any]) -> Alert:
    """The alert ``alert_state`` gave ``state`` of."""

    def when(text: str | None) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    return Alert(
        labels=state["labels"],
        status=AlertStatus(state["status"]),
        starts_at=when(state["starts_at"]),
        ends_at=when(state["ends_at"]),
        annotations=state["annotations"],
        source=AlertSource(state["source"]),
        score=state["score"],
        evidence=tuple(EvidencePoint(datetime.fromisoformat(t), float(v)) for t, v in state["evidence"]),
        recommended_action=RecommendedAction(state["recommended_action"]),
        generator_url=state["generator_url"],
        timeout=state["timeout"],
    )
