"""Every field a snapshot keeps of a service, by its path, and their comparison: what a restore or a copy must
leave as it was."""

from __future__ import annotations

import re

import numpy as np

from anomaly.detectors import SavedDetector
from anomaly.service import AnomalyService

# What no snapshot keeps, and need not: caches rebuilt from the next read, counts for /metrics, log-once sets,
# the forest (fitted again on its rows: compared by its scores), the rows kept for the next fit (one array
# instead of a list of them: compared stacked), and the thermal detector's tick before and interval between
# ticks (its newest read after a restore, the interval from the next tick: ``_stepped_back``).
_REBUILT = re.compile(
    r"\._(last|key_cache|group_cache|group_keys|align_cache|matches|scored|params|floors|warned|join|model"
    r"|scorer|rows|read_at|interval)\b|\.uncompared\b"
)


def _fields(obj: object, at: str, out: dict[str, object]) -> dict[str, object]:
    """Every value reachable from ``obj``'s attributes, dict items and list items, by its path."""
    if isinstance(obj, np.ndarray | str | int | float | bool | type(None)):
        out[at] = obj
    elif isinstance(obj, dict):
        out[f"{at}.keys"] = sorted(map(repr, obj))
        for key, value in obj.items():
            _fields(value, f"{at}[{key!r}]", out)
    elif isinstance(obj, list | tuple):
        out[f"{at}.len"] = len(obj)
        for i, value in enumerate(obj):
            _fields(value, f"{at}[{i}]", out)
    else:
        slots = [s for cls in type(obj).__mro__ for s in getattr(cls, "__slots__", ())]
        for name in [*getattr(obj, "__dict__", {}), *slots]:
            if not _REBUILT.search(f"{at}.{name}") and not callable(value := getattr(obj, name)):
                _fields(value, f"{at}.{name}", out)
    return out


def _assert_same_fields(want: dict[str, object], got: dict[str, object], part: str) -> None:
    """``got`` (``_fields``) holds every path of ``want``, each with an equal value."""
    assert want.keys() == got.keys(), part
    for at, value in want.items():
        other = got[at]
        same = (
            np.array_equal(value, other, equal_nan=True) if isinstance(value, np.ndarray) else value == other
        )
        assert same or (value != value and other != other), (at, value, other)  # NaN is NaN


_PARTS = ["index", "counters", "evidence", "firing", "_pending", "_last_read", "_query_read", "saved"]


def _service_fields(service: AnomalyService) -> dict[str, dict[str, object]]:
    """Each part of ``service`` a snapshot keeps, by ``_fields``."""
    return {
        p: _fields(getattr(service, p) if p != "saved" else _saved_detectors(service), p, {}) for p in _PARTS
    }


def _saved_detectors(service: AnomalyService) -> list[object]:
    """The detectors a snapshot keeps (``SavedDetector``: a third party's may keep none)."""
    return [d for d in service.detectors if isinstance(d, SavedDetector)]
