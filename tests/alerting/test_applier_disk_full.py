"""The journal's applier on a store that cannot write its files (a full disk, a file made read-only, an I/O
error) while a small write still commits: it retries, it quarantines nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from alerting import scenarios
from alerting.applier import JournalApplier
from alerting.engine import IncidentEngine
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from gpuwarden.clock import FakeClock
from gpuwarden.model import label_fingerprint

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _alert(node: str, pad: int = 0) -> dict[str, Any]:
    return {
        "labels": {"alertname": "NodeDown", "cluster": "c1", "node": node},
        "annotations": {"pad": "x" * pad},
    }


def _cap_store_size(sql: Engine, capped: list[bool]) -> None:
    """While ``capped[0]``, the store cannot grow by a page, as on a full disk (SQLite answers SQLITE_FULL,
    "database or disk is full"); a write that fits its pages (the applied offset) still commits."""

    @event.listens_for(sql, "begin")
    def cap(conn: Any) -> None:
        if capped[0]:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        else:
            conn.exec_driver_sql("PRAGMA max_page_count = 1073741823")


def _io_error_on_alerts(engine: IncidentEngine, monkeypatch: pytest.MonkeyPatch, failing: list[bool]) -> None:
    """While ``failing[0]``, storing alerts fails as on a store file made read-only (chattr +i): SQLite's
    "disk I/O error", while the applied offset, an unchanged row, still commits."""
    real = engine.apply_accepted

    def apply_accepted(*args: Any, **kwargs: Any) -> Any:
        if failing[0]:
            driver = sqlite3.OperationalError("disk I/O error")
            driver.sqlite_errorcode = sqlite3.SQLITE_IOERR_WRITE
            raise OperationalError("COMMIT", {}, driver)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "apply_accepted", apply_accepted)


@pytest.mark.parametrize(
    ("fault", "said"), [("full", "database or disk is full"), ("io-error", "disk I/O error")], ids=str
)
def test_a_store_that_cannot_write_its_files_quarantines_no_alert_and_all_are_applied_once_it_can(
    sql: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    said: str,
) -> None:
    journal = AcceptJournal(tmp_path / "j", lambda jid: applied_offset(sql, jid))
    engine = IncidentEngine(sql, FakeClock(T0.timestamp() + 60), inventory=scenarios.fleet_inventory())
    applier = JournalApplier(journal, engine, poison_after=2)
    failing = [True]
    if fault == "full":
        _cap_store_size(sql, failing)
    else:
        _io_error_on_alerts(engine, monkeypatch, failing)
    big = _alert("r04-n01", pad=200_000)  # more pages than the store has free
    journal.append(KIND_POSTABLE, orjson.dumps([big, _alert("r04-n02")]), 2, accepted_at=T0.timestamp())
    for _ in range(8):  # the applier's loop retries, past poison_after many times
        with pytest.raises(Exception, match=said):
            applier.apply_available()
    assert not (tmp_path / "j" / "quarantine").exists()
    assert "quarantined" not in caplog.text
    assert applied_offset(sql, journal.journal_id) == 0 and applier.alerts_quarantined == 0
    failing[0] = False  # room again, the file writable again
    assert applier.apply_available() == 2
    assert applier.apply_available() == 0
    for alert in (big, _alert("r04-n02")):
        assert engine.store.alert(label_fingerprint(alert["labels"])) is not None
    assert applied_offset(sql, journal.journal_id) == journal.end
