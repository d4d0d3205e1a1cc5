"""`gpuwarden incidents` against a real `gpuwarden serve` process and serve's app in process: the commands
end to end, servers that are not serve, and options taken in any case."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from alerting.engine import IncidentEngine
from gpuwarden.api import create_app
from gpuwarden.cli import app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import TestClient, route_httpx
from tests.gpuwarden.cli.incidents_answers import DETAIL, _invoke_against, runner, stdout_for
from tests.http_stub import FixedAnswer
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_serve
from tests.migrated_store import migrated_sqlite


@pytest.mark.integration
def test_list_show_ack_mitigate_note_silence_and_postmortem_through_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with gpuwarden_serve(tmp_path, str(tmp_path / "cli.db")) as (url, _):
        alert = {
            "labels": {"alertname": "NodeDown", "cluster": "c1", "rack": "r01", "node": "r01-n01"},
            "annotations": {"recommended_action": "restart_node"},
        }
        assert httpx.post(f"{url}/api/v2/alerts", json=[alert], headers=AUTH, timeout=10).status_code == 200

        listed = runner.invoke(app, ["incidents", "list", "--url", url, "--output", "json"])
        assert listed.exit_code == 0, listed.output
        (item,) = json.loads(listed.stdout)
        assert item["root_cause"]["kind"] == "node_down" and item["state"] == "triggered"

        shown = runner.invoke(app, ["incidents", "show", item["id"], "--url", url])
        assert shown.exit_code == 0 and "node r01-n01" in shown.stdout
        assert "recommended: restart_node" in shown.stdout
        as_json = runner.invoke(app, ["incidents", "show", item["id"], "--url", url, "-o", "json"])
        assert json.loads(as_json.stdout)["alerts"][0]["recommended_action"] == "restart_node"
        yaml_please = runner.invoke(app, ["incidents", "list", "--url", url, "-o", "yaml"])
        assert yaml_please.exit_code == 2 and "use one of table, text, json" in yaml_please.stderr

        monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
        refused = runner.invoke(app, ["incidents", "ack", item["id"], "--url", url])
        assert refused.exit_code == 1
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
        acked = runner.invoke(app, ["incidents", "ack", item["id"], "--url", url, "--by", "alice"])
        assert acked.exit_code == 0 and acked.stdout.strip() == f"{item['id']}: acknowledged"

        base = ["--url", url, "--by", "alice"]
        working = runner.invoke(
            app, ["incidents", "mitigate", item["id"], "--action", "reseating PSU", *base]
        )
        assert working.exit_code == 0 and working.stdout.strip() == f"{item['id']}: mitigating"
        retried = runner.invoke(
            app,
            ["incidents", "mitigate", item["id"], "--action", "reseating PSU", "--url", url, "--by", "bob"],
        )
        assert retried.exit_code == 0, retried.output
        assert retried.stdout.startswith(f"{item['id']}: already mitigating (reseating PSU) by alice since ")
        noted = runner.invoke(app, ["incidents", "note", item["id"], "PSU 2 was loose", *base])
        assert noted.exit_code == 0 and noted.stdout.strip() == f"{item['id']}: noted"
        hushed = runner.invoke(app, ["incidents", "silence", item["id"], "--for", "2h", *base])
        assert hushed.exit_code == 0 and hushed.stdout.splitlines()[0] == f"{item['id']}: silenced for 2h"
        hushed_again = runner.invoke(app, ["incidents", "silence", item["id"], "--for", "1h", "--url", url])
        assert hushed_again.exit_code == 0, hushed_again.output
        assert hushed_again.stdout.startswith(f"{item['id']}: already silenced until ")
        assert hushed_again.stdout.splitlines()[0].endswith(" by alice")
        assert "to lift it early: curl -X DELETE" in hushed_again.stdout.splitlines()[1]
        wrong = runner.invoke(app, ["incidents", "silence", item["id"], "--for", "2 hours", *base])
        assert wrong.exit_code == 2 and "duration" in wrong.stderr

        md = runner.invoke(app, ["incidents", "postmortem", item["id"], "--url", url])
        assert md.exit_code == 0 and md.stdout.startswith("# Postmortem draft: node r01-n01 is down")
        assert "acknowledged by alice" in md.stdout
        assert "mitigating: reseating PSU" in md.stdout and "note by alice: PSU 2 was loose" in md.stdout

        missing = runner.invoke(app, ["incidents", "show", "inc-none", "--url", url])
        assert missing.exit_code == 1

        other = {"labels": {"alertname": "NodeDown", "cluster": "c1", "rack": "r02", "node": "r02-n01"}}
        assert httpx.post(f"{url}/api/v2/alerts", json=[other], headers=AUTH, timeout=10).status_code == 200
        capped = runner.invoke(app, ["incidents", "list", "--url", url, "--limit", "1"])
        assert capped.exit_code == 0, capped.output
        assert "r02-n01" in capped.stdout and "r01-n01" not in capped.stdout  # newest first
        assert "showing the newest 1 of 2; --limit 0 lists all" in capped.stderr
        everything = runner.invoke(app, ["incidents", "list", "--url", url, "--limit", "0"])
        assert "r01-n01" in everything.stdout and "showing" not in everything.stderr
        typo = runner.invoke(app, ["incidents", "list", "--url", url, "--state", "open"])
        assert typo.exit_code == 2 and "state" in typo.stderr


@pytest.mark.parametrize(
    "argv",
    [["incidents", "list"], ["inventory", "nodes"], ["outbox", "list"]],
    ids=["incidents", "inventory", "outbox"],
)
def test_an_unreachable_server_exits_1_as_loadgen_and_sim_inject_do(argv: list[str]) -> None:
    """A server that cannot be reached is a failure of the run (1), not of the command line (2): these
    commands exited 2, which scripts read as a typo in their options, while loadgen and sim inject exit 1."""
    result = runner.invoke(app, [*argv, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "cannot connect to http://127.0.0.1:9" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>hi</html>"),
        (200, b""),
        (200, b"[1, 2]"),
        (200, b"null"),
        (200, b'{"x": 1}'),
        (500, b"[1]"),
    ],
    ids=["html", "empty", "list", "null", "other-object", "error-list"],
)
@pytest.mark.parametrize(
    "argv",
    [
        ["incidents", "list"],
        ["incidents", "show", "inc-1"],
        ["incidents", "ack", "inc-1"],
        ["inventory", "nodes"],
    ],
    ids=["list", "show", "ack", "inventory"],
)
def test_a_server_that_is_not_gpuwarden_is_named_not_a_traceback(
    status: int, body: bytes, argv: list[str]
) -> None:
    stub = FixedAnswer(status, body)
    try:
        result = runner.invoke(app, [*argv, "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "did not answer as gpuwarden serve does" in result.output or f"HTTP {status}" in result.output


@pytest.mark.parametrize("output", ["json", "table"])
def test_a_total_count_that_is_not_a_number_is_named_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """``X-Total-Count: many`` (not serve: it sends the number) raised ValueError out of the command, a
    traceback; with ``-o json`` too since fix/audit3 read it there for the stderr note."""

    def answer(method: str, target: str, **_: object) -> httpx.Response:
        request = httpx.Request(method, target)
        return httpx.Response(200, json=[], headers={"X-Total-Count": "many"}, request=request)

    monkeypatch.setattr(httpx, "request", answer)
    result = runner.invoke(app, ["incidents", "list", "--url", "http://gpuwarden.test", "-o", output])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    said = " ".join(result.stderr.split())
    assert "did not answer as gpuwarden serve does (X-Total-Count 'many' is not a whole number)" in said


def test_an_incident_id_is_sent_as_one_path_segment_and_an_empty_one_is_refused() -> None:
    stub = FixedAnswer(404, b'{"error": "no such incident"}')
    try:
        runner.invoke(app, ["incidents", "note", "inc-x?y#z", "hello", "--url", stub.url])
        empty = runner.invoke(app, ["incidents", "show", "", "--url", stub.url])
        # serve routes on the decoded path: `a/../b` reached incident b's notes, `inc-1/postmortem` the
        # postmortem ("not JSON; is --url right?"), `inc-1/` a redirect; no id holds a "/"
        slashed = [
            runner.invoke(app, [*command, "--url", stub.url])
            for command in (
                ["incidents", "note", "inc-x/../inc-y", "hello"],
                ["incidents", "show", "inc-1/postmortem"],
                ["incidents", "show", "inc-1/"],
            )
        ]
    finally:
        stub.close()
    assert stub.paths == ["/api/v1/incidents/inc-x%3Fy%23z/notes"]  # the slashed ones sent nothing
    assert empty.exit_code == 2 and "INCIDENT_ID '': empty" in empty.output  # no request: a bad argument
    for result in slashed:
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "an incident's id holds no '/'" in said, said


SERVED = "http://gpuwarden.test"
NODE_DOWN = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}


@contextmanager
def _node_down_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, IncidentEngine, str]]:
    """serve's app, which the CLI reaches at ``SERVED`` (no port opened, the token exported), holding the
    incident of ``NODE_DOWN``: the client, the engine and the incident's id."""
    engine = IncidentEngine(migrated_sqlite(tmp_path / "cli.db"), FakeClock())
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN))), base_url=SERVED) as client:
        route_httpx(client, SERVED, monkeypatch)
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
        assert client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH).status_code == 200
        (item,) = client.get("/api/v1/incidents").json()
        yield client, engine, item["id"]


