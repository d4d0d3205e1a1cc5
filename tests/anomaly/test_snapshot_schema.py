"""The snapshot's format version is bumped with its schema: a snapshot of an earlier schema is refused for its
version, not taken up with arrays or meta that mean something else (or refused by luck, a ``KeyError``)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from anomaly import snapshot as snapshot_module
from anomaly.collective import CollectiveMoves
from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService, _Firing
from anomaly.snapshot import Snapshot, save_snapshot
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertSource, EvidencePoint
from tests.anomaly.snapshot_grid import EVERY, QUERIES, CounterGridSource, _config, _ticks

# A field's name (``recall_ends``, ``label_sets``); any other key is data: a label name (``Hostname``), an
# alert's fingerprint (16 hex digits), a series.
_FIELD = re.compile(r"[a-z][a-z0-9_]*")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def _shape(value: Any) -> Any:
    """The shape of JSON ``value``: a dict of fields by its keys, a dict keyed by data as ``{"*": ...}``
    with the shapes of its values, a list as the shapes of its items (a list of plain values, or none, is
    ``"list"``); one whose items differ in shape is a record, ``["#", ...]`` with each item's shape in its
    place (a field appended to a move's record changed no union of shapes); a plain value is ``"value"``,
    whatever its type or number."""
    if isinstance(value, dict):
        if all(_FIELD.fullmatch(k) and not _FINGERPRINT.fullmatch(k) for k in value):
            return {k: _shape(v) for k, v in value.items()}
        return {"*": _union(value.values())}
    if isinstance(value, list | tuple):
        items = _union(value)
        if (
            len(items) > 1
        ):  # a record (a move's detector, query, ids...): its fields by place, as many as it has
            return ["#", *(_shape(item) for item in value)]
        return ["*", *items] if any(item != "value" for item in items) else "list"
    return "value"


def _union(values: Any) -> list[Any]:
    """The distinct shapes of ``values``, in a fixed order."""
    shapes = {json.dumps(_shape(v), sort_keys=True) for v in values}
    return [json.loads(s) for s in sorted(shapes)]


def schema(snapshot: Snapshot) -> dict[str, Any]:
    """What a snapshot holds, per component: each array's name (digits read as ``#``: the adaptive detector's
    ``m0_level``, ``m1_level``), dtype and dimensions, and its meta's keys (``_shape``)."""
    return {
        name: {
            "arrays": {
                re.sub(r"\d+", "#", key): [array.dtype.str, array.ndim] for key, array in state.arrays.items()
            },
            "meta": _shape(json.loads(json.dumps(state.meta))),
        }
        for name, state in snapshot.components.items()
    }


def _small_service() -> AnomalyService:
    """A fleet of 8 GPUs (every built-in detector; counters, XIDs, NVLinks, a GPU gone) after a day of ticks,
    with an alert firing, one recalled and one pending, as a fault would have left them."""
    clock = FakeClock()
    source = CounterGridSource(gone_after=clock.time() + 290 * EVERY)
    service = AnomalyService(_config(), [source], clock)
    service.warm_up()
    _ticks(clock, service, 300)
    # Planted, not raised: which alerts the fleet raises, and their labels and annotations, are no schema.
    service.firing, service._recalled, service._recall_ends, service._pending = {}, {}, {}, {}
    labels = {"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}
    evidence = (EvidencePoint(clock.now(), 7.5),)
    alert = Alert(labels=labels, source=AlertSource.ANOMALY, evidence=evidence)
    planted = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=4)
    service.firing[alert.fingerprint] = planted
    service._recalled["0123456789abcdef"] = planted
    service._recall_ends["0123456789abcdef"] = clock.time()
    service._pending["fedcba9876543210"] = (1, "adaptive", QUERIES[0])
    # A workload's move holding a rank (``anomaly.collective``): its record's fields pinned by place.
    move = ["adaptive", QUERIES[0], ["7345"], [1], [1, 2], [[1, 0.5]], [3], -1.0, 2, 3, 1, [[1, 0.8]], 4]
    service.collective = CollectiveMoves.restored([move])
    service.sources.append(_coarse_source(clock))
    return service


