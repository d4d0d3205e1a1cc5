"""`gpuwarden serve` with a configured webhook, to a local HTTP receiver: an outage and a SIGKILL in the
middle of a POST lose nothing and duplicate nothing a receiver cannot drop by its ``Idempotency-Key``.

Before, serve built its outbox with Slack only: a ``webhooks:`` section was an unknown field.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.http_stub import LocalServer, QuietHandler
from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve

HOOK_TOKEN = "hook-token-for-the-test"
ALERT = {"alertname": "GPUFellOffTheBus", "cluster": "c1", "rack": "r01", "Hostname": "n1", "gpu": "3"}


class Receiver:
    """What the receiver does with each POST (``mode``: up, down or hang) and what it got."""

    def __init__(self) -> None:
        self.mode = "down"
        self.lock = threading.Lock()
        self.attempts: list[dict[str, Any]] = []  # every POST: headers and body, whatever it answered
        self.accepted: list[dict[str, Any]] = []  # bodies answered 200 (or held when serve died)
        self.held = threading.Event()  # a POST arrived in "hang" mode
        self.release = threading.Event()

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        payload = json.loads(body)
        with self.lock:
            self.attempts.append({"headers": headers, "body": payload, "raw": body})
            mode = self.mode
            if mode == "hang":  # the receiver has it; serve dies before it hears the answer
                self.accepted.append(payload)
                self.mode = "up"
        if mode == "down":
            return 503
        if mode == "hang":
            self.held.set()
            self.release.wait(60)
            return 200
        with self.lock:
            self.accepted.append(payload)
        return 200

    def changes(self) -> list[str]:
        with self.lock:
            return [b["change"] for b in self.accepted]


@contextmanager
def receiving() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # serve was killed while this POST was held
                pass

    server = LocalServer(Handler)
    try:
        yield receiver, f"{server.url}/hooks/oncall"
    finally:
        receiver.release.set()
        server.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


def post_alert(url: str, *, resolved: bool = False) -> None:
    alert: dict[str, Any] = {"labels": ALERT}
    if resolved:
        alert["endsAt"] = "2000-01-01T00:00:00Z"
    response = http_probe.post(f"{url}/api/v2/alerts", json=[alert], headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text


def metric(url: str, line_start: str) -> float:
    for line in http_probe.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics")


@pytest.mark.integration
def test_a_webhook_survives_a_receiver_outage_and_a_sigkill_losing_and_duplicating_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", HOOK_TOKEN)  # serve inherits it: the config refers to it
    db = str(tmp_path / "gw.db")
    with receiving() as (receiver, hook_url):
        config = tmp_path / "gpuwarden.yaml"
        config.write_text(
            "alerting:\n  tick_interval_seconds: 0.2\n  quiet_period_seconds: 0\n"
            "  announce_delay_seconds: 0\n"
            f"webhooks:\n  - name: oncall\n    url: {hook_url}\n    bearer_token: {{env: HOOK_TOKEN}}\n"
        )
        args = ["--config", str(config)]
        with gpuwarden_serve(tmp_path, db, "first", args) as (url, first):
            # The receiver is down: "opened" is retried (503), not dropped.
            post_alert(url)
            wait_for("two refused attempts", lambda: len(receiver.attempts) >= 2)
            assert receiver.accepted == []
            # Counted once serve has read the 503, after the receiver counted the attempt: waited for (on
            # a loaded machine the second attempt's answer was still on its way, and this read 1).
            retries = 'gpuwarden_notification_retries_total{notifier="webhook:oncall"}'
            wait_for("two retries counted", lambda: metric(url, retries) >= 2)
            receiver.mode = "up"
            wait_for("opened delivered", lambda: receiver.changes() == ["opened"])
            [incident] = http_probe.get(f"{url}/api/v1/incidents", headers=AUTH, timeout=10).json()
            note = {"text": "looking at n1", "by": "test"}
            response = http_probe.post(
                f"{url}/api/v1/incidents/{incident['id']}/notes", json=note, headers=AUTH, timeout=10
            )
            assert response.status_code == 200, response.text
            wait_for("the note delivered", lambda: receiver.changes() == ["opened", "updated"])
            # The next POST reaches the receiver, and serve is killed before it hears the answer.
            receiver.mode = "hang"
            post_alert(url, resolved=True)
            wait_for("a POST held", receiver.held.is_set)
            first.send_signal(signal.SIGKILL)
            first.wait()
        receiver.release.set()
        held = receiver.accepted[-1]

        key = held["idempotency_key"]

        def all_told() -> bool:
            keys = [b["idempotency_key"] for b in receiver.accepted]
            return keys.count(key) == 2 and receiver.changes()[-1] == "resolved"

        def all_sent() -> bool:
            counts = http_probe.get(f"{url}/api/v1/outbox", headers=AUTH, timeout=10).json()["counts"]
            return set(counts) == {"sent"}

        with gpuwarden_serve(tmp_path, db, "second", args) as (url, _):
            wait_for("the held POST again, then resolved", all_told)
            wait_for("every message marked sent", all_sent)
            messages = http_probe.get(f"{url}/api/v1/outbox", headers=AUTH, timeout=10).json()["messages"]
            assert metric(url, 'gpuwarden_notifications_sent_total{notifier="webhook:oncall"}') >= 1

    keys = [b["idempotency_key"] for b in receiver.accepted]
    # Only the POST serve died in is there twice, with the same key and body: the receiver drops the repeat.
    assert [k for k in keys if keys.count(k) > 1] == [key, key]
    assert len({a["raw"] for a in receiver.attempts if a["body"]["idempotency_key"] == key}) == 1
    told = list({b["idempotency_key"]: b for b in receiver.accepted}.values())  # the receiver's dedupe
    # Each message of the outbox once, in its order, and nothing else.
    assert [m["notifier"] for m in messages] == ["webhook:oncall"] * len(told)
    assert [m["event"] for m in messages] == [
        "escalation"
        if b["event"]["escalated"]
        else b["event"]["kind"]
        if b["change"] == "updated"
        else b["change"]
        for b in told
    ]
    changes = [b["change"] for b in told]
    assert (
        changes[:2] == ["opened", "updated"] and changes[-1] == "resolved" and changes.count("resolved") == 1
    )
    assert told[1]["event"]["kind"] == "note"
    assert [b["first_for_receiver"] for b in told] == [True] + [False] * (len(told) - 1)
    assert {b["incident"]["id"] for b in told} == {incident["id"]}
    for attempt in receiver.attempts:  # a retry keeps its key; every POST carries the token
        assert attempt["headers"]["idempotency-key"] == attempt["body"]["idempotency_key"]
        assert attempt["headers"]["authorization"] == f"Bearer {HOOK_TOKEN}"


@pytest.mark.integration
def test_a_webhook_url_holding_a_credential_never_reaches_serves_log(tmp_path: Path) -> None:
    """httpx logged each POST at INFO with the whole URL: the path and query secret at every delivery."""
    with receiving() as (receiver, hook_url):
        receiver.mode = "up"
        secret_url = f"{hook_url}/T000/B000/XOXSECRETPATH?api_key=QUERYSECRET123"
        config = tmp_path / "gpuwarden.yaml"
        config.write_text(
            "alerting:\n  tick_interval_seconds: 0.2\n  announce_delay_seconds: 0\n"
            f"webhooks:\n  - name: oncall\n    url: '{secret_url}'\n"
        )
        with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), "serve", ["--config", str(config)]) as (
            url,
            _,
        ):
            post_alert(url)
            wait_for("opened delivered", lambda: receiver.changes() == ["opened"])
            wait_for(
                "marked sent",
                lambda: (
                    http_probe.get(f"{url}/api/v1/outbox", headers=AUTH, timeout=10).json()["counts"]
                    == {"sent": 1}
                ),
            )
    log = (tmp_path / "serve.log").read_text()
    assert "notifier: webhook:oncall" in log  # the log is the one serve wrote
    assert "SECRET" not in log


@pytest.mark.integration
def test_a_post_in_flight_at_the_second_stop_signal_is_let_finish_and_marked_sent(tmp_path: Path) -> None:
    """A second Ctrl-C while a POST waited for its answer ended serve at once: the message stayed
    ``sending`` and the next start POSTed it again as after a crash, though the receiver answered 200 a
    moment later. serve now lets a send in flight finish (5 s at most) and starts none after it."""
    db = tmp_path / "gw.db"
    with receiving() as (receiver, hook_url):
        config = tmp_path / "gpuwarden.yaml"
        config.write_text(
            "alerting:\n  tick_interval_seconds: 0.2\n  announce_delay_seconds: 0\n"
            f"webhooks:\n  - name: oncall\n    url: {hook_url}\n"
        )
        with gpuwarden_serve(tmp_path, str(db), "serve", ["--config", str(config)]) as (url, serve):
            receiver.mode = "hang"
            post_alert(url)
            wait_for("a POST held", receiver.held.is_set)
            serve.send_signal(signal.SIGINT)
            time.sleep(0.2)
            serve.send_signal(signal.SIGINT)
            time.sleep(0.5)
            receiver.release.set()  # the receiver answers 200 after the second signal
            assert serve.wait(timeout=30) == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, attempts FROM notification_outbox").fetchall()
    assert rows == [("sent", 1)], (tmp_path / "serve.log").read_text()[-3000:]
    assert len(receiver.attempts) == 1
