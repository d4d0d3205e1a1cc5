"""The discord harness's account of which windows a part finds that the default misses."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.nab import NabFile
from anomaly.univariate import Series
from tests.benchmarks.harness import harness_module


def two_window_file() -> NabFile:
    """2,000 samples (probation 300) with windows at 400-450 and 1,000-1,050."""
    n = 2000
    series = Series(name="f.csv", timestamps=np.arange(n, dtype=np.float64) * 300.0, values=np.zeros(n))
    return NabFile(name="realTraffic/f.csv", series=series, windows=((400, 450), (1000, 1050)))


def test_a_window_the_part_finds_and_the_default_misses_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    newly_found = harness_module(monkeypatch, "nab_discords").newly_found
    f = two_window_file()
    part, default = np.zeros(2000, np.bool_), np.zeros(2000, np.bool_)
    part[[420, 1010]] = True
    default[420] = True
    assert newly_found([f], {f.name: part}, {f.name: default}) == ["f.csv#1"]
    assert newly_found([f], {f.name: default}, {f.name: part}) == []


def test_a_corpus_without_tune_files_is_summarised_with_no_tune_score(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness = harness_module(monkeypatch, "nab_discords")
    f = two_window_file()  # x.csv: held out (anomaly.nab.is_tuning_file)
    held_out = NabFile(name="realTraffic/x.csv", series=f.series, windows=f.windows)
    alerts = np.zeros(2000, np.bool_)
    alerts[420] = True
    out = harness.summary([held_out], harness.scores([held_out], {held_out.name: alerts}))
    assert out["tune"] is None and out["windows_found"] == 1