def _coarse_source(clock: FakeClock) -> PromQLSource:
    """A PromQL source that has seen a query answer every other step, and has series at two phases of it
    (``anomaly.coarsestate``), and a range query's series run (``anomaly.rangeedges``): fed its answers
    directly, no request made."""
    source = PromQLSource("http://prom:9090", [PromQuery("temp", "temp", 30.0)], clock)
    source.close()
    ts = 30.0 * np.arange(40)
    values = np.full((2, ts.size), np.nan)
    values[0, ::2], values[1, 1::2] = 60.0, 61.0
    source.coarse.keep(Frame("temp", [{"UUID": "GPU-0"}, {"UUID": "GPU-1"}], ts, values), 30.0)
    ts = 30.0 * np.arange(40, 80)
    values = np.where(ts % 60.0 == 0, 60.0, np.nan)[None, :]
    source.coarse.keep(Frame("power", [{"UUID": "GPU-0"}], ts, values), 30.0)
    # A range query's runs of points (``anomaly.rangeedges``), as its reads would have left them.
    frame = Frame("rate", [{"UUID": "GPU-0"}], ts, np.ones((1, ts.size)))
    source._edges.mask(frame, 300.0, 30.0, guarded=True)
    return source


# Lists and maps of entries whose shape the digest pins only where the fixture holds one: an empty one reads
# "list" or ``{}`` (``_shape``), so a change of its entries went unseen, and the digest moved with no schema
# change (at 40 or at 1,000 ticks no GPU is held as vanished: another digest).
_HELD = {
    "alerts": ("firing", "recalled", "recall_ends", "pending", "collective"),
    "detector:signatures": ("up_seen", "vanished"),
    "detector:fleet": ("load_moments",),
    "detector:adaptive": ("models",),
    "sources": ("names", "states"),
}


def _header_keys(snapshot: Snapshot, path: Path) -> list[str]:
    """The keys of the JSON header ``snapshot`` is written with."""
    save_snapshot(path, snapshot)
    with np.load(path, allow_pickle=False) as npz:
        return sorted(json.loads(npz["header"].tobytes().decode()))


def test_the_snapshots_schema_is_the_one_its_format_version_names(tmp_path):
    """Changing what a component saves (an array added, renamed or of another dtype; a meta key), or what the
    header holds (each query's last read added), without bumping ``VERSION`` let a snapshot of before the
    change be taken up with the new meaning: fails here."""
    snapshot = _small_service().snapshot()
    empty = [
        f"{name}.{key}"
        for name, keys in _HELD.items()
        for key in keys
        if not snapshot.components[name].meta[key]
    ]
    assert not empty, (
        f"the fixture holds no entry of {empty}: the digest pins nothing of their entries' shape"
    )
    found = {**schema(snapshot), "header": _header_keys(snapshot, tmp_path / "state.npz")}
    assert {"index", "counters", "evidence", "alerts", "detector:signatures"} <= found.keys()
    digest = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]
    assert digest == snapshot_module.SCHEMA, (
        f"the snapshot's schema changed (digest {digest}, anomaly.snapshot.SCHEMA {snapshot_module.SCHEMA}"
        f" for VERSION {snapshot_module.VERSION}): a snapshot saved before the change would be taken up with"
        " arrays or meta that now mean something else. Bump anomaly.snapshot.VERSION (snapshots of the old"
        f" one are then refused, said, at the next start), set anomaly.snapshot.SCHEMA = {digest!r} and say"
        " in anomaly/snapshot_versions.md what the old version lacked. Only where nothing saved changed (this"
        " test's own fleet read otherwise, a list now empty), set SCHEMA"
        f" alone. The schema now:\n{json.dumps(found, sort_keys=True, indent=1)}"
    )