def test_resolve_and_a_repeated_ack_say_what_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`incidents resolve` and `incidents ack` against serve's app, in process (no port opened)."""
    url, alert = SERVED, NODE_DOWN
    with _node_down_served(tmp_path, monkeypatch) as (client, _, inc):
        base = ["--url", url]

        acked = runner.invoke(app, ["incidents", "ack", inc, *base, "--by", "alice"])
        assert acked.exit_code == 0 and acked.stdout.strip() == f"{inc}: acknowledged"
        again = runner.invoke(app, ["incidents", "ack", inc, *base, "--by", "bob"])
        assert again.exit_code == 0, again.output
        assert again.stdout.strip() == f"{inc}: already acknowledged by alice at 2026-01-01T00:00:00Z"

        firing = runner.invoke(app, ["incidents", "resolve", inc, *base, "--by", "alice"])
        said = " ".join(firing.stderr.split())  # rich wraps long lines
        assert firing.exit_code == 1 and "HTTP 409" in said
        assert "1 of its alerts still fires" in said and f"silence {inc} --for 1h" in said

        client.post("/api/v2/alerts", json=[{**alert, "endsAt": "2026-01-01T00:00:00Z"}], headers=AUTH)
        resolved = runner.invoke(app, ["incidents", "resolve", inc, *base, "--by", "alice"])
        assert resolved.exit_code == 0 and resolved.stdout.strip() == f"{inc}: resolved"
        twice = runner.invoke(app, ["incidents", "resolve", inc, *base])
        assert twice.exit_code == 0, twice.output
        assert twice.stdout.strip() == f"{inc}: already resolved by alice at 2026-01-01T00:00:00Z"
        missing = runner.invoke(app, ["incidents", "resolve", "inc-none", *base])
        assert missing.exit_code == 1 and "HTTP 404" in missing.stderr


