"""The scored CSV is the file pandas' ``to_csv`` wrote, byte for byte, for every kind of float and time."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest

from anomaly import scored_csv
from anomaly.scored_csv import write_scored_rows
from anomaly.univariate import ScoredSeries, Series

EDGES = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-3, 9.99e-4, 1e-5, 1e15, 999999999999999.9, 0.1, 0.3, 1 / 3]
EDGES += [5e-324, 1.7976931348623157e308, 123456789.123456789, 0.0001, -2.5, 100.0, 1e16, 4503599627370497.0]


def _pandas(scored: ScoredSeries) -> bytes:
    """What ``write_scored_csv`` wrote before: one ``DataFrame.to_csv``."""
    s = scored.series
    stamps = (
        list(s.stamps)
        if s.stamps is not None
        else pd.to_datetime(s.timestamps, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S")
    )
    frame = pd.DataFrame(
        {
            "timestamp": stamps,
            "value": s.values,
            "anomaly_score": np.round(scored.score, 6),
            "label": scored.raised.astype(np.int8),
        }
    )
    return str(frame.to_csv(index=False)).encode()


def _floats(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "decimals":
        return np.concatenate([rng.normal(50, 10, n).round(int(d)) for d in rng.integers(0, 8, 4)])[:n]
    if kind == "magnitudes":
        return 10.0 ** rng.uniform(-12, 20, n) * rng.choice([-1.0, 1.0], n)
    if kind == "bits":  # any float64 at all: NaNs, infinities, subnormals
        return np.frombuffer(rng.bytes(8 * n), dtype=np.float64).copy()
    return np.resize(np.array(EDGES), n)


@pytest.mark.parametrize("values", ["decimals", "magnitudes", "bits", "edges"])
@pytest.mark.parametrize("stamps", ["epoch", "none", "quoted"])
def test_the_scored_csv_is_what_pandas_wrote_byte_for_byte(values, stamps):
    rng = np.random.default_rng(7)
    n = 2_000
    times = 1.7e9 + 60.0 * np.arange(n)
    texts = {
        "epoch": tuple(str(int(t)) for t in times),
        "none": None,
        "quoted": tuple(["a,b", 'q"x', "ü", "line\nx", "", "2024-01-01 00:00"] * n)[:n],
    }[stamps]
    written = io.BytesIO()
    with np.errstate(all="ignore"):  # infinities and NaNs are the point here
        scores = np.abs(_floats("magnitudes" if values == "bits" else values, n, rng)) % 1e6
        scored = ScoredSeries(Series("x", times, _floats(values, n, rng), texts), scores, rng.random(n) < 0.2)
        write_scored_rows(scored, written)
        assert written.getvalue() == _pandas(scored)


def test_a_series_longer_than_a_block_is_written_whole_in_order(monkeypatch):
    monkeypatch.setattr(scored_csv, "BLOCK_ROWS", 64)
    n = 64 * 3 + 5
    times = np.arange(n, dtype=np.float64)
    scored = ScoredSeries(Series("x", times, times / 8, None), times % 7 / 3, times % 5 == 0)
    written = io.BytesIO()
    write_scored_rows(scored, written)
    assert written.getvalue() == _pandas(scored)


def test_a_score_too_large_to_round_is_written_finite_not_inf():
    # A value of 1e308 scores 1.6e307, finite; rounding it to 6 decimals overflowed (x * 1e6): the file said
    # "inf", with a RuntimeWarning on stderr.
    times = 1.7e9 + 60.0 * np.arange(4)
    scores = np.array([0.5, 1.5634540532e307, 1.7976931348623157e308, 2.0 / 3])
    scored = ScoredSeries(
        Series("x", times, np.array([10.0, 1e308, 1.7e308, 10.0]), None), scores, scores > 1
    )
    written = io.BytesIO()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        write_scored_rows(scored, written)
    rows = [line.split(",") for line in written.getvalue().decode().splitlines()[1:]]
    assert "inf" not in written.getvalue().decode()
    assert [str(w.message) for w in warned] == []
    assert [float(r[2]) for r in rows] == [0.5, 1.5634540532e307, 1.7976931348623157e308, 0.666667]
    assert [r[3] for r in rows] == ["0", "1", "1", "0"]
