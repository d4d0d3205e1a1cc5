"""The crash fuzz runs real `serve` processes, kills and restarts them, and reports what a crash changed."""

from __future__ import annotations

import importlib
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from alerting.notifiers.recorder import SlackRecorder
from alerting.outbox import Outbox
from alerting.outbox_tables import DISCARDED
from gpuwarden.clock import FakeClock
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.test_outbox import _reassessed, slack
from tests.benchmarks.harness import BENCHMARKS
from tests.migrated_store import migrated_sqlite


@pytest.fixture
def fuzz(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/crash_fuzz.py``, imported as it runs (its folder on the path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("crash_fuzz")


def test_kills_are_drawn_apart_from_the_storm_and_each_is_one_of_the_three_moments(fuzz: ModuleType) -> None:
    steps = fuzz.stream(3, 30)
    assert fuzz.stream(3, 30) == steps and {kind for kind, _ in steps} >= {"post", "silence"}
    assert any(a["resolved"] for kind, args in steps if kind == "post" for a in args["alerts"])
    plans = [fuzz.kill_plan(seed, 30, 3) for seed in range(20)]
    assert all(len(plan) == 3 and set(plan.values()) <= set(fuzz.KILLS) for plan in plans)
    assert {how for plan in plans for how in plan.values()} == set(fuzz.KILLS)


@pytest.mark.integration
def test_a_killed_serve_matches_the_straight_one_and_a_broken_comparison_is_reported(
    fuzz: ModuleType,
) -> None:
    """One seed, both runs real processes; then what the runs left, altered as a crash could alter it, is
    told apart: an opening paged twice, one never paged, an incident that differs, a journal left behind."""
    seen: list[Any] = []

    def recording(straight: Any, crashed: Any) -> dict[str, list[str]]:
        seen.extend((straight, crashed))
        found: dict[str, list[str]] = fuzz.compare(straight, crashed)
        return found

    result = fuzz.main(["--seeds", "46", "--steps", "8", "--kills", "2"], comparison=recording)
    assert result["kills"] >= 2  # a POST in flight; right after an answer, and the next serve starting
    assert (result["divergent"], result["duplicates"], result["lost"], result["half_written"]) == (
        [],
        [],
        [],
        [],
    )
    straight, crashed = seen
    assert straight.incidents and sum(straight.parents.values()) >= 1 and sum(straight.opened.values()) >= 1

    key = next(iter(crashed.parents))
    paged_twice = replace(crashed, parents=crashed.parents + Counter({key: 1}))
    assert fuzz.compare(straight, paged_twice)["duplicates"]
    never_paged = replace(crashed, opened=crashed.opened - Counter({next(iter(crashed.opened)): 1}))
    assert fuzz.compare(straight, never_paged)["lost"]
    state, priority, announced = crashed.incidents[key]
    moved = "P3" if priority == "P0" else "P0"
    other = replace(crashed, incidents={**crashed.incidents, key: (state, moved, announced)})
    assert fuzz.compare(straight, other)["divergent"]
    behind = replace(crashed, half_written=["journal: 120 bytes not applied"])
    assert fuzz.compare(straight, behind)["half_written"]


@pytest.mark.integration
def test_a_crash_that_pages_twice_is_reported_as_a_duplicate(
    fuzz: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a channel name (``#...``), not an id, serve cannot look its message up after a crash and posts
    it again (at least once, as the README says): killed while Slack holds the first post of an incident's
    message unanswered, the restarted serve posts it twice, which the fuzz must tell."""
    monkeypatch.setattr(fuzz, "SENDS", ("chat.postMessage",))  # the kill lands in the parent's post
    assert fuzz.kill_plan(0, 4, 1) == {0: "send"} and fuzz.stream(0, 4)[0][0] == "post"
    result = fuzz.main(["--seeds", "0", "--steps", "4", "--kills", "1", "--slack-channel", "#crash-fuzz"])
    assert result["kills_by"] == {"send": 1}
    assert result["duplicates"] == [0]
    assert any(":parent x2" in line for line in result["first"]["0"]["duplicates"])
    shutil.rmtree(result["first"]["0"]["kept"])  # the runs' folders, kept for whoever reads a finding


def test_an_edit_superseded_by_a_later_one_is_no_finding(fuzz: ModuleType, tmp_path: Path) -> None:
    """The outbox discards a waiting edit that a later message of its incident shows (fix/measures); the
    fuzz read every status but ``sent`` as half written, and its settle waited for ``sent`` alone: an
    uncrashed run that superseded an edit was a finding, or timed out as "serve not quiet"."""
    engine = migrated_sqlite(tmp_path / "gw.db")
    with SlackRecorder() as recorder:
        outbox = Outbox(engine, [slack(recorder)], FakeClock())
        outbox(lifecycle()[0])
        outbox.dispatch_due()
        outbox(_reassessed("reset_gpu", 1))
        outbox(_reassessed("restart_node", 2))
        assert outbox.dispatch_due() == 1 and DISCARDED in outbox.counts()
    engine.dispose()
    _, _, _, half = fuzz._store_view(str(tmp_path / "gw.db"), tmp_path / "journal")
    assert half == []
    assert fuzz.settled(0, outbox.counts())