def test_silence_and_show_name_the_silence_and_how_to_lift_it_early_once_resolved_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing named an incident's silence: a resolved incident "resolved (silenced until ...)" kept muting
    its alerts, and no command said which silence to expire."""
    url, alert = SERVED, NODE_DOWN
    with _node_down_served(tmp_path, monkeypatch) as (client, engine, inc):
        clock = engine.clock

        hushed = runner.invoke(app, ["incidents", "silence", inc, "--for", "2h", "--url", url, "--by", "al"])
        assert hushed.exit_code == 0, hushed.output
        (silence,) = engine.all_silences()
        lift = (
            f"silence {silence.id}; to lift it early: curl -X DELETE -H"
            f' "Authorization: Bearer $GPUWARDEN_API_TOKEN" {url}/api/v2/silence/{silence.id}'
            f" (or amtool silence expire {silence.id})"
        )
        assert hushed.stdout.splitlines() == [f"{inc}: silenced for 2h", lift]

        client.post("/api/v2/alerts", json=[{**alert, "endsAt": "2026-01-01T00:00:00Z"}], headers=AUTH)
        clock.advance(engine.config.quiet_period_seconds + 1)
        engine.tick()
        shown = runner.invoke(app, ["incidents", "show", inc, "--url", url])
        assert shown.exit_code == 0 and "resolved (silenced until 2026-01-01T02:00:00Z)" in shown.stdout
        assert lift in shown.stdout.splitlines()
        as_json = json.loads(
            runner.invoke(app, ["incidents", "show", inc, "--url", url, "-o", "json"]).stdout
        )
        assert as_json["silence_ids"] == [silence.id]
        (event,) = [e for e in as_json["timeline"] if e["kind"] == "silenced"]
        assert (event["data"]["silence_id"], event["message"]) == (
            silence.id,
            f"silenced for 2h by al (silence {silence.id})",
        )
        assert client.delete(f"/api/v2/silence/{silence.id}", headers=AUTH).status_code == 200
        lifted = runner.invoke(app, ["incidents", "show", inc, "--url", url])
        assert lifted.exit_code == 0 and "to lift it early" not in lifted.stdout


def test_show_of_an_older_serve_without_silence_ids_says_no_silence_to_lift() -> None:
    """A serve of an earlier release answers no ``silence_ids``, and its timeline's silences no id."""
    silenced = {
        "at": "2026-01-01T00:00:00Z",
        "kind": "silenced",
        "message": "silenced for 1h by bob",
        "data": {"by": "bob", "seconds": 3600, "holds_notifications": True},
    }
    old = {**DETAIL, "silenced_until": "2026-01-01T01:00:00Z", "timeline": [silenced]}
    shown = stdout_for(["incidents", "show", "inc-0123456789ab"], old)
    assert "(inc-0123456789ab, triggered (silenced until 2026-01-01T01:00:00Z))" in shown
    assert "silenced for 1h by bob" in shown and "to lift it early" not in shown


