"""The store's memory of handled Slack requests: one use per signature, forgotten once past the window."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.migrate import upgrade
from alerting.slack_replays import REPLAY_WINDOW_SECONDS, HandledSlackRequests


@pytest.fixture
def handled(tmp_path: Path) -> HandledSlackRequests:
    sql = make_engine(str(tmp_path / "s.db"))
    upgrade(sql)
    return HandledSlackRequests(sql)


def test_a_signature_is_a_first_use_once(handled: HandledSlackRequests) -> None:
    assert handled.first_use("v0=aa", 1000, 1000) is True
    assert handled.first_use("v0=aa", 1000, 1200) is False
    assert handled.first_use("v0=bb", 1000, 1200) is True


def test_requests_past_the_replay_window_are_pruned_and_those_within_it_kept(
    handled: HandledSlackRequests,
) -> None:
    handled.first_use("v0=old", 1000, 1000)
    handled.first_use("v0=recent", 1000 + REPLAY_WINDOW_SECONDS, 1000 + REPLAY_WINDOW_SECONDS)
    later = 1001 + 2 * REPLAY_WINDOW_SECONDS  # "old" can no longer verify; "recent" still could
    handled.first_use("v0=new", later, later)
    assert handled.count() == 2
    assert handled.first_use("v0=recent", 1000 + REPLAY_WINDOW_SECONDS, later) is False
