from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.pending import FingerprintCache, fingerprints
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, label_fingerprint


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    return path


def _engine(db: str, clock: FakeClock) -> IncidentEngine:
    return IncidentEngine(make_engine(db), clock, AlertingConfig(announce_delay_seconds=0))


def _node_down(**annotations: str) -> Alert:
    return Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"}, annotations=annotations)


def test_fingerprint_cache_gives_alertmanagers_fingerprint_and_stays_bounded() -> None:
    cache = FingerprintCache(size=3)
    label_sets = [{"alertname": "A", "n": str(i)} for i in range(10)]
    for labels in label_sets * 2:
        assert cache.fingerprint(labels) == label_fingerprint(labels)
    assert len(cache._known) <= 3


def test_a_repeat_moves_ends_at_annotations_last_seen_and_count_even_after_a_restart(
    db: str,
) -> None:
    clock = FakeClock()
    engine = _engine(db, clock)
    engine.ingest([_node_down(summary="first")])
    first = engine.store.alert(_node_down().fingerprint)
    assert first is not None
    clock.advance(30)
    restarted = _engine(db, clock)  # the status cache comes back from the store
    ends = clock.now() + timedelta(minutes=4)
    repeat = Alert(_node_down().labels, ends_at=ends, annotations={"summary": "second"}, score=0.7)
    restarted.ingest([repeat, repeat])
    row = restarted.store.alert(repeat.fingerprint)
    assert row is not None
    assert (row.receive_count, row.ends_at, row.annotations) == (3, ends, {"summary": "second"})
    assert (row.score, row.last_seen, row.first_seen) == (0.7, clock.now(), first.first_seen)
    assert row.status == AlertStatus.FIRING.value and row.incident_id == first.incident_id


def test_a_new_alert_posted_twice_in_one_batch_is_stored_once(db: str) -> None:
    engine = _engine(db, FakeClock())
    engine.ingest([_node_down(), _node_down()])
    row = engine.store.alert(_node_down().fingerprint)
    assert row is not None and row.receive_count == 2 and row.incident_id is not None
    assert engine.store.alert_count() == 1


def test_a_resolve_after_repeats_is_a_change_not_a_repeat(db: str) -> None:
    clock = FakeClock()
    engine = _engine(db, clock)
    for _ in range(3):
        engine.ingest([_node_down()])
        clock.advance(15)
    engine.ingest([Alert(_node_down().labels, ends_at=clock.now())])
    row = engine.store.alert(_node_down().fingerprint)
    assert row is not None and row.status == AlertStatus.RESOLVED.value
    assert row.incident_id is not None
    kinds = [e.kind for e in engine.store.get(row.incident_id).timeline]
    assert "alert_resolved" in kinds and "quiet" in kinds


def test_many_fingerprints_at_once_are_alertmanagers_whatever_the_labels() -> None:
    # Enough label sets to take the numpy path: empty sets, multi-byte UTF-8 (including U+00FF, whose
    # encoding must not be confused with the 0xFF separator), very different lengths.
    rng = random.Random(7)
    alphabet = "abcXYZ019/:-_. éÿ€😀"
    label_sets = [{}, {"ÿ": "\xff"}, {"a": ""}] + [
        {
            f"k{rng.randint(0, 40)}": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))
            for _ in range(rng.randint(0, 10))
        }
        for _ in range(500)
    ]
    assert fingerprints(label_sets) == [label_fingerprint(labels) for labels in label_sets]
    assert fingerprints(label_sets[:3]) == [label_fingerprint(labels) for labels in label_sets[:3]]


def test_fingerprint_cache_hashes_a_batch_together_and_stays_bounded() -> None:
    cache = FingerprintCache(size=100)
    label_sets = [{"alertname": "A", "n": str(i)} for i in range(150)]
    assert cache.fingerprint_all(label_sets) == [label_fingerprint(labels) for labels in label_sets]
    again = label_sets[100:] + label_sets[:60]  # half cached, half not, past the bound
    assert cache.fingerprint_all(again) == [label_fingerprint(labels) for labels in again]
    assert len(cache._known) <= 150