@pytest.mark.parametrize(
    ("argv", "body", "asked"),
    [
        pytest.param(
            ["incidents", "list", "--priority", "p1", "--state", "TRIGGERED", "-o", "JSON"],
            [],
            "/api/v1/incidents?state=triggered&priority=P1&limit=50",
            id="incidents",
        ),
        pytest.param(
            ["outbox", "list", "--status", "Failed", "-o", "Json"],
            {"counts": {}, "messages": []},
            "/api/v1/outbox?limit=100&status=failed",
            id="outbox",
        ),
        pytest.param(["inventory", "export", "-o", "JSON"], {"nodes": []}, "/api/v1/inventory", id="export"),
    ],
)
def test_enumerated_options_are_taken_in_any_case(argv: list[str], body: object, asked: str) -> None:
    """``incidents list --priority p1`` was refused ("use one of P0, P1, P2, P3"); kubectl and sacct take
    either case. The value is sent as serve spells it."""
    result, paths = _invoke_against(body, argv)
    assert result.exit_code == 0, result.output
    assert paths == [asked]
    listed = json.loads(result.stdout)  # -o JSON is json: an empty listing too is one valid document
    assert listed in ([], body) or listed["messages"] == []
    assert "found" not in result.stderr


def test_an_enumerated_option_not_in_any_case_is_still_refused_naming_the_choices() -> None:
    result, paths = _invoke_against([], ["incidents", "list", "--priority", "p9"])
    assert result.exit_code == 2 and paths == []
    assert "--priority 'p9': use one of P0, P1, P2, P3" in " ".join(result.stderr.split())


