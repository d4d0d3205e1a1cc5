"""How `gpuwarden serve` stops: the Slack presses still queued or running then."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerting import slack_interactions
from alerting.notifiers.blocks import ACTION_ACKNOWLEDGE
from alerting.notifiers.recorder import SlackRecorder
from alerting.outcomes import ActionOutcome
from gpuwarden.api import create_app
from gpuwarden.cli.serve_cmd import build_service
from gpuwarden.config import ApiConfig, GpuwardenConfig
from tests.alerting.notifiers.incidents import make_incident
from tests.alerting.slack_presses import SECRET, button_body, signed
from tests.gpuwarden.api_client import TOKEN, TestClient


def test_slack_presses_queued_when_serve_stops_are_cancelled_and_their_pressers_told_to_press_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Presses ran on an executor never shut down: those still queued at the stop were carried out after the
    store was closed, and the exit waited for all of them. Now the queued ones are cancelled (the presser told
    to press again) and the running ones are waited for a bounded time."""
    monkeypatch.setattr(slack_interactions, "ANSWER_WITHIN_SECONDS", 0.2)
    with SlackRecorder() as recorder:
        cfg = GpuwardenConfig()
        cfg.slack.bot_token = SecretStr("xoxb-test")
        cfg.slack.signing_secret = SecretStr(SECRET)
        cfg.slack.base_url = recorder.base_url
        engine, background, routes, _ = build_service(cfg, str(tmp_path / "s.db"))
        free, done = threading.Event(), []

        def acknowledge_outcome(incident_id: str, by: str) -> ActionOutcome:  # behind a long tick's lock
            assert free.wait(10)
            done.append(incident_id)
            return ActionOutcome(make_incident(incident_id))

        monkeypatch.setattr(engine, "acknowledge_outcome", acknowledge_outcome)
        app = create_app(
            engine, ApiConfig(token=SecretStr(TOKEN)), extra_routes=routes, background=background
        )
        presses = slack_interactions.PRESS_WORKERS + 2
        with TestClient(app) as client:

            def press(n: int) -> None:
                body = button_body(ACTION_ACKNOWLEDGE, f"inc-{n}", response_url=recorder.response_url)
                answer = client.post(
                    "/slack/interactions", content=body, headers=signed(body, int(time.time()))
                )
                assert answer.status_code == 200 and answer.json()["pending"] is True

            posts = [threading.Thread(target=press, args=(n,)) for n in range(presses)]
            for post in posts:
                post.start()
            for post in posts:
                post.join()
            started = time.monotonic()
        stopped = time.monotonic() - started
        free.set()
        time.sleep(0.5)
        told = [r["text"] for r in recorder.responses()]
    assert stopped < 5, "the stop waited for the presses"
    assert len(done) == slack_interactions.PRESS_WORKERS, "queued presses were carried out after the stop"
    assert len(told) == 2 and all("stopped" in t and "press again" in t for t in told), told
