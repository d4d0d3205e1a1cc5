"""Fixtures of the notifier tests: the local Slack API recorder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alerting.notifiers.recorder import SlackRecorder


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec
