"""The change-point harness: its declared grid is OR-ed with the default, cross-validated against it, and the
setting frozen on tune is the only one whose held-out score it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomaly.nab import evaluate, load_corpus
from tests.benchmarks.harness import run_harness
from tests.benchmarks.nab_corpus import FILES, NAB, small_corpus


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")
def test_every_declared_setting_is_or_ed_with_the_default_and_only_the_tune_pick_reads_held_out(
    tmp_path: Path,
) -> None:
    data, windows = small_corpus(tmp_path)
    result = run_harness("nab_runlength.py", f"--data={data}", f"--windows={windows}", "--held-out")
    default = evaluate(load_corpus(data, windows)).splits
    settings = result["settings"]
    assert len(settings) == 1 + 24 and settings["off"]["all_files"] == round(
        default["all"].scores["standard"] or 0, 2
    )
    for label, row in settings.items():  # the default's alerts are in every OR-ed setting
        assert row["windows_found"] >= settings["off"]["windows_found"], label
        assert row["alerts"] >= settings["off"]["alerts"], label
    for scheme in ("leave_one_category_out", "five_folds"):
        assert result["cross_validated"][scheme]["off"] == settings["off"]["all_files"]
    assert sorted(result["cross_validated"]["leave_one_category_out"]["picks"]) == sorted(
        {n.split("/")[0] for n in FILES}
    )
    assert set(result["held_out"]) == {"off", result["frozen_on_tune"]}
    assert result["held_out"]["off"] == round(default["held_out"].scores["standard"] or 0, 2)
