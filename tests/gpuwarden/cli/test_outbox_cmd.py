"""`gpuwarden outbox` against a real `gpuwarden serve` whose Slack (the local stand-in) refused a token."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import Result
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, event, func, select, update

from alerting.engine import IncidentEngine
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.outbox_orphans import reconcile_orphans
from alerting.outbox_tables import DISCARDED, FAILED, ORPHANED, SENT, OutboxMessage
from gpuwarden import outbox_api
from gpuwarden.api import create_app
from gpuwarden.cli import app, outbox_cmd
from gpuwarden.cli.outbox_cmd import overtaken_said
from gpuwarden.clock import FakeClock, shown
from gpuwarden.config import ApiConfig
from tests.alerting.notifiers.incidents import lifecycle, reassessed
from tests.alerting.outbox_destinations import CLOCK, NOW, Destination, queued_for
from tests.gpuwarden.api_client import TestClient, route_httpx
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.http_stub import FixedAnswer
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_serve
from tests.migrated_store import migrated_sqlite

runner = BuiltCliRunner()


def _wait(what: str, check: object, seconds: float = 60.0) -> None:
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
        # Slack refuses the call's arguments (invalid_arguments), which no retry fixes. (A revoked token holds
        # the messages instead, none failed.)
        slack.fail_next("chat.postMessage", status=200, error="invalid_arguments")
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
            assert "invalid_arguments" in failed["last_error"] and failed["next_attempt_at"] is None
            table = runner.invoke(app, ["outbox", "list", "--url", url])
            assert "failed 1" in table.stdout and "invalid_arguments" in table.stdout
            assert failed["event"] == "opened" and "opened" in table.stdout  # what the message was
            assert "gpuwarden outbox retry" in table.stderr

            # Someone fixes the token (the stand-in refused that one call only).
            refused = runner.invoke(app, ["outbox", "retry", "--url", url], env={"GPUWARDEN_API_TOKEN": ""})
            assert refused.exit_code == 1 and "401" in refused.stderr
            retried = runner.invoke(
                app, ["outbox", "retry", "--url", url], env={"GPUWARDEN_API_TOKEN": TOKEN}
            )
            assert retried.exit_code == 0 and "queued again: 1" in retried.stdout
            went = {"pending": 0, "sending": 0, "sent": 1, "failed": 0, "orphaned": 0, "discarded": 0}
            _wait("the message to go out", lambda: listed()["counts"] == went)
            assert [m.text for m in slack.channel_messages()] == ["P2 node n1 is down: 1 node (triggered)"]
            bad = runner.invoke(app, ["outbox", "list", "--url", url, "--status", "lost"])
            assert bad.exit_code == 2 and "pending, sending, sent, failed" in bad.stderr


URL = "http://gpuwarden.test"


@contextmanager
def _serving_orphans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Outbox]:
    """serve's app, reached by the CLI at ``URL`` in process, over a store where webhook:gone (removed from
    the config) left 5 orphaned messages and webhook:ops 5 failed ones; slack sent its 5."""
    sql = migrated_sqlite(tmp_path / "outbox.db")
    queued_for(sql, Destination("slack"), Destination("webhook:gone", mode="down"))
    queued_for(sql, Destination("webhook:ops", mode="refused"))
    reconcile_orphans(sql, ["slack", "webhook:ops"], now=NOW)
    outbox = Outbox(sql, [Destination("slack"), Destination("webhook:ops")], CLOCK)
    with _serving(sql, outbox, monkeypatch):
        yield outbox


@contextmanager
def _serving(sql: Engine, outbox: Outbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """serve's app over the store ``sql`` and its ``outbox``, reached by the CLI at ``URL`` in process."""
    engine = IncidentEngine(sql, FakeClock())
    app_ = create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)
    with TestClient(app_, base_url=URL) as client:
        route_httpx(client, URL, monkeypatch)
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
        yield


def _discard(*args: str, answer: str | None = None) -> Result:
    return runner.invoke(app, ["outbox", "discard", "--url", URL, *args], input=answer)


def test_discard_asks_first_then_drops_the_orphaned_messages_recording_who_did_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _serving_orphans(tmp_path, monkeypatch) as outbox:
        kept = {SENT: 5, ORPHANED: 5, FAILED: 5}
        declined = _discard("--notifier", "webhook:gone", "--by", "alice", answer="n\n")
        assert declined.exit_code == 1 and "discard 5 orphaned messages of 'webhook:gone'" in declined.stderr
        assert "nothing discarded: answer y, or pass --yes" in declined.stderr
        unanswered = _discard("--notifier", "webhook:gone", answer="")  # a script, stdin closed
        assert unanswered.exit_code == 1 and "nothing discarded" in unanswered.stderr
        assert outbox.counts() == kept

        done = _discard("--notifier", "webhook:gone", "--by", "alice", answer="y\n")
        assert done.exit_code == 0, done.output
        assert "discarded 5 messages of 'webhook:gone' (orphaned 5)" in done.stdout
        assert outbox.counts() == {SENT: 5, DISCARDED: 5, FAILED: 5}, "failed ones are not touched unasked"
        listed = runner.invoke(app, ["outbox", "list", "--url", URL, "--status", "discarded", "-o", "json"])
        gone = json.loads(listed.stdout)["messages"]
        assert {m["notifier"] for m in gone} == {"webhook:gone"} and len(gone) == 5
        assert gone[0]["last_error"].startswith("discarded by alice at 2026-01-01T00:00:00Z (was orphaned")
        table = runner.invoke(app, ["outbox", "list", "--url", URL])
        assert "discarded 5" in table.stdout


def test_discard_drops_only_the_messages_the_question_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asked "discard 5 failed messages?", the operator said yes; a sixth failed meanwhile (a new page the
    # receiver refused) and went too, never seen: the discard took what matched when it came, not what was
    # asked. It takes the messages the question counted (sent in parts: 2 ids a request here).
    confirm = outbox_cmd._confirm
    monkeypatch.setattr(outbox_cmd, "IDS_PER_REQUEST", 2)

    def one_more_fails(planned: dict[str, object]) -> None:
        confirm(planned)
        if planned["notifier"] != "webhook:ops":
            return
        with sql.begin() as conn:
            first_sent = conn.scalar(select(func.min(OutboxMessage.id)).where(OutboxMessage.status == SENT))
            conn.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == first_sent)
                .values(notifier="webhook:ops", status=FAILED, idempotency_key="another-page")
            )

    monkeypatch.setattr(outbox_cmd, "_confirm", one_more_fails)
    with _serving_orphans(tmp_path, monkeypatch) as outbox:
        sql = outbox._sessions.kw["bind"]
        done = _discard("--notifier", "webhook:ops", "--status", "failed", answer="y\n")
        assert done.exit_code == 0, done.output
        assert (
            "discarded 5 messages of 'webhook:ops' (failed 5)" in done.stdout and "note:" not in done.stderr
        )
        assert outbox.counts() == {SENT: 4, FAILED: 1, ORPHANED: 5, DISCARDED: 5}, "the new one is kept"
        (kept,) = outbox.messages(FAILED)
        assert kept.idempotency_key == "another-page"
        as_json = _discard("--notifier", "webhook:gone", "-o", "json", answer="y\n")
        assert as_json.exit_code == 0 and "note:" not in as_json.stderr
        answer = json.loads(as_json.stdout[as_json.stdout.index("{") :])  # after the echoed answer
        assert answer["discarded"] == {"orphaned": 5} and answer["total"] == 5 and len(answer["ids"]) == 5


def test_discard_with_yes_and_json_takes_failed_messages_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _serving_orphans(tmp_path, monkeypatch) as outbox:
        unasked = _discard("--notifier", "webhook:ops", "--yes", "-o", "json")
        assert unasked.exit_code == 0 and json.loads(unasked.stdout)["total"] == 0
        asked = _discard("--notifier", "webhook:ops", "--status", "failed", "--yes", "-o", "json")
        assert asked.exit_code == 0, asked.output
        assert json.loads(asked.stdout) == {
            "notifier": "webhook:ops",
            "discarded": {"failed": 5},
            "total": 5,
            "dry_run": False,
            "ids": [m.id for m in outbox.messages(DISCARDED)],
        }
        assert outbox.counts() == {SENT: 5, ORPHANED: 5, DISCARDED: 5}


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (
            ["--notifier", "webhook:gnoe", "--yes"],
            {},
            "HTTP 404: notifier: no message of notifier 'webhook:gnoe' is stored",
        ),
        (["--notifier", "webhook:gone", "--yes"], {"GPUWARDEN_API_TOKEN": ""}, "HTTP 401"),
    ],
    ids=["unknown-notifier", "no-token"],
)
def test_discard_refuses_what_it_must_not_touch_with_a_clear_error_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], said: str
) -> None:
    with _serving_orphans(tmp_path, monkeypatch) as outbox:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        refused = _discard(*args)
        assert refused.exit_code == 1 and said in " ".join(refused.stderr.split()), refused.stderr
        assert outbox.counts() == {SENT: 5, ORPHANED: 5, FAILED: 5}