@pytest.mark.parametrize("output", ["json", "table"])
def test_list_pages_with_continue_and_says_the_next_pages_command(
    monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """``--continue TOKEN`` sends ``?continue=``; where serve's answer has ``X-Continue`` (more after this
    page), the last line, on stderr whatever ``-o`` (the JSON list keeps its shape), is the next page's
    command with the same filters; after the last page there is none."""
    sent: list[dict[str, Any]] = []
    item = {
        "id": "inc-1", "title": "t", "priority": "P2", "state": "resolved", "alert_count": 1,
        "root_cause": {"kind": "node_down", "target": {"type": "node", "name": "n1"}},
        "opened_at": "2026-01-01T00:00:00Z", "last_opened_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip

    def answer(method: str, target: str, **kwargs: Any) -> httpx.Response:
        params = dict(kwargs.get("params") or {})
        sent.append(params)
        headers = {"X-Total-Count": "3"} | (
            {} if params.get("continue") == "LAST" else {"X-Continue": "TOK_2-"}
        )
        return httpx.Response(200, json=[item], headers=headers, request=httpx.Request(method, target))

    monkeypatch.setattr(httpx, "request", answer)
    argv = ["incidents", "list", "--url", "http://gpuwarden.test", "-o", output, "--state", "resolved"]
    first = runner.invoke(app, [*argv, "--limit", "1"])
    assert first.exit_code == 0, first.output
    assert "continue" not in sent[-1]
    lines = first.stderr.strip().splitlines()
    as_json = " -o json" if output == "json" else ""
    assert lines[-1] == (
        "next page: gpuwarden incidents list --url http://gpuwarden.test --state resolved --limit 1"
        f"{as_json} --continue TOK_2-"
    )
    assert "showing the newest 1 of 3" in first.stderr
    if output == "json":
        assert [i["id"] for i in json.loads(first.stdout)] == ["inc-1"]  # the list, as before
    second = runner.invoke(app, [*argv, "--limit", "1", "--continue", "TOK_2-"])
    assert sent[-1]["continue"] == "TOK_2-" and second.exit_code == 0, second.output
    assert "showing 1 more of 3" in second.stderr and "newest" not in second.stderr
    last = runner.invoke(app, [*argv, "--limit", "1", "--continue", "LAST"])
    assert last.exit_code == 0 and "next page" not in last.stderr, last.output


def test_the_next_pages_command_goes_to_the_same_serve_and_keeps_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command said below a page is run as it stands: it names the ``--url`` given (its password hidden)
    and ``-o json``; a URL from ``GPUWARDEN_URL`` is left to the variable. Before, the next page of ``--url
    http://gw:8080 -o json`` was asked of 127.0.0.1:8080, and printed as a table."""
    item = {
        "id": "inc-1", "title": "t", "priority": "P2", "state": "resolved", "alert_count": 1,
        "root_cause": {"kind": "node_down", "target": {"type": "node", "name": "n1"}},
        "opened_at": "2026-01-01T00:00:00Z", "last_opened_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip

    def answer(method: str, target: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-Total-Count": "3", "X-Continue": "TOK"}
        return httpx.Response(200, json=[item], headers=headers, request=httpx.Request(method, target))

    monkeypatch.setattr(httpx, "request", answer)
    given = runner.invoke(
        app, ["incidents", "list", "--url", "http://bob:S3cret@gw.test:8080", "--limit", "1", "-o", "json"]
    )
    assert given.exit_code == 0, given.output
    assert given.stderr.strip().splitlines()[-1] == (
        "next page: gpuwarden incidents list --url 'http://bob:***@gw.test:8080' --limit 1 -o json"
        " --continue TOK"
    )
    monkeypatch.setenv("GPUWARDEN_URL", "http://gw.test:8080")
    from_env = runner.invoke(app, ["incidents", "list", "--limit", "1"])
    assert from_env.exit_code == 0, from_env.output
    assert (
        from_env.stderr.strip().splitlines()[-1]
        == "next page: gpuwarden incidents list --limit 1 --continue TOK"
    )
