"""How `gpuwarden serve` stops: a second stop signal, and the Slack presses still queued or running then."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from alerting import slack_interactions
from alerting.db import make_engine
from alerting.notifiers.blocks import ACTION_ACKNOWLEDGE
from alerting.notifiers.recorder import SlackRecorder
from alerting.outcomes import ActionOutcome
from gpuwarden.api import create_app
from gpuwarden.cli.serve_cmd import build_service
from gpuwarden.config import ApiConfig, GpuwardenConfig
from tests.alerting.notifiers.incidents import make_incident
from tests.alerting.slack_presses import SECRET, button_body, signed
from tests.gpuwarden.api_client import TOKEN, TestClient
from tests.integration.servers import free_port, wait_http_ok


def test_a_second_sigterm_stops_serve_at_once_with_exit_0_and_what_was_answered_kept(tmp_path: Path) -> None:
    """A client stuck in the middle of its request body held serve's stop for the body's timeout, and a
    second SIGTERM (or Ctrl-C) changed nothing. The second signal now cuts the request and every wait of the
    shutdown; an alert answered 200 before is in the store."""
    port, token = free_port(), "second-sigterm-token-123"
    url = f"http://127.0.0.1:{port}"
    cfg = tmp_path / "gpuwarden.yaml"
    cfg.write_text("api:\n  body_timeout_seconds: 60\n")
    argv = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "serve", "--config", str(cfg)]
    argv += ["--port", str(port), "--db", str(tmp_path / "serve.db"), "--log-format", "text"]
    alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "rack": "r01", "node": "r01-n01"}}
    auth = {"Authorization": f"Bearer {token}"}
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "GPUWARDEN_API_TOKEN": token}
        )
        try:
            wait_http_ok(f"{url}/-/ready", proc)
            assert (
                httpx.post(f"{url}/api/v2/alerts", json=[alert], headers=auth, timeout=10).status_code == 200
            )
            with socket.create_connection(("127.0.0.1", port)) as stuck:  # a body that never comes whole
                stuck.sendall(
                    f"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{".encode()
                )
                time.sleep(0.5)
                proc.send_signal(signal.SIGTERM)
                time.sleep(1)
                assert proc.poll() is None, "the first SIGTERM waits for the request in flight"
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=30)
                took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = log.read_text()
    assert code == 0 and took < 10, said
    assert "serve: stopped at the second stop signal without waiting" in said, said
    assert "Traceback" not in said, said
    with make_engine(str(tmp_path / "serve.db")).connect() as conn:  # applied now, or at the next start
        stored = conn.execute(text("SELECT labels FROM alerts")).scalars().all()
    journaled = any(p.stat().st_size for p in (tmp_path / "serve.db.journal").rglob("*") if p.is_file())
    assert [json.loads(x)["node"] for x in stored] == ["r01-n01"] or journaled, said


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


def test_each_stop_signal_is_logged_when_it_comes_while_the_stop_waits_for_a_notification(
    tmp_path: Path,
) -> None:
    """With no request in flight nothing was said of either SIGTERM: the stop waited (a webhook being sent is
    let finish, 5 s at most) with the log silent, and the second signal showed only at the end. Both are said
    at once now; the stop still ends with exit 0, no traceback, the notification kept for the next start."""
    hook, port, token = socket.socket(), free_port(), "signal-log-token-12345"
    hook.bind(("127.0.0.1", free_port()))
    hook.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(hook.accept()[0]), daemon=True).start()
    cfg = tmp_path / "gpuwarden.yaml"
    cfg.write_text(f"webhooks:\n  - name: hook\n    url: http://127.0.0.1:{hook.getsockname()[1]}/x\n")
    argv = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "serve", "--config", str(cfg)]
    argv += ["--port", str(port), "--db", str(tmp_path / "serve.db"), "--log-format", "text"]
    alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "rack": "r01", "node": "r01-n01"}}
    log = tmp_path / "serve.log"
    with hook, log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "GPUWARDEN_API_TOKEN": token}
        )
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/-/ready", proc)
            auth = {"Authorization": f"Bearer {token}"}
            posted = httpx.post(
                f"http://127.0.0.1:{port}/api/v2/alerts", json=[alert], headers=auth, timeout=10
            )
            assert posted.status_code == 200
            deadline = time.monotonic() + 60
            while not accepted:  # the webhook is being sent, and is never answered
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            said_first = _logged(log, "SIGTERM: stopping; SIGTERM or Ctrl-C again stops at once")
            proc.send_signal(signal.SIGTERM)
            said_again = _logged(log, "SIGTERM again: stopping now, without waiting for the rest")
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for connection in accepted:
                connection.close()
    said = log.read_text()
    assert said_first and said_again, said
    assert said.index("SIGTERM again") < said.index("a notification still being sent after 5 s"), said
    assert code == 0 and "Traceback" not in said, said
    with make_engine(str(tmp_path / "serve.db")).connect() as conn:
        kept = conn.execute(text("SELECT status FROM notification_outbox")).scalars().all()
    assert kept and set(kept) <= {"pending", "sending"}, kept


def _logged(log: Path, line: str) -> bool:
    """Whether ``line`` is in ``log`` within 3 s (it is said at once; the stop waits 5 s for the webhook)."""
    deadline = time.monotonic() + 3
    while line not in log.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
