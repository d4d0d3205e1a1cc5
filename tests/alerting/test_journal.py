from __future__ import annotations

import os
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alerting import scenarios
from alerting.applier import JournalApplier
from alerting.engine import IncidentEngine
from alerting.journal import (
    KIND_POSTABLE,
    KIND_WEBHOOK,
    AcceptJournal,
    JournalCorrupt,
    JournalRecord,
    applied_offset,
    encode_record,
)
from gpuwarden.clock import FakeClock
from gpuwarden.model import label_fingerprint

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _alert(node: str, **extra: str) -> dict[str, object]:
    return {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": node, **extra}}


def _body(*nodes: str) -> bytes:
    return orjson.dumps([_alert(n) for n in nodes])


def _open(sql: Engine, directory: Path, **kwargs: int) -> AcceptJournal:
    return AcceptJournal(directory, lambda jid: applied_offset(sql, jid), **kwargs)


def _engine(sql: Engine) -> IncidentEngine:
    # The clock is an hour past the accept times the tests use: applying must use the accept time.
    return IncidentEngine(sql, FakeClock(T0.timestamp() + 3600), inventory=scenarios.fleet_inventory())


def test_appended_records_read_back_in_order_with_their_end_offsets(sql: Engine, tmp_path: Path) -> None:
    journal = _open(sql, tmp_path / "j")
    first = journal.append(KIND_POSTABLE, _body("r01-n01"), 1, accepted_at=1.5)
    second = journal.append(KIND_WEBHOOK, b'{"version": "4", "alerts": []}', 0, accepted_at=2.5)
    records = journal.read(0)
    assert [(r.kind, r.accepted_at, r.end) for r in records] == [
        (KIND_POSTABLE, 1.5, first),
        (KIND_WEBHOOK, 2.5, second),
    ]
    assert journal.read(first) == records[1:]
    assert journal.read(second) == []
    assert records[0].alerts()[0].labels["node"] == "r01-n01"


def test_a_torn_last_record_is_dropped_at_recovery_and_later_appends_follow_the_whole_ones(
    sql: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    journal = _open(sql, directory)
    whole = journal.append(KIND_POSTABLE, _body("r01-n01"), 1)
    journal.close()
    (segment,) = directory.glob("*.seg")
    torn = encode_record(KIND_POSTABLE, 3.0, _body("r01-n02"))
    with segment.open("ab") as f:
        f.write(torn[: len(torn) // 2])  # the process died inside the write: never acknowledged

    reopened = _open(sql, directory)
    assert reopened.torn_bytes == len(torn) // 2
    assert reopened.end == whole
    after = reopened.append(KIND_POSTABLE, _body("r01-n03"), 1)
    nodes = [r.alerts()[0].labels["node"] for r in reopened.read(0)]
    assert nodes == ["r01-n01", "r01-n03"]
    assert reopened.read(0)[-1].end == after


def _written(sql: Engine, directory: Path, *nodes: str, **kwargs: int) -> list[int]:
    """A closed journal holding one record per node; the records' end offsets."""
    journal = _open(sql, directory, **kwargs)
    ends = [journal.append(KIND_POSTABLE, _body(node), 1) for node in nodes]
    journal.close()
    return ends


def _flip(segment: Path, at: int) -> bytes:
    """Damage one byte of a segment file (``at`` may count from the end); its new content."""
    data = bytearray(segment.read_bytes())
    data[at] ^= 0xFF
    segment.write_bytes(bytes(data))
    return bytes(data)


def test_a_flipped_byte_in_the_last_record_fails_its_checksum(sql: Engine, tmp_path: Path) -> None:
    directory = tmp_path / "j"
    whole, _ = _written(sql, directory, "r01-n01", "r01-n02")
    (segment,) = directory.glob("*.seg")
    _flip(segment, -3)
    assert _open(sql, directory).end == whole


def test_a_damaged_record_with_acknowledged_ones_after_it_stops_recovery_and_cuts_nothing(
    sql: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    first, _, _ = _written(sql, directory, "r01-n01", "r01-n02", "r01-n03")
    (segment,) = directory.glob("*.seg")
    damaged = _flip(segment, first + 20)  # inside the second record: the third, acknowledged too, is whole
    with pytest.raises(JournalCorrupt, match="records follow them"):
        _open(sql, directory)
    assert segment.read_bytes() == damaged  # nothing cut off


def test_the_refusal_names_the_damaged_bytes_only_and_the_record_after_them(
    sql: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    first, second, _ = _written(sql, directory, "r01-n01", "r01-n02", "r01-n03")
    (segment,) = directory.glob("*.seg")
    _flip(segment, first + 20)
    with pytest.raises(JournalCorrupt) as caught:
        _open(sql, directory)
    assert caught.value.segment == segment
    message = str(caught.value)
    assert f"{second - first} bytes at offsets {first}-{second - 1} do not read as records" in message
    assert f"readable records follow them from offset {second}" in message


def test_damage_in_records_the_store_applied_does_not_stop_recovery(
    sql: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # serve applied all three records and stopped; a byte of the first then flipped on disk.
    directory = tmp_path / "j"
    first, _, third = _written(sql, directory, "r01-n01", "r01-n02", "r01-n03")
    (segment,) = directory.glob("*.seg")
    damaged = _flip(segment, 10)
    journal = AcceptJournal(directory, lambda _jid: third)
    assert journal.end == third
    assert segment.read_bytes() == damaged  # nothing cut off
    assert f"0-{first - 1} of {segment} do not read as records; the store had applied them" in caplog.text
    after = journal.append(KIND_POSTABLE, _body("r01-n04"), 1)
    assert [r.alerts()[0].labels["node"] for r in journal.read(third)] == ["r01-n04"]
    assert journal.read(third)[-1].end == after


def test_applied_damage_before_unapplied_damage_with_records_after_it_still_stops_recovery(
    sql: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    first, second, _ = _written(sql, directory, "r01-n01", "r01-n02", "r01-n03")
    (segment,) = directory.glob("*.seg")
    _flip(segment, 10)  # applied
    _flip(segment, first + 20)  # not applied, and the third record follows it
    with pytest.raises(JournalCorrupt, match=f"offsets {first}-{second - 1} .* from offset {second}"):
        AcceptJournal(directory, lambda _jid: first)


def test_a_damaged_segment_before_the_last_stops_recovery_and_deletes_nothing(
    sql: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    _written(sql, directory, "r01-n01", "r01-n02", "r01-n03", segment_bytes=1)  # a segment per record
    segments = sorted(directory.glob("*.seg"))
    assert len(segments) == 3
    _flip(segments[0], -2)
    with pytest.raises(JournalCorrupt, match="2 later segments of records follow;"):
        _open(sql, directory)
    assert sorted(directory.glob("*.seg")) == segments


def test_segments_rotate_and_applied_ones_are_deleted_while_offsets_keep_growing(
    sql: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    journal = _open(sql, directory, segment_bytes=100)
    ends = [journal.append(KIND_POSTABLE, _body(f"r01-n{i:02d}"), 1) for i in range(6)]
    assert len(journal.segments()) > 2
    assert [r.end for r in _read_all(journal, 0)] == ends
    journal.discard_applied(ends[3])
    assert min(journal.segments()) <= ends[3]
    assert [r.end for r in _read_all(journal, ends[3])] == ends[4:]
    assert len(journal.segments()) < 6


def _read_all(journal: AcceptJournal, start: int) -> list[JournalRecord]:
    out: list[JournalRecord] = []
    while records := journal.read(start, max_bytes=1):
        out.extend(records)
        start = records[-1].end
    return out


def test_applier_stores_and_correlates_and_commits_its_offset_with_the_alerts(
    sql: Engine, tmp_path: Path
) -> None:
    journal = _open(sql, tmp_path / "j")
    engine = _engine(sql)
    applier = JournalApplier(journal, engine)
    end = journal.append(KIND_POSTABLE, _body("r02-n01", "r02-n02"), 2, accepted_at=T0.timestamp())
    assert applier.apply_available() == 2
    assert applied_offset(sql, journal.journal_id) == end == applier.applied
    row = engine.store.alert(label_fingerprint(_alert("r02-n01")["labels"]))  # type: ignore[arg-type]
    assert row is not None and row.incident_id is not None
    assert row.first_seen == T0  # applied at its accept time, not at the apply time
    assert applier.apply_available() == 0


def test_after_a_restart_replay_starts_at_the_committed_offset_so_nothing_is_applied_twice(
    sql: Engine, tmp_path: Path
) -> None:
    directory = tmp_path / "j"
    journal = _open(sql, directory)
    applier = JournalApplier(journal, _engine(sql))
    journal.append(KIND_POSTABLE, _body("r03-n01"), 1)
    applier.apply_available()
    journal.append(KIND_POSTABLE, _body("r03-n02"), 1)  # acknowledged, then the process died
    journal.close()

    engine = _engine(sql)
    replay = JournalApplier(_open(sql, directory), engine)
    assert replay.apply_available() == 1
    first = engine.store.alert(label_fingerprint(_alert("r03-n01")["labels"]))  # type: ignore[arg-type]
    second = engine.store.alert(label_fingerprint(_alert("r03-n02")["labels"]))  # type: ignore[arg-type]
    assert first is not None and first.receive_count == 1
    assert second is not None and second.incident_id == first.incident_id
    assert len(engine.store.list_rows()) == 1


def test_a_failed_transaction_stores_neither_the_alerts_nor_the_offset(sql: Engine, tmp_path: Path) -> None:
    journal = _open(sql, tmp_path / "j")
    engine = _engine(sql)
    journal.append(KIND_POSTABLE, _body("r04-n01"), 1)
    fp = label_fingerprint(_alert("r04-n01")["labels"])  # type: ignore[arg-type]

    def fail(session: Session) -> None:
        raise RuntimeError("disk gone")

    record = journal.read(0)[0]
    with pytest.raises(RuntimeError):
        engine.apply_accepted([(T0, record.alerts())], fail)
    assert engine.store.alert(fp) is None
    assert applied_offset(sql, journal.journal_id) == 0
    applier = JournalApplier(journal, engine)
    applier.apply_available()
    assert engine.store.alert(fp) is not None


def test_webhook_records_replayed_twice_stay_one_alert(sql: Engine, tmp_path: Path) -> None:
    journal = _open(sql, tmp_path / "j")
    engine = _engine(sql)
    applier = JournalApplier(journal, engine)
    payload = orjson.dumps({"version": "4", "status": "firing", "alerts": [_alert("r05-n01")]})
    journal.append(KIND_WEBHOOK, payload, 1)
    journal.append(KIND_WEBHOOK, payload, 1)  # Alertmanager retried
    applier.apply_available()
    assert engine.store.alert_count() == 1
    assert len(engine.store.list_rows()) == 1


def test_wait_applied_returns_once_the_background_applier_caught_up(sql: Engine, tmp_path: Path) -> None:
    journal = _open(sql, tmp_path / "j")
    applier = JournalApplier(journal, _engine(sql))
    stop = threading.Event()
    thread = threading.Thread(target=applier.run, args=(stop,))
    thread.start()
    try:
        end = journal.append(KIND_POSTABLE, _body("r06-n01"), 1)
        applier.notify()
        assert applier.wait_applied(end, timeout=30)
        assert applier.status()["lag_bytes"] == 0
        assert applier.status()["alerts_applied"] == 1
    finally:
        stop.set()
        thread.join()


def test_once_everything_is_applied_the_journal_starts_a_new_segment_and_drops_the_old(
    sql: Engine, tmp_path: Path
) -> None:
    journal = _open(sql, tmp_path / "j")
    ends = [journal.append(KIND_POSTABLE, _body(f"r07-n{i:02d}"), 1) for i in range(3)]
    journal.discard_applied(ends[1], start_over_bytes=1)  # not all applied: nothing goes
    assert journal.segments() == [0]
    journal.discard_applied(ends[2], start_over_bytes=1)
    assert journal.segments() == [ends[2]]
    assert journal.read(ends[2]) == []
    after = journal.append(KIND_POSTABLE, _body("r07-n09"), 1)
    assert [r.end for r in journal.read(ends[2])] == [after]


def _drain(applier: JournalApplier, tries: int = 20) -> int:
    """Call the applier as its loop does (a failure is retried) until caught up; returns the failures."""
    failures = 0
    for _ in range(tries):
        try:
            if applier.apply_available() == 0:
                return failures
        except Exception:  # the loop retries
            failures += 1
    raise AssertionError("the applier never caught up")


def test_a_record_the_store_keeps_refusing_is_quarantined_and_the_ones_after_it_are_applied(
    sql: Engine, tmp_path: Path
) -> None:
    with sql.begin() as conn:  # the store itself refuses one label value, as PostgreSQL refuses a NUL
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.labels LIKE '%poison%'"
            " BEGIN SELECT RAISE(ABORT, 'value refused'); END"
        )
    journal = _open(sql, tmp_path / "j")
    journal.append(KIND_POSTABLE, _body("r04-n01"), 1, accepted_at=T0.timestamp())
    bad = orjson.dumps([_alert("r04-n02", note="poison")])
    start = journal.append(KIND_POSTABLE, _body("r04-n03"), 1, accepted_at=T0.timestamp())
    journal.append(KIND_POSTABLE, bad, 1, accepted_at=T0.timestamp())
    journal.append(KIND_POSTABLE, _body("r04-n04"), 1, accepted_at=T0.timestamp())
    engine = _engine(sql)
    applier = JournalApplier(journal, engine, poison_after=2)
    failures = _drain(applier)
    assert failures == 3  # twice as a batch, then alone: its second failure alone quarantines it
    for node in ("r04-n01", "r04-n03", "r04-n04"):
        assert engine.store.alert(label_fingerprint(_alert(node)["labels"])) is not None  # type: ignore[arg-type]
    assert engine.store.alert(label_fingerprint(_alert("r04-n02", note="poison")["labels"])) is None  # type: ignore[arg-type]
    assert applied_offset(sql, journal.journal_id) == journal.end
    (kept,) = (tmp_path / "j" / "quarantine").glob("*.json")
    saved = orjson.loads(kept.read_bytes())
    assert saved["offset"] == start and saved["kind"] == "alert"
    assert [a["labels"] for a in orjson.loads(saved["body"])] == [a["labels"] for a in orjson.loads(bad)]
    assert "value refused" in saved["error"]
    assert saved["accepted_at"] == "2026-01-01T00:00:00Z"  # as the API writes times (it said +00:00)
    status = applier.status()
    assert status["alerts_quarantined"] == 1 and status["lag_bytes"] == 0


def test_an_alert_the_store_refuses_is_quarantined_alone_and_the_good_alerts_of_its_record_are_applied(
    sql: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with sql.begin() as conn:  # the store refuses one alert's label value, as PostgreSQL refuses a NUL
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN NEW.labels LIKE '%poison%'"
            " BEGIN SELECT RAISE(ABORT, 'value refused'); END"
        )
    journal = _open(sql, tmp_path / "j")
    poison = _alert("r04-n02", note="poison")
    body = orjson.dumps([_alert("r04-n01"), poison, _alert("r04-n03")])  # one Prometheus batch
    start = journal.append(KIND_POSTABLE, _body("r03-n01"), 1, accepted_at=T0.timestamp())
    journal.append(KIND_POSTABLE, body, 3, accepted_at=T0.timestamp())
    journal.append(KIND_POSTABLE, _body("r04-n04"), 1, accepted_at=T0.timestamp())
    engine = _engine(sql)
    applier = JournalApplier(journal, engine, poison_after=2)
    _drain(applier)
    for node in ("r03-n01", "r04-n01", "r04-n03", "r04-n04"):
        assert engine.store.alert(label_fingerprint(_alert(node)["labels"])) is not None, node  # type: ignore[arg-type]
    fingerprint = label_fingerprint(poison["labels"])  # type: ignore[arg-type]
    assert engine.store.alert(fingerprint) is None
    (kept,) = (tmp_path / "j" / "quarantine").glob("*.json")
    saved = orjson.loads(kept.read_bytes())
    assert (saved["offset"], saved["fingerprint"]) == (start, fingerprint)
    assert [a["labels"] for a in orjson.loads(saved["body"])] == [poison["labels"]]
    assert fingerprint in caplog.text
    status = applier.status()
    assert (status["alerts_quarantined"], status["records_quarantined"], status["lag_bytes"]) == (1, 0, 0)
    assert status["alerts_applied"] == 4
    assert applied_offset(sql, journal.journal_id) == journal.end


def test_a_store_that_takes_no_write_at_all_quarantines_nothing_and_is_caught_up_with_later(
    sql: Engine, tmp_path: Path
) -> None:
    journal = _open(sql, tmp_path / "j")
    journal.append(KIND_POSTABLE, _body("r04-n01"), 1, accepted_at=T0.timestamp())
    journal.append(KIND_POSTABLE, _body("r04-n02"), 1, accepted_at=T0.timestamp())
    engine = _engine(sql)
    applier = JournalApplier(journal, engine, poison_after=2)
    with sql.begin() as conn:  # every write now fails, the probe's too
        conn.exec_driver_sql("ALTER TABLE ingest_journal RENAME TO ingest_journal_away")
    for _ in range(8):
        with pytest.raises(Exception, match="ingest_journal"):
            applier.apply_available()
    assert applier.quarantined == 0
    assert not (tmp_path / "j" / "quarantine").exists()
    with sql.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE ingest_journal_away RENAME TO ingest_journal")
    assert _drain(applier) == 0
    assert applier.alerts_applied == 2 and applier.quarantined == 0


def test_a_record_an_earlier_version_took_and_this_one_refuses_is_quarantined_not_lost(
    sql: Engine, tmp_path: Path
) -> None:
    journal = _open(sql, tmp_path / "j")
    applier = JournalApplier(journal, _engine(sql))
    journal.append(KIND_POSTABLE, _body("r01-n01"), 1, accepted_at=T0.timestamp())
    nul = journal.append(KIND_POSTABLE, _body("r01-n02", "bad\u0000node"), 2, accepted_at=T0.timestamp())
    end = journal.append(KIND_POSTABLE, _body("r01-n03"), 1, accepted_at=T0.timestamp())
    failing = True
    engine = applier.engine
    apply = engine.apply_accepted

    def store_down_once(*args: object, **kwargs: object) -> None:
        if failing:
            raise OSError("store unreachable")
        apply(*args, **kwargs)  # type: ignore[arg-type]

    engine.apply_accepted = store_down_once  # type: ignore[method-assign]
    with pytest.raises(OSError):
        applier.apply_available()
    assert applier.quarantined == 0  # counted when the offset past it commits, not at each try
    failing = False
    while applier.apply_available():
        pass
    assert applied_offset(sql, journal.journal_id) == end and applier.quarantined == 1
    (kept,) = (tmp_path / "j" / "quarantine").glob("*.json")
    saved = orjson.loads(kept.read_bytes())
    assert "bad\\u0000node" in saved["body"] and "NUL" in saved["error"]
    assert int(kept.stem) < nul
    stored = applier.engine.store
    assert [
        stored.alert(label_fingerprint(_alert(n)["labels"])) is not None for n in ("r01-n01", "r01-n03")
    ] == [
        True,
        True,
    ]


def test_a_commit_whose_answer_was_lost_is_not_applied_again(
    sql: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _open(sql, tmp_path / "j")
    engine = _engine(sql)
    applier = JournalApplier(journal, engine)
    end = journal.append(KIND_POSTABLE, _body("r05-n01"), 1, accepted_at=T0.timestamp())
    apply = engine.apply_accepted

    def committed_then_lost(*args: Any, **kwargs: Any) -> object:
        apply(*args, **kwargs)  # the COMMIT reached the store; its answer did not come back
        monkeypatch.setattr(engine, "apply_accepted", apply)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(engine, "apply_accepted", committed_then_lost)
    with pytest.raises(OperationalError):
        applier.apply_available()
    assert applier.apply_available() == 0  # the store's offset says it is applied: nothing to do
    assert applier.applied == end
    row = engine.store.alert(label_fingerprint(_alert("r05-n01")["labels"]))  # type: ignore[arg-type]
    assert row is not None and row.receive_count == 1


def test_a_store_outage_logs_one_traceback_then_one_line_per_retry(
    sql: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    journal = _open(sql, tmp_path / "j")
    engine = _engine(sql)
    applier = JournalApplier(journal, engine, retry_seconds=0.001, poison_after=100)
    journal.append(KIND_POSTABLE, _body("r06-n01"), 1)
    stop = threading.Event()
    tries = iter(range(5))

    def down(*args: Any, **kwargs: Any) -> object:
        if next(tries, None) is None:
            stop.set()
        raise OperationalError("BEGIN", {}, Exception("connection refused"))

    monkeypatch.setattr(engine, "apply_accepted", down)
    applier.run(stop)
    logged = [r for r in caplog.records if r.name == "alerting.applier"]
    assert applier.failures == 6 and len(logged) == 6
    assert sum(r.exc_info is not None for r in logged) == 1


def test_every_segment_and_the_directory_are_the_owners_alone_whatever_the_umask(
    sql: Engine, tmp_path: Path
) -> None:
    """A rotated segment was made 0600, but the first one (touched at start) took the umask, 0644: every
    alert batch acknowledged since the last apply, readable by any user of the machine."""
    previous = os.umask(0o022)
    try:
        journal = _open(sql, tmp_path / "j", segment_bytes=64)
        journal.append(KIND_POSTABLE, _body("r01-n01"), 1, accepted_at=1.5)
        journal.append(KIND_POSTABLE, _body("r01-n02"), 1, accepted_at=2.5)  # past 64 bytes: a new segment
    finally:
        os.umask(previous)
    segments = sorted((tmp_path / "j").glob("*.seg"))
    assert len(segments) == 2
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in segments} == {oct(0o600)}
    assert oct(stat.S_IMODE((tmp_path / "j").stat().st_mode)) == oct(0o700)
