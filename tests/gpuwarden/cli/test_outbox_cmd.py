"""`gpuwarden outbox` against a real `gpuwarden serve` whose Slack (the local stand-in) refused a token."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from alerting.notifiers.recorder import SlackRecorder
from gpuwarden.cli import app
from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve

runner = CliRunner()


def _wait(what: str, check: object, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.integration
def test_failed_messages_are_listed_with_their_error_and_go_out_once_queued_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SlackRecorder() as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)  # serve inherits it
        config = tmp_path / "gw.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "alerting": {"announce_delay_seconds": 0, "tick_interval_seconds": 0.2},
                    "slack": {
                        "bot_token": {"env": "SLACK_BOT_TOKEN"},
                        "base_url": slack.base_url,
                        "channel": "#gpu",
                    },
                }
            )
        )
        # A revoked token: Slack answers invalid_auth, which no retry fixes.
        slack.fail_next("chat.postMessage", status=200, error="invalid_auth")
        with gpuwarden_serve(tmp_path, str(tmp_path / "o.db"), extra_args=["--config", str(config)]) as (
            url,
            _,
        ):
            alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "n1"}}
            assert (
                httpx.post(f"{url}/api/v2/alerts", json=[alert], headers=AUTH, timeout=10).status_code == 200
            )

            def listed(*args: str) -> dict[str, object]:
                result = runner.invoke(app, ["outbox", "list", "--url", url, "-o", "json", *args])
                assert result.exit_code == 0, result.output
                return json.loads(result.stdout)  # type: ignore[no-any-return]

            _wait("the message to fail", lambda: listed()["counts"].get("failed"))  # type: ignore[union-attr]
            (failed,) = listed("--status", "failed")["messages"]  # type: ignore[misc]
            assert "invalid_auth" in failed["last_error"] and failed["next_attempt_at"] is None
            table = runner.invoke(app, ["outbox", "list", "--url", url])
            assert "failed 1" in table.stdout and "invalid_auth" in table.stdout
            assert failed["event"] == "opened" and "opened" in table.stdout  # what the message was
            assert "gpuwarden outbox retry" in table.stderr

            # Someone fixes the token (the stand-in refused that one call only).
            refused = runner.invoke(app, ["outbox", "retry", "--url", url], env={"GPUWARDEN_API_TOKEN": ""})
            assert refused.exit_code == 1 and "401" in refused.stderr
            retried = runner.invoke(app, ["outbox", "retry", "--url", url])
            assert retried.exit_code == 0 and "queued again: 1" in retried.stdout
            _wait("the message to go out", lambda: listed()["counts"] == {"sent": 1})
            assert [m.text for m in slack.channel_messages()] == ["P2 node n1 is down: 1 node (triggered)"]
            bad = runner.invoke(app, ["outbox", "list", "--url", url, "--status", "lost"])
            assert bad.exit_code == 1 and "pending, sending, sent, failed" in bad.stderr