def test_retry_and_discard_of_an_incident_that_does_not_exist_say_so_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `outbox retry --incident inc-nope` said "queued again: 0" and exited 0, as for an incident with no
    # failed message; `incidents show inc-nope` says there is no such incident (404) and exits 1.
    with _serving_orphans(tmp_path, monkeypatch) as outbox:
        for command in (["retry"], ["discard", "--notifier", "webhook:ops", "--status", "failed", "--yes"]):
            typo = runner.invoke(app, ["outbox", *command, "--url", URL, "--incident", "inc-nope"])
            said = " ".join(typo.stderr.split())
            assert typo.exit_code == 1 and "HTTP 404: incident: no incident 'inc-nope'" in said, typo.output
        assert outbox.counts() == {SENT: 5, ORPHANED: 5, FAILED: 5}


@pytest.mark.parametrize("output", ["table", "json"])
def test_list_of_an_incident_that_does_not_exist_says_so_naming_the_option_as_retry_does_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    # `outbox list --incident inc-nope` (a typo) said "No messages found (incident inc-nope)" and exited 0, as
    # for an incident whose messages all went elsewhere, where retry and discard say there is no such one.
    with _serving_orphans(tmp_path, monkeypatch):
        typo = runner.invoke(app, ["outbox", "list", "--url", URL, "--incident", "inc-nope", "-o", output])
    # Said as retry and discard say it: "id: no incident 'inc-nope'" named serve's path, not the option.
    said = " ".join(typo.stderr.split())
    assert said == "error: HTTP 404: incident: no incident 'inc-nope' (incidents list shows them)", said
    assert typo.exit_code == 1 and typo.stdout == "", typo.output


def test_list_json_counts_every_status_as_the_table_does_zeros_included() -> None:
    """serve counts only the statuses it holds messages in: ``-o json`` said ``"counts": {}`` (or lacked
    ``failed``) where the table said ``failed 0``, and a script's ``counts["failed"]`` raised KeyError."""
    stub = FixedAnswer(200, json.dumps({"counts": {"sent": 3}, "messages": []}).encode())
    try:
        result = runner.invoke(app, ["outbox", "list", "--url", stub.url, "-o", "json"])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]
    assert counts == {"pending": 0, "sending": 0, "sent": 3, "failed": 0, "orphaned": 0, "discarded": 0}


def test_list_shows_a_receivers_error_as_sent_and_cuts_no_name_at_a_narrow_terminal() -> None:
    """The table went through rich markup: an error ending in a backslash was shown with two; and at an
    80-column terminal rich cut the notifier `outbox discard --notifier` takes to "webh…"."""
    error = "HTTP 400: [bold]unknown field[/bold] [/] in C:\\hooks\\"
    message = {
        "id": 7,
        "notifier": "webhook:ops",
        "incident_id": "inc-746c1a2b9f0e",
        "event": "reassessed",
        "status": "failed",
        "attempts": 1,
        "next_attempt_at": None,
        "last_error": error,
    }
    stub = FixedAnswer(200, json.dumps({"counts": {"failed": 1}, "messages": [message]}).encode())
    try:
        piped = runner.invoke(app, ["outbox", "list", "--url", stub.url])
        narrow = runner.invoke(app, ["outbox", "list", "--url", stub.url], env={"COLUMNS": "80"})
    finally:
        stub.close()
    assert piped.exit_code == narrow.exit_code == 0, piped.output
    (row,) = [line for line in piped.stdout.splitlines() if "inc-746c1a2b9f0e" in line]
    assert f"│ {error} │" in row
    (first,) = [line for line in narrow.stdout.splitlines() if "inc-746c1a2b9f0e" in line]
    assert all(f"│ {word} " in first for word in ("webhook:ops", "reassessed", "failed")), narrow.stdout
    assert "…" not in narrow.stdout


