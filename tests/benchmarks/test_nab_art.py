"""The fuzzy ART harness: its grid is cross-validated against the default alone, OR-ed with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from anomaly.nab import evaluate, load_corpus
from tests.benchmarks.harness import run_harness
from tests.benchmarks.test_nab_cv import FILES, NAB


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
