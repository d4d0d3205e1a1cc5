"""The fuzzy ART harness: its grid is cross-validated against the default alone, OR-ed with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anomaly.art import ArtParams, raise_grid, raise_many
from anomaly.nab import evaluate, load_corpus
from tests.benchmarks.harness import run_harness
from tests.benchmarks.nab_corpus import FILES, NAB


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_every_declared_setting_is_or_ed_with_the_default_and_cross_validated(tmp_path: Path) -> None:
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    for name in FILES:
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(NAB / "data" / name, tmp_path / "data" / name)
    (tmp_path / "windows.json").write_text(json.dumps({n: windows[n] for n in FILES}))
    result = run_harness(
        "nab_art.py", f"--data={tmp_path / 'data'}", f"--windows={tmp_path / 'windows.json'}"
    )
    default = evaluate(load_corpus(tmp_path / "data", tmp_path / "windows.json")).splits["all"]
    settings = result["settings"]
    assert len(settings) == 1 + 24 and settings["off"]["all_files"] == round(
        default.scores["standard"] or 0, 2
    )
    for label, row in settings.items():  # the default's alerts are in every OR-ed setting
        assert row["windows_found"] >= settings["off"]["windows_found"], label
        assert row["alerts"] >= settings["off"]["alerts"], label
    for scheme in ("leave_one_category_out", "five_folds"):
        assert result["cross_validated"][scheme]["off"] == settings["off"]["all_files"]
    by_category = result["cross_validated"]["leave_one_category_out"]["picks"]
    assert sorted(by_category) == sorted({n.split("/")[0] for n in FILES})


def test_a_grid_stepped_with_its_learning_shared_raises_as_each_of_its_settings_alone() -> None:
    """``raise_grid`` (what the harness steps its grid with) learns once for the settings that differ only in
    ``margin``, ``rearm`` and ``warmup``; each setting's alerts must be those it raises alone, on series of
    other lengths, with a gap, each raising more than once."""
    rng = np.random.default_rng(3)
    period = np.arange(900) % 24
    wave = 10.0 * np.minimum(period, 24 - period) / 12 + rng.normal(0.0, 0.3, 900)
    bumped = wave.copy()
    for at in (350, 500, 650, 800):
        bumped[at : at + 16] = 5.0  # new shapes inside the range
    gappy = bumped[:700].copy()
    gappy[420:440] = np.nan
    values = [bumped, gappy, wave[:500]]
    grid = [
        ArtParams(window=8, vigilance=vigilance, margin=margin, rearm=rearm, warmup=warmup)
        for vigilance, margin, rearm, warmup in [
            (0.9, 0.02, 100, 300),
            (0.9, 0.0, 100, 300),
            (0.9, 0.02, 20, 200),
            (0.95, 0.02, 100, 300),
        ]
    ]
    together = raise_grid(values, grid)
    for params, alerts in zip(grid, together, strict=True):
        alone = raise_many(values, params)
        assert [a.tolist() for a in alerts] == [a.tolist() for a in alone], params
    assert all(sum(int(a.sum()) for a in alerts) > 1 for alerts in together)
    assert len({tuple(np.flatnonzero(alerts[0])) for alerts in together}) > 1  # the settings differ