def test_list_says_when_it_shows_only_the_newest_of_more_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table stopped at --limit (100 by default) without a word, as `incidents list` does not: an
    operator looking for an old failed message took it for gone."""
    with _serving_orphans(tmp_path, monkeypatch):
        some = runner.invoke(app, ["outbox", "list", "--url", URL, "--limit", "4"])
        failed = runner.invoke(app, ["outbox", "list", "--url", URL, "--status", "failed", "--limit", "2"])
        every = runner.invoke(app, ["outbox", "list", "--url", URL, "--status", "failed"])
        # 0 lists all, as `incidents list --limit 0` does (it was refused: "greater than or equal to 1")
        whole = runner.invoke(app, ["outbox", "list", "--url", URL, "--limit", "0", "-o", "json"])
    assert some.exit_code == failed.exit_code == every.exit_code == whole.exit_code == 0, whole.output
    assert "showing the newest 4 of 15; --limit 0 lists all" in " ".join(some.stderr.split())
    assert "showing the newest 2 of 5; --limit 0 lists all" in " ".join(failed.stderr.split())
    assert "showing the newest" not in every.stderr
    assert len(json.loads(whole.stdout)["messages"]) == 15
    assert outbox_cmd.MOST_MESSAGES == outbox_api.MAX_MESSAGES  # what 0 asks serve for: all it lists


def test_list_shows_when_a_held_webhook_update_goes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A webhook's ``reassessed`` update waits ``edit_interval_seconds`` (300 by default) for a later one: the
    # table showed it "pending", 0 attempts, no error, for those 5 minutes, as it shows a message stuck; the
    # README said ``outbox list`` shows held updates with when they go. It says when each pending one goes.
    sql = migrated_sqlite(tmp_path / "outbox.db")
    clock = FakeClock(NOW)
    hook = WebhookNotifier(
        "http://127.0.0.1:9/hook", name="webhook:ops", edit_interval_seconds=300, clock=clock
    )
    outbox = Outbox(sql, [hook], clock)
    outbox(lifecycle()[0])
    outbox(reassessed("reset_gpu", 1))
    with _serving(sql, outbox, monkeypatch):
        table = runner.invoke(app, ["outbox", "list", "--url", URL])
        listed = runner.invoke(app, ["outbox", "list", "--url", URL, "-o", "json"])
    hook.close()
    assert table.exit_code == listed.exit_code == 0, table.output
    held = datetime.fromtimestamp(NOW + 300, UTC)
    (row,) = [line for line in table.stdout.splitlines() if "reassessed" in line]
    assert "pending" in row and shown(held) in row
    # As ``gpuwarden_outbox_messages`` counts it: held on purpose, not backlog (the opening is).
    assert "pending 2 (held 1)," in table.stdout
    assert json.loads(listed.stdout)["held"] == 1


def test_list_counts_the_held_among_the_pending_it_counts_as_a_message_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve counted the statuses and then, in a read of its own, the held: an update stored between the two
    # was held and not pending, "pending 0 (held 1)". One read counts both.
    sql = migrated_sqlite(tmp_path / "outbox.db")
    clock = FakeClock(NOW)
    hook = WebhookNotifier(
        "http://127.0.0.1:9/hook", name="webhook:ops", edit_interval_seconds=300, clock=clock
    )
    outbox = Outbox(sql, [hook], clock)
    outbox(lifecycle()[0])
    with sql.begin() as conn:
        conn.execute(update(OutboxMessage).values(status=SENT))
    stored: list[int] = []

    def store_an_update(_conn: Connection, _cursor: object, statement: str, *_args: object) -> None:
        if not stored and "count(" in statement and "notification_outbox" in statement:
            stored.append(outbox.enqueue(reassessed("reset_gpu", 1)))

    event.listen(sql, "after_cursor_execute", store_an_update)
    with _serving(sql, outbox, monkeypatch):
        listed = runner.invoke(app, ["outbox", "list", "--url", URL, "-o", "json"])
    hook.close()
    assert listed.exit_code == 0 and stored == [1], listed.output
    data = json.loads(listed.stdout)
    assert data["held"] <= data["counts"]["pending"], data


def test_list_json_cut_at_the_limit_says_so_on_stderr_and_prints_the_same_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``-o json`` a listing cut at --limit said nothing (the table's note was left out with the
    table), so a script's log showed 4 messages where 15 matched; stdout stays the documented object."""
    with _serving_orphans(tmp_path, monkeypatch):
        some = runner.invoke(app, ["outbox", "list", "--url", URL, "--limit", "4", "-o", "json"])
        every = runner.invoke(app, ["outbox", "list", "--url", URL, "-o", "json"])
    assert some.exit_code == every.exit_code == 0, some.output
    assert "showing the newest 4 of 15; --limit 0 lists all" in " ".join(some.stderr.split())
    assert every.stderr == ""
    listed = json.loads(some.stdout)
    assert set(listed) == set(json.loads(every.stdout)) and len(listed["messages"]) == 4


