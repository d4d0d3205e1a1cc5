"""The HTM harness's reporting: every declared likelihood setting is scored alone and OR-ed with the default,
cross-validated against the default alone, from raw scores kept in ``--raw-cache`` (the HTM pass itself
costs minutes, so these raw scores are given: 1 inside each labelled window, 0 elsewhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomaly.nab import evaluate, load_corpus
from tests.benchmarks.harness import run_harness
from tests.benchmarks.nab_corpus import NAB, small_corpus


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_every_setting_is_scored_alone_and_or_ed_from_the_kept_raw_scores(tmp_path: Path) -> None:
    data, windows = small_corpus(tmp_path)
    files = load_corpus(data, windows)
    raw = {}
    for f in files:
        raw[f.name] = np.zeros(len(f.series.values))
        for left, right in f.windows:
            raw[f.name][left : right + 1] = 1.0
    np.savez(tmp_path / "raw.npz", __seconds__=np.array(1.0), **raw)
    result = run_harness(
        "nab_htm.py",
        f"--data={data}",
        f"--windows={windows}",
        f"--raw-cache={tmp_path / 'raw.npz'}",
    )
    settings = result["settings"]
    default = evaluate(files).splits["all"]
    assert len(settings) == 1 + 12 and settings["off"]["all_files"] == round(
        default.scores["standard"] or 0, 2
    )
    for label, row in settings.items():
        assert row["windows_found"] >= settings["off"]["windows_found"], label
        assert row["alerts"] >= settings["off"]["alerts"], label
    best_alone = max(row["alone"]["windows_found"] for label, row in settings.items() if label != "off")
    assert best_alone > 0  # the window-shaped raw scores are found by the likelihood
    for scheme in ("leave_one_category_out", "five_folds"):
        assert result["cross_validated"][scheme]["off"] == settings["off"]["all_files"]
    assert result["tune_pick_alone"] in settings and result["tune_pick_with_default"] in settings
    assert result["by_split"]["default"]["all"] == settings["off"]["all_files"]
    assert result["htm_us_per_sample"] == round(1e6 / result["samples"], 1)  # read from the cache
