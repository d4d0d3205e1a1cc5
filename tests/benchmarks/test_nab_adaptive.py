"""The warm-up profile harness: ``off`` is the default, and a rule changes only the series it chose for."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from anomaly.nab import NabFile, detect_corpus, load_corpus
from anomaly.warmupprofile import ProfileRule, warmup_profile
from tests.benchmarks.harness import BENCHMARKS
from tests.benchmarks.nab_corpus import NAB, small_corpus

sys.path.insert(0, str(BENCHMARKS))
from nab_adaptive import changed_series, detect, grid, split_scores

pytestmark = pytest.mark.skipif(not NAB.is_dir(), reason="the NAB data of ../shared is not here")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[NabFile]:
    return load_corpus(*small_corpus(tmp_path_factory.mktemp("nab")))


def test_the_grid_is_the_default_and_eight_distinct_rules() -> None:
    rules = grid()
    assert rules["off"] is None
    assert len(rules) == 9 and len(set(rules.values())) == 9


def test_off_is_the_default_detector(files: list[NabFile]) -> None:
    default, off = detect_corpus(files), detect(files, None)
    for name, raised in default.items():
        np.testing.assert_array_equal(off[name], raised)


def test_a_rule_changes_the_alerts_of_the_series_it_chose_for_and_no_other(files: list[NabFile]) -> None:
    rule = ProfileRule(resolve_after=200)
    changed = changed_series(files, rule)
    rough = [
        f.name.split("/")[1]
        for f in files
        if warmup_profile(f.series.values[: rule.samples]).roughness >= rule.roughness
    ]
    assert changed == rough and 0 < len(changed) < len(files)
    default, profiled = detect(files, None), detect(files, rule)
    for f in files:
        if f.name.split("/")[1] not in changed:
            np.testing.assert_array_equal(profiled[f.name], default[f.name])
    assert any(not np.array_equal(profiled[f.name], default[f.name]) for f in files)


def test_the_splits_and_their_categories_add_up_to_all_files(files: list[NabFile]) -> None:
    out = split_scores(files, detect(files, None))
    whole = out["all"]
    assert isinstance(whole, dict)
    parts = [v for k, v in out.items() if "/" in k and isinstance(v, dict)]
    assert sum(p["alerts"] for p in parts) == whole["alerts"]
    assert sum(p["false_positives"] for p in parts) == whole["false_positives"]