def test_retry_prints_its_answer_as_json_with_o_json_as_discard_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``outbox retry`` had no ``-o``: a script parsed "queued again: 5" out of the text."""
    with _serving_orphans(tmp_path, monkeypatch) as outbox:
        retried = runner.invoke(app, ["outbox", "retry", "--url", URL, "-o", "json"])
        assert retried.exit_code == 0, retried.output
        assert json.loads(retried.stdout) == {"requeued": 5, "overtaken": 0}
        assert outbox.counts().get(FAILED, 0) == 0  # queued again, not only said to be
        bad = runner.invoke(app, ["outbox", "retry", "--url", URL, "-o", "yaml"])
        assert bad.exit_code == 2 and "--output 'yaml': use one of table, text, json" in bad.stderr


@pytest.mark.parametrize(
    ("count", "said"),
    [
        (1, "1 failed message stays failed: a later message of its incident was sent since, and sending it"),
        (
            3,
            "3 failed messages stay failed: a later message of their incident was sent since, and sending",
        ),
    ],
)
def test_overtaken_messages_are_explained_for_slack_and_webhooks_alike(count: int, said: str) -> None:
    # A webhook-only serve was told "would set its Slack message back", of a Slack message it never had.
    text = overtaken_said(count)
    assert text.startswith(said) and "(its Slack message, a webhook receiver's copy)" in text


def test_discard_asks_on_stderr_and_leaves_stdout_to_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: ``-o json`` prints the document on stdout alone. The question was asked with click's confirm,
    which reads the answer with ``input(" ")``: its space (and, under a test runner, the echoed answer) went
    to stdout before the JSON and the table."""
    with _serving_orphans(tmp_path, monkeypatch):
        as_json = _discard("--notifier", "webhook:gone", "-o", "json", answer="y\n")
        assert as_json.exit_code == 0, as_json.output
        assert json.loads(as_json.stdout)["discarded"] == {"orphaned": 5}, as_json.stdout
        assert as_json.stdout.startswith("{"), repr(as_json.stdout)
        said = " ".join(as_json.stderr.split())
        assert (
            "discard 5 orphaned messages of 'webhook:gone' for good? They will never be sent [y/N]:" in said
        )
        again = _discard("--notifier", "webhook:ops", "--status", "failed", answer="maybe\nn\n")
        assert again.exit_code == 1 and again.stdout == "", repr(again.stdout)
        assert "Error: invalid input" in again.stderr and "nothing discarded" in again.stderr


@pytest.mark.parametrize("columns", ["60", "40"])
def test_list_at_a_terminal_too_narrow_for_the_table_keeps_every_column(columns: str) -> None:
    """Below about 70 columns rich gave attempts, next attempt and last error no width and dropped them."""
    message = {
        "id": 7,
        "notifier": "webhook:ops",
        "incident_id": "inc-746c1a2b9f0e",
        "event": "reassessed",
        "status": "pending",
        "attempts": 3,
        "next_attempt_at": "2026-12-07T14:50:00Z",
        "last_error": "HTTP 503: unavailable",
    }
    stub = FixedAnswer(200, json.dumps({"counts": {"pending": 1}, "messages": [message]}).encode())
    try:
        result = runner.invoke(app, ["outbox", "list", "--url", stub.url], env={"COLUMNS": columns})
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    for said in ("attempts: 3", "last error: HTTP 503: unavailable", "incident: inc-746c1a2b9f0e"):
        assert said in lines, result.stdout
    assert any(line.startswith("next attempt: ") and "2026-12-07" in line for line in lines), result.stdout
