"""The journal's quarantine: records and alerts the applier could not apply, kept beside the segments.

Each is one JSON file in ``quarantine/``, named by the record's offset (plus the alert's fingerprint for
one alert of a record), with its accept time, the error and a body that can be posted again once the
cause is fixed: the record as posted, or for one alert a ``postableAlerts`` array holding it alone.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from alerting.journal import KIND_WEBHOOK, PRIVATE_DIR, JournalRecord
from gpuwarden.clock import rfc3339
from gpuwarden.model import Alert


def keep_record(directory: Path, record: JournalRecord, exc: Exception, start: int) -> Path:
    """Write the whole record with its error (named by its offset ``start``); the file's path."""
    kind = "webhook" if record.kind == KIND_WEBHOOK else "postable_alerts"
    body = record.body.decode("utf-8", errors="replace")
    return _write(directory, f"{start:020d}", _entry(start, kind, record, exc, body))


def keep_alert(directory: Path, record: JournalRecord, alert: Alert, exc: Exception, start: int) -> Path:
    """Write one alert of the record at ``start`` with its error, as a body ``POST /api/v2/alerts`` takes."""
    entry = _entry(start, "alert", record, exc, orjson.dumps([postable(alert)]).decode())
    entry["fingerprint"] = alert.fingerprint
    return _write(directory, f"{start:020d}-{alert.fingerprint}", entry)


def postable(alert: Alert) -> dict[str, Any]:
    """The alert in Alertmanager's ``postableAlert`` shape."""
    out: dict[str, Any] = {"labels": dict(alert.labels), "annotations": dict(alert.annotations)}
    if alert.starts_at is not None:
        out["startsAt"] = rfc3339(alert.starts_at)
    if alert.ends_at is not None:
        out["endsAt"] = rfc3339(alert.ends_at)
    if alert.generator_url:
        out["generatorURL"] = alert.generator_url
    return out


def _entry(start: int, kind: str, record: JournalRecord, exc: Exception, body: str) -> dict[str, Any]:
    return {
        "offset": start,
        "kind": kind,
        "accepted_at": rfc3339(datetime.fromtimestamp(record.accepted_at, UTC)),
        "error": repr(exc),
        "body": body,
    }


def _write(directory: Path, name: str, entry: dict[str, Any]) -> Path:
    """Write ``entry`` readable by its owner alone, as the journal's segments it comes from are: it took the
    umask (0644), and every user of the machine read the alerts serve could not store."""
    folder = directory / "quarantine"
    folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(fd, 0o600)  # a temporary file a crash left keeps its mode otherwise
        out.write(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
    return path
