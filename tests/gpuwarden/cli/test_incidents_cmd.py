"""`gpuwarden incidents` against a real `gpuwarden serve` process."""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from click.testing import Result
from pydantic import SecretStr
from rich.console import Console
from typer.testing import CliRunner

from alerting import scenarios
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.api import create_app
from gpuwarden.cli import app, incidents_cmd
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from gpuwarden.model import WorkloadKind, WorkloadRef
from tests.gpuwarden.api_client import TestClient, route_httpx
from tests.gpuwarden.cli.test_commands import _commands
from tests.http_stub import FixedAnswer
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_serve
from tests.integration.servers import free_port
from tests.migrated_store import migrated_sqlite

runner = CliRunner()


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
        assert hushed.exit_code == 0 and hushed.stdout.strip() == f"{item['id']}: silenced for 2h"
        hushed_again = runner.invoke(app, ["incidents", "silence", item["id"], "--for", "1h", "--url", url])
        assert hushed_again.exit_code == 0, hushed_again.output
        assert hushed_again.stdout.startswith(f"{item['id']}: already silenced until ")
        assert hushed_again.stdout.strip().endswith(" by alice")
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
        runner.invoke(app, ["incidents", "note", "inc-x/../inc-y", "hello", "--url", stub.url])
        empty = runner.invoke(app, ["incidents", "show", "", "--url", stub.url])
    finally:
        stub.close()
    assert stub.paths == ["/api/v1/incidents/inc-x%2F..%2Finc-y/notes"]  # not /api/v1/incidents/inc-y/notes
    assert empty.exit_code == 2 and "INCIDENT_ID '': empty" in empty.output  # no request: a bad argument


def test_resolve_and_a_repeated_ack_say_what_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`incidents resolve` and `incidents ack` against serve's app, in process (no port opened)."""
    sql = migrated_sqlite(tmp_path / "cli.db")
    engine = IncidentEngine(sql, FakeClock())
    url = "http://gpuwarden.test"
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN))), base_url=url) as client:
        route_httpx(client, url, monkeypatch)
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
        alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}
        assert client.post("/api/v2/alerts", json=[alert], headers=AUTH).status_code == 200
        (item,) = client.get("/api/v1/incidents").json()
        inc = item["id"]
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


BAD_URLS = {
    "ipv6-unclosed": "http://[::1",
    # httpx takes these (it escapes a bracket in the host); urllib's urlsplit raised "Invalid IPv6 URL"
    "bracket-opened-no-port": "http://[bad",
    "bracket-closed": "http://a]b",
    "newline": "http://127.0.0.1:1\n",
    "trailing-blank": "http://127.0.0.1:1 ",  # was sent: "cannot connect to http://127.0.0.1:1 :"
    "hostname-300": "http://" + "a" * 300 + ".com",  # the idna codec refuses labels over 63
    "punycode-invalid": "http://xn--a/",  # httpx's decoding of the host raised idna's error: a traceback
    "port-99999": "http://127.0.0.1:99999",
    "ftp": "ftp://127.0.0.1",
    "query": "http://127.0.0.1:9?x=1",  # each command adds its path after it: /?x=1/api/..., a 404
    "fragment": "http://127.0.0.1:9/#top",
}


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
@pytest.mark.parametrize(
    "argv",
    [
        ["incidents", "list"],
        ["incidents", "ack", "inc-1"],
        ["inventory", "nodes"],
        ["outbox", "list"],
        ["sim", "inject", "xid"],
        ["loadgen"],
    ],
    ids=["list", "ack", "inventory", "outbox", "sim-inject", "loadgen"],
)
def test_a_malformed_url_is_named_with_exit_2_not_a_traceback(argv: list[str], url: str) -> None:
    result = runner.invoke(app, [*argv, "--url", url])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    said = " ".join(result.stderr.split())
    assert f"error: --url {url!r}: not a valid URL (" in said, said


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://gw:S3cret@127.0.0.1:9", "http://gw:***@127.0.0.1:9"),  # cannot connect (exit 1)
        ("http://127.0.0.1:9/?token=S3cret", "'http://127.0.0.1:9/?token=***': not a valid URL"),  # exit 2
    ],
    ids=["unreachable-with-a-password", "refused-with-a-token"],
)
@pytest.mark.parametrize(
    "argv",
    # loadgen's one request: its default 100 at 10 a second took 10 s to find that none could connect
    [["incidents", "list"], ["outbox", "list"], ["sim", "inject", "xid"], ["loadgen", "--requests", "1"]],
    ids=["incidents", "outbox", "sim-inject", "loadgen"],
)
def test_a_url_the_cli_cannot_use_is_named_without_its_credential(
    argv: list[str], url: str, shown: str
) -> None:
    """--url (GPUWARDEN_URL: serve behind a proxy that takes basic auth or a token) was said whole."""
    result = runner.invoke(app, [*argv, "--url", url])
    said = " ".join(result.stderr.split())
    assert result.exit_code in (1, 2) and "S3cret" not in said, said
    assert shown in said, said


@pytest.mark.parametrize("url", [" http://127.0.0.1:1", "http://127.0.0.1:1 "], ids=["before", "after"])
def test_a_url_with_a_blank_around_it_is_refused_saying_so(url: str) -> None:
    """Before it, the refusal said "it must start with http:// or https://", which it seems to; after it,
    the request was sent and failed naming a port with a space in it."""
    result = runner.invoke(app, ["incidents", "list", "--url", url])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "not a valid URL (a blank before or after it; remove it)" in said, said


def test_a_malformed_url_from_gpuwarden_url_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUWARDEN_URL", "http://[::1")
    result = runner.invoke(app, ["incidents", "list"])
    assert result.exit_code == 2 and "not a valid URL" in result.stderr, result.output


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_a_401_without_a_token_says_gpuwarden_api_token_is_not_set(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    if token is None:
        monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", token)
    stub = FixedAnswer(401, b'{"error": "missing or wrong bearer token"}')
    try:
        result = runner.invoke(app, ["incidents", "ack", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "HTTP 401: missing or wrong bearer token" in said, said
    assert f"GPUWARDEN_API_TOKEN is {'empty' if token == '' else 'not set'}" in said, said


def test_a_token_that_cannot_be_sent_is_named_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GPUWARDEN_API_TOKEN", "t\u00f6ken"
    )  # headers are ASCII: httpx raised UnicodeEncodeError
    result = runner.invoke(app, ["incidents", "ack", "inc-1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "GPUWARDEN_API_TOKEN" in result.stderr


@pytest.mark.parametrize("body", [b"", b"Not Found", b"<html>404</html>"], ids=["empty", "text", "html"])
def test_an_error_that_is_not_gpuwardens_asks_whether_url_is_a_gpuwarden_serve(body: bytes) -> None:
    stub = FixedAnswer(404, body)
    try:
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "HTTP 404" in said and "is --url a gpuwarden serve?" in said, said


def test_gpuwardens_own_404_names_what_is_missing_without_the_hint() -> None:
    stub = FixedAnswer(404, b'{"error": "no incident inc-1", "field": "incident_id"}')
    try:
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert "HTTP 404: no incident inc-1" in said and "--url" not in said, said


def test_serves_alertmanager_shaped_404_is_read_as_its_own_not_printed_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --url with Alertmanager's /api/v2 on it: serve's 404 there is go-openapi's {"code", "message"}; it was
    # printed as raw JSON and called "not gpuwarden's answer".
    sql = migrated_sqlite(tmp_path / "cli.db")
    url = "http://gpuwarden.test"
    with TestClient(create_app(IncidentEngine(sql, FakeClock()), ApiConfig()), base_url=url) as client:
        route_httpx(client, url, monkeypatch)
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", f"{url}/api/v2"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert "HTTP 404: path: no route for GET /api/v2/api/v1/incidents/inc-1" in said, said
    assert '"code"' not in said and "not gpuwarden's answer" not in said, said


def test_another_servers_code_and_message_still_asks_whether_url_is_a_gpuwarden_serve() -> None:
    stub = FixedAnswer(404, b'{"code": 404, "message": "path /api/v1/incidents/inc-1 was not found"}')
    try:  # a real Alertmanager's 404: the same shape, without serve's field header
        result = runner.invoke(app, ["incidents", "show", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and "is --url a gpuwarden serve?" in said, said


DETAIL = {
    "id": "inc-0123456789ab",
    "title": "[bold]gpu node-01/5 at 00000000:AB:00.0[/bold] lost",
    "priority": "P1",
    "state": "triggered",
    "root_cause": {"kind": "gpu_lost", "target": {"type": "gpu", "node": "node-01", "index": 5}},
    "alert_count": 1,
    "opened_at": "2026-01-01T00:00:00Z",
    "impact": {"summary": "1 node, 1 GPU"},
    "alerts": [],
    "timeline": [
        {
            "at": "2026-01-01T00:00:00Z",
            "kind": "note",
            "message": "note by alice: PSU 2 was loose, swapped it with the spare from the cage; PSU swap "
            "scheduled for the next maintenance window of rack r01",
        }
    ],
}


def _answered(body: object, *argv: str) -> Result:
    """``gpuwarden ARGV --url`` a server that answers ``body`` (200, JSON) to every request."""
    stub = FixedAnswer(200, json.dumps(body).encode())
    try:
        return runner.invoke(app, [*argv, "--url", stub.url])
    finally:
        stub.close()


def test_show_prints_titles_as_they_are_and_timeline_entries_on_one_line_when_piped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    result = _answered(DETAIL, "incidents", "show", "inc-0123456789ab")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"P1 {DETAIL['title']}  (inc-0123456789ab, triggered)"  # no markup, no emoji
    assert "root cause: GPU lost @ gpu node-01/5" in lines
    assert any(DETAIL["timeline"][0]["message"] in line for line in lines)  # type: ignore[index]


def test_show_says_what_a_fault_that_took_no_capacity_degraded_as_slack_does() -> None:
    # It printed "impact: -" where Slack's message said "no capacity lost; 1 GPU degraded".
    detail = {**DETAIL, "impact": {"summary": "", "gpus_affected": 1, "nodes_affected": 0}}
    shown = stdout_for(["incidents", "show", "inc-0123456789ab"], detail)
    assert "impact: no capacity lost; 1 GPU degraded; alerts: 1" in shown.splitlines()


def test_list_keeps_each_incident_on_one_row_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    stub = FixedAnswer(200, json.dumps([DETAIL]).encode())
    try:
        result = runner.invoke(app, ["incidents", "list", "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "inc-0123456789ab" in line]
    assert DETAIL["title"] in row and "GPU lost @ gpu node-01/5" in row  # type: ignore[operator]


@pytest.mark.parametrize(
    ("argv", "body", "expected"),
    [
        (["incidents", "list", "-o", "text"], [DETAIL], "GPU lost @ gpu node-01/5"),
        (["incidents", "list", "--output", "table"], [DETAIL], "GPU lost @ gpu node-01/5"),
        (["incidents", "show", "inc-1", "-o", "table"], DETAIL, "root cause: GPU lost @ gpu node-01/5"),
        (["incidents", "show", "inc-1", "--output", "text"], DETAIL, "root cause: GPU lost @ gpu node-01/5"),
    ],
    ids=["list-text", "list-table", "show-table", "show-text"],
)
def test_list_and_show_take_both_text_and_table_for_people(
    argv: list[str], body: object, expected: str
) -> None:
    stub = FixedAnswer(200, json.dumps(body).encode())
    try:
        result = runner.invoke(app, [*argv, "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    assert expected in result.stdout


def test_list_and_show_json_keep_the_machine_value_of_the_root_cause_kind() -> None:
    for argv, body in ((["incidents", "list"], [DETAIL]), (["incidents", "show", "inc-1"], DETAIL)):
        stub = FixedAnswer(200, json.dumps(body).encode())
        try:
            result = runner.invoke(app, [*argv, "-o", "json", "--url", stub.url])
        finally:
            stub.close()
        assert result.exit_code == 0, result.output
        assert '"kind": "gpu_lost"' in result.stdout and "GPU lost" not in result.stdout  # scripts read it


@contextmanager
def _in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, IncidentEngine]]:
    """serve's app over the scenario fleet, which the CLI reaches at ``URL`` (no port opened); the CLI's
    tables as wide as they need."""
    sql = migrated_sqlite(tmp_path / "cli.db")
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN))), base_url=URL) as client:
        route_httpx(client, URL, monkeypatch)
        monkeypatch.setattr(incidents_cmd, "console", Console(width=400))
        yield client, engine


URL = "http://gpuwarden.test"


def test_list_and_show_say_where_a_merged_incident_went_and_when_one_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _in_process(tmp_path, monkeypatch) as (client, engine):
        clock: FakeClock = engine.clock  # type: ignore[assignment]
        hot = {"alertname": "GPUTemperatureHigh", "cluster": "c1", "gpu": "2"}
        for n in (1, 2, 3):  # a third node of the rack running hot: the first two fold into the rack's
            client.post("/api/v2/alerts", json=[{"labels": {**hot, "node": f"r06-n0{n}"}}], headers=AUTH)
            clock.advance(40)
        down = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}
        client.post("/api/v2/alerts", json=[down], headers=AUTH)
        clock.advance(60)
        client.post("/api/v2/alerts", json=[{**down, "endsAt": "2026-01-01T00:03:00Z"}], headers=AUTH)
        clock.advance(600)
        engine.tick()
        client.post("/api/v2/alerts", json=[down], headers=AUTH)  # reopens at 00:13:00
        items = client.get("/api/v1/incidents").json()
        rack = next(i["id"] for i in items if i["root_cause"]["target"].get("name") == "r06")
        merged = next(i["id"] for i in items if i["merged_into"])

        listed = runner.invoke(app, ["incidents", "list", "--url", URL])
        assert listed.exit_code == 0, listed.output
        rows = listed.stdout.splitlines()
        (first,) = [r for r in rows if "r01-n01" in r]
        assert "2026-01-01T00:13:00Z (reopened)" in first
        assert rows.index(first) < min(i for i, r in enumerate(rows) if "r06" in r)  # newest first
        assert f"resolved (merged into {rack})" in next(r for r in rows if merged in r)
        # Its alert goes on in the rack's incident: "1 moved", not "0" (as if it never had one).
        assert re.search(r"\s1 moved\s", next(r for r in rows if merged in r))
        shown = runner.invoke(app, ["incidents", "show", merged, "--url", URL])
        assert f"({merged}, resolved (merged into {rack}))" in shown.stdout
        assert "; alerts: 1 moved\n" in shown.stdout


def test_show_recommends_what_slack_and_webhooks_do_the_most_drastic_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # XID 79 (fallen off the bus): reboot, then the catalog's follow-up, contact NVIDIA support. show listed
    # only the alerts' own actions, sorted by name, so the on-call never read "contact_support" there.
    with _in_process(tmp_path, monkeypatch) as (client, _):
        xid = {"alertname": "GPUXid", "cluster": "c1", "Hostname": "r03-n02", "gpu": "1", "xid": "79"}
        assert client.post("/api/v2/alerts", json=[{"labels": xid}], headers=AUTH).status_code == 200
        (item,) = client.get("/api/v1/incidents").json()
        detail = client.get(f"/api/v1/incidents/{item['id']}").json()
        assert detail["recommended_actions"] == ["restart_node", "contact_support"]
        shown = runner.invoke(app, ["incidents", "show", item["id"], "--url", URL])
        assert shown.exit_code == 0, shown.output
        assert "recommended: restart_node, contact_support\n" in shown.stdout


def test_list_and_show_say_until_when_an_incident_is_silenced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _in_process(tmp_path, monkeypatch) as (client, engine):
        down = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}
        client.post("/api/v2/alerts", json=[down], headers=AUTH)
        (item,) = client.get("/api/v1/incidents").json()
        client.post(f"/api/v1/incidents/{item['id']}/silence", json={"duration": "2h"}, headers=AUTH)
        listed = runner.invoke(app, ["incidents", "list", "--url", URL])
        assert "triggered (silenced until 2026-01-01T02:00:00Z)" in listed.stdout, listed.output
        shown = runner.invoke(app, ["incidents", "show", item["id"], "--url", URL])
        assert f"({item['id']}, triggered (silenced until 2026-01-01T02:00:00Z))" in shown.stdout
        engine.clock.advance(7200)  # type: ignore[attr-defined]
        assert "silenced" not in runner.invoke(app, ["incidents", "list", "--url", URL]).stdout


NAME_VARIABLES = ("USER", "LOGNAME", "LNAME", "USERNAME")  # what getpass.getuser() reads before pwd


def _one_node_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The incident of one node down, and the token the CLI's writes need."""
    down = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}
    client.post("/api/v2/alerts", json=[down], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
    return dict(item)


@pytest.mark.parametrize("passwd", [True, False], ids=["os-user", "uid-not-in-passwd"])
def test_an_ack_without_user_set_names_the_os_user_not_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passwd: bool
) -> None:
    """A cron job or container has no $USER: every ack read "acknowledged by cli". As amtool's --author,
    the OS user (the password database), else the uid."""
    for name in NAME_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    expected = pwd.getpwuid(os.getuid()).pw_name if passwd else f"uid {os.getuid()}"
    if not passwd:

        def no_entry(uid: int) -> pwd.struct_passwd:
            raise KeyError(f"getpwuid(): uid not found: {uid}")

        monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with _in_process(tmp_path, monkeypatch) as (client, _):
        item = _one_node_down(client, monkeypatch)
        result = runner.invoke(app, ["incidents", "ack", item["id"], "--url", URL])
        assert result.exit_code == 0, result.output
        (acked,) = [
            e
            for e in client.get(f"/api/v1/incidents/{item['id']}").json()["timeline"]
            if e["kind"] == "acknowledged"
        ]
        assert acked["message"].endswith(f"by {expected}"), acked


def test_author_is_the_same_option_as_by_as_amtool_spells_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _in_process(tmp_path, monkeypatch) as (client, _):
        item = _one_node_down(client, monkeypatch)
        result = runner.invoke(
            app, ["incidents", "note", item["id"], "reseated", "--url", URL, "--author", "carol"]
        )
        assert result.exit_code == 0, result.output
        timeline = client.get(f"/api/v1/incidents/{item['id']}").json()["timeline"]
        assert any(e["message"] == "note by carol: reseated" for e in timeline), timeline


def test_list_json_cut_at_the_limit_says_so_on_stderr_and_prints_a_list_still(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``-o json`` a list cut at --limit gave no sign of it (the table's note was left out with the
    table); the list cannot carry a count without changing its documented shape, so stderr says it."""
    with _in_process(tmp_path, monkeypatch) as (client, _):
        for node in ("r01-n01", "r02-n01"):
            down = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": node}}
            client.post("/api/v2/alerts", json=[down], headers=AUTH)
        cut = runner.invoke(app, ["incidents", "list", "--url", URL, "--limit", "1", "-o", "json"])
        whole = runner.invoke(app, ["incidents", "list", "--url", URL, "-o", "json"])
    assert cut.exit_code == whole.exit_code == 0, cut.output
    assert "showing the newest 1 of 2; --limit 0 lists all" in cut.stderr
    assert whole.stderr == ""
    listed = json.loads(cut.stdout)
    assert isinstance(listed, list) and [i["id"] for i in listed] == [json.loads(whole.stdout)[0]["id"]]


# Every command that says who does it, with what else it needs.
BY_COMMANDS = {
    "ack": ["incidents", "ack", "inc-1"],
    "mitigate": ["incidents", "mitigate", "inc-1", "--action", "draining"],
    "note": ["incidents", "note", "inc-1", "reseated"],
    "silence": ["incidents", "silence", "inc-1"],
    "resolve": ["incidents", "resolve", "inc-1"],
    "discard": ["outbox", "discard", "--notifier", "webhook:x", "--yes"],
}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--author", ""], "--author '': empty; write who does it, or leave --author out for $USER"),
        (["--by", " "], "--by ' ': empty; write who does it, or leave --by out for $USER"),
        (
            ["--by", "alice", "--author", ""],
            "--author '': empty; write who does it, or leave --author out for $USER",
        ),
    ],
    ids=["empty-author", "blank-by", "empty-author-typed-last"],
)
@pytest.mark.parametrize("command", BY_COMMANDS.values(), ids=BY_COMMANDS.keys())
def test_a_bad_by_is_named_as_the_option_typed(command: list[str], argv: list[str], said: str) -> None:
    """``--author ''`` was refused as ``--by ''``, an option the user never typed."""
    result = runner.invoke(app, [*command, "--url", "http://127.0.0.1:9", *argv])
    assert result.exit_code == 2 and said in " ".join(result.stderr.split()), result.output


def test_the_commands_that_say_who_are_every_command_with_author() -> None:
    """A command given ``--author`` without ``ByCommand`` would take ``--by`` over it whatever the order: each
    is in ``BY_COMMANDS``, which the tests here run."""
    root = typer.main.get_command(app)
    with_author = {
        path.removeprefix("gpuwarden ")
        for path, command in _commands(root, "gpuwarden")
        if any(param.name == "author" for param in command.params)
    }
    assert with_author == {" ".join(argv[:2]) for argv in BY_COMMANDS.values()}


@pytest.mark.parametrize("command", BY_COMMANDS.values(), ids=BY_COMMANDS.keys())
def test_an_empty_author_overridden_by_a_later_by_is_not_refused(command: list[str]) -> None:
    """As ``--by '' --by alice`` is alice: a wrapper's default overridden by the user's own option. fix/audit3
    refused ``--by`` and ``--author`` naming different people, exit 2, where the last one typed was taken."""
    result = runner.invoke(app, [*command, "--url", "http://127.0.0.1:9", "--author", "", "--by", "alice"])
    assert result.exit_code == 1 and "cannot connect" in result.stderr, result.output  # it asked serve


@pytest.mark.parametrize(
    ("argv", "recorded"),
    [
        (["--by", "alice", "--author", "bob"], "bob"),
        (["--author", "bob", "--by", "alice"], "alice"),
        (["--by", "alice", "--author", "bob", "--by", "carol"], "carol"),
        (["--by", "carol", "--author", "carol"], "carol"),
    ],
    ids=["author-last", "by-last", "by-again-last", "the-same"],
)
def test_by_and_author_given_together_take_the_one_typed_last_as_an_option_given_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], recorded: str
) -> None:
    """``--author`` is ``--by`` as amtool spells it: given both, the last one typed is who, as ``--by a
    --by b`` is b and ``-o json --output text`` is text (click, kubectl); a script that passes ``--by
    "$ONCALL"`` and then the user's ``--author bob`` was refused, exit 2."""
    with _in_process(tmp_path, monkeypatch) as (client, _):
        item = _one_node_down(client, monkeypatch)
        result = runner.invoke(app, ["incidents", "ack", item["id"], "--url", URL, *argv])
        assert result.exit_code == 0, result.output
        timeline = client.get(f"/api/v1/incidents/{item['id']}").json()["timeline"]
        (acked,) = [e for e in timeline if e["kind"] == "acknowledged"]
        assert acked["message"].endswith(f"by {recorded}"), acked


def test_a_server_that_takes_the_connection_but_does_not_answer_is_a_timeout_not_unreachable() -> None:
    """The probe's `incidents list` during a store outage said "cannot reach ...: timed out": the server was
    up, its read waited 10 s and the CLI gave up at 10 s. A timeout now says so and honours the option."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)  # the kernel accepts connections; nobody reads or answers
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, ["incidents", "--request-timeout", "0.2", "list", "--url", url])
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())
    assert f"timed out after 0.2 s waiting for an answer from {url}" in said
    assert "cannot" not in said


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["incidents", "list", "--request-timeout", "0.1"], id="incidents-list-after"),
        pytest.param(["incidents", "ack", "inc-1", "--request-timeout", "0.1"], id="incidents-ack-after"),
        pytest.param(
            ["incidents", "--request-timeout", "9", "show", "i", "--request-timeout", "0.1"], id="both"
        ),
        pytest.param(["inventory", "nodes", "--request-timeout", "0.1"], id="inventory-after"),
        pytest.param(["inventory", "--request-timeout", "0.1", "export"], id="inventory-before"),
        pytest.param(["outbox", "list", "--request-timeout", "0.1"], id="outbox-after"),
        pytest.param(["outbox", "--request-timeout", "0.1", "retry"], id="outbox-before"),
        pytest.param(
            ["outbox", "discard", "--notifier", "n", "--yes", "--request-timeout", "0.1"], id="discard"
        ),
    ],
)
def test_request_timeout_is_taken_after_the_command_and_by_every_command_that_asks_serve(
    argv: list[str],
) -> None:
    """It was taken only before the command (``incidents --request-timeout 5 list``), and by no inventory or
    outbox command: ``incidents list --request-timeout 5``, as kubectl takes it, was "No such option"."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)  # the kernel accepts connections; nobody reads or answers
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, [*argv, "--url", url])
    assert result.exit_code == 1, result.output
    assert f"timed out after 0.1 s waiting for an answer from {url}" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["incidents", "list", "--request-timeout", "1e10"], {}, id="after"),
        pytest.param(["incidents", "--request-timeout", "inf", "list"], {}, id="before-inf"),
        pytest.param(["outbox", "list", "--request-timeout", "nan"], {}, id="nan"),
        pytest.param(["incidents", "list"], {"GPUWARDEN_REQUEST_TIMEOUT": "inf"}, id="env"),
    ],
)
def test_a_request_timeout_no_socket_can_wait_is_a_bad_option(argv: list[str], env: dict[str, str]) -> None:
    """``--request-timeout 1e10`` (or ``inf``) printed a Python traceback (OverflowError from the socket's
    timeout) and exited 1, as if serve were unreachable; ``nan`` said it must be at least 0.1."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", free_port()))
        listening.listen(8)
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        result = runner.invoke(app, [*argv, "--url", url], env=env)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert "--request-timeout" in said and "86400" in said, said
    assert "Traceback" not in result.output


def test_a_refused_connection_says_cannot_connect() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", free_port()))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        result = runner.invoke(app, ["incidents", "list", "--url", url])
    assert result.exit_code == 1
    assert f"cannot connect to {url}" in " ".join(result.stderr.split())


def stdout_for(argv: list[str], body: object) -> str:
    """What ``argv`` prints (exit 0) against a server that answers ``body`` (JSON, or a text as it is)."""
    raw = body if isinstance(body, str) else json.dumps(body)
    stub = FixedAnswer(200, raw.encode())
    try:
        result = runner.invoke(app, [*argv, "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    return result.stdout


EVIL = "Evil\x1b[2J\x1b[31mFAKE\nP0 inc-000 resolved\x9b0m\x7f"
EVIL_SHOWN = "Evil\\x1b[2J\\x1b[31mFAKE\\nP0 inc-000 resolved\\x9b0m\\x7f"
EVIL_DETAIL = {
    **DETAIL,
    "title": EVIL,
    "root_cause": {"kind": "gpu_lost", "target": {"type": "node", "node": "node-05\x1b]0;pwned\x07"}},
    "timeline": [{"at": "2026-01-01T00:00:00Z", "kind": "alert_added", "message": f"alert added: {EVIL}"}],
}


@pytest.mark.parametrize(
    ("argv", "body"),
    [
        (["incidents", "list"], [EVIL_DETAIL]),
        (["incidents", "show", "inc-1"], EVIL_DETAIL),
    ],
    ids=["list", "show"],
)
def test_label_text_reaches_the_terminal_with_its_control_characters_escaped(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], body: object
) -> None:
    """A label's ESC sequences cleared the screen or set the terminal's title, and its newline forged a row
    ("P0 inc-000 resolved"): each control character (C0, C1, DEL) is shown as an escape instead."""
    monkeypatch.delenv("COLUMNS", raising=False)
    out = stdout_for(argv, body)
    assert not any(c in out for c in "\x1b\x07\x9b\x7f")
    assert EVIL_SHOWN in out
    assert not any(line.startswith("P0 inc-000") for line in out.splitlines())


def test_the_postmortem_keeps_its_lines_and_shows_every_other_control_character_escaped() -> None:
    draft = "# Postmortem draft: Evil\x1b]0;pwned\x07\x9b2J\n\n- Incident: `inc-1`\n"
    stub = FixedAnswer(200, draft.encode())
    try:
        result = runner.invoke(app, ["incidents", "postmortem", "inc-1", "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "# Postmortem draft: Evil\\x1b]0;pwned\\x07\\x9b2J",
        "",
        "- Incident: `inc-1`",
        "",
    ]


@pytest.mark.parametrize("flag", ["-o", "--output"], ids=["short", "long"])
def test_the_postmortem_is_given_as_json_for_scripts(flag: str) -> None:
    """`postmortem` took no -o (its siblings list and show do): `-o json` was "No such option"."""
    draft = "# Postmortem draft: Evil\x1b]0;pwned\x07\n\n- Incident: `inc-1`\n"
    stub = FixedAnswer(200, draft.encode())
    try:
        result = runner.invoke(app, ["incidents", "postmortem", "inc-1", flag, "JSON", "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"incident": "inc-1", "markdown": draft}


def test_the_postmortem_refuses_an_unknown_output_before_asking_serve() -> None:
    stub = FixedAnswer(200, b"# Postmortem draft\n")
    try:
        result = runner.invoke(app, ["incidents", "postmortem", "inc-1", "-o", "yaml", "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 2
    assert "markdown, text, json" in result.stderr
    assert stub.paths == []


def test_json_output_keeps_label_text_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = FixedAnswer(200, json.dumps([EVIL_DETAIL]).encode())
    try:
        result = runner.invoke(app, ["incidents", "list", "-o", "json", "--url", stub.url])
    finally:
        stub.close()
    assert json.loads(result.stdout)[0]["title"] == EVIL


def test_show_names_the_namespace_of_a_service_whose_name_another_namespace_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = [NodeInfo("a01", "k", "r1", 8)]
    services = [
        WorkloadInfo(WorkloadRef(WorkloadKind.INFERENCE_SERVICE, space, "llama", "k"), units)
        for space, units in [
            ("prod", (frozenset({("k", "a01", 0)}), frozenset({("k", "a02", 0)}))),
            ("staging", (frozenset({("k", "a02", 1)}),)),
        ]
    ]
    with _in_process(tmp_path, monkeypatch) as (client, engine):
        engine.replace_inventory(StaticInventory(nodes, services))
        down = {"labels": {"alertname": "NodeDown", "cluster": "k", "node": "a01"}}
        client.post("/api/v2/alerts", json=[down], headers=AUTH)
        (item,) = client.get("/api/v1/incidents").json()
        shown = runner.invoke(app, ["incidents", "show", item["id"], "--url", URL])
        assert shown.exit_code == 0, shown.output
        assert "impact: 1 node, 8 GPUs, inference service prod/llama 50% of replicas lost;" in shown.stdout


def _invoke_against(body: object, argv: list[str]) -> tuple[Result, list[str]]:
    """``argv`` against a server answering ``body`` to everything: the result and the paths it asked."""
    stub = FixedAnswer(200, json.dumps(body).encode())
    try:
        result = runner.invoke(app, [*argv, "--url", stub.url])
    finally:
        stub.close()
    return result, stub.paths


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


@pytest.mark.parametrize(
    ("argv", "body", "said"),
    [
        pytest.param(
            ["incidents", "list", "--state", "triggered", "--priority", "P1"],
            [],
            "No incidents found (state triggered, priority P1).",
            id="incidents-filtered",
        ),
        pytest.param(["incidents", "list"], [], "No incidents found.", id="incidents"),
        pytest.param(
            ["outbox", "list", "--status", "failed"],
            {"counts": {}, "messages": []},
            "No messages found (status failed).",
            id="outbox",
        ),
        pytest.param(
            ["inventory", "nodes", "--rack", "r09"],
            {"nodes": [], "workloads": []},
            "No nodes found (rack r09).",
            id="nodes",
        ),
        pytest.param(
            ["inventory", "workloads"], {"nodes": [], "workloads": []}, "No workloads found.", id="workloads"
        ),
    ],
)
def test_an_empty_listing_says_what_found_nothing_on_stderr_not_an_empty_table(
    argv: list[str], body: object, said: str
) -> None:
    result, _ = _invoke_against(body, argv)
    assert result.exit_code == 0, result.output
    assert said in result.stderr.splitlines()
    assert "─" not in result.stdout and "id" not in result.stdout  # no table, not even its header


def test_https_to_a_plain_http_serve_says_to_use_http() -> None:
    # OpenSSL's "WRONG_VERSION_NUMBER" alone did not tell an operator that serve has no TLS of its own.
    server = FixedAnswer(200, b"[]")
    try:
        url = server.url.replace("http://", "https://")
        result = runner.invoke(app, ["incidents", "list", "--url", url])
    finally:
        server.close()
    assert result.exit_code == 1, result.output
    assert "the server speaks plain HTTP: use http://" in " ".join(result.stderr.split()), result.stderr


def test_outbox_list_says_which_notifier_is_paused_by_a_rate_limit_and_until_when() -> None:
    body = {
        "counts": {"pending": 3},
        "messages": [],
        "paused": {"slack": {"until": "2026-01-01T00:01:30+00:00", "seconds_left": 59.6}},
    }
    result, _ = _invoke_against(body, ["outbox", "list"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "slack is paused by a rate limit for 60 s more (until 2026-01-01T00:01:30Z)" in said, said
    assert "pending 3" in result.stdout


def test_show_and_list_write_times_as_slack_and_the_postmortem_do() -> None:
    # Times were shown in three formats: the API's here (2026-01-01T00:00:05.250000Z, a real clock's
    # fraction), ISO with +00:00 in Slack's fallback text, "2026-01-01 00:00:05 UTC" in the postmortem.
    # Text people read has one: RFC 3339 in UTC to the second.
    at = "2026-01-01T00:00:05.250000Z"
    timeline = [{**DETAIL["timeline"][0], "at": at}]  # type: ignore[index]
    detail = {**DETAIL, "opened_at": at, "last_opened_at": at, "timeline": timeline}
    result = _answered(detail, "incidents", "show", "inc-0123456789ab")
    assert result.exit_code == 0, result.output
    assert "  2026-01-01T00:00:05Z  note " in result.stdout and at not in result.stdout, result.stdout
    row = {key: detail[key] for key in ("id", "title", "priority", "state", "root_cause", "opened_at")}
    listed = _answered([{**row, "alert_count": 1, "last_opened_at": at}], "incidents", "list")
    assert "2026-01-01T00:00:05Z" in listed.stdout and at not in listed.stdout, listed.output


def test_list_help_names_each_state_it_takes() -> None:
    """README: ``--help`` shows each choice; ``incidents list --state`` said only "Only this state.", so the
    states were learnt from the refusal of a wrong one."""
    result = runner.invoke(app, ["incidents", "list", "--help"], env={"COLUMNS": "200"})
    said = " ".join(result.output.replace("│", " ").split())
    assert "Only this state: triggered, acknowledged, mitigating, resolved." in said, said


@pytest.mark.parametrize(
    ("scheme", "proxy", "loads"),
    [("http", None, False), ("https", None, True), ("http", "https://proxy.invalid:3128", True)],
    ids=["plain-http", "https", "http-through-a-proxy"],
)
def test_a_plain_http_request_loads_no_ca_bundle_unless_tls_may_be_spoken(
    monkeypatch: pytest.MonkeyPatch, scheme: str, proxy: str | None, loads: bool
) -> None:
    # Loading it cost ~60 ms of CPU per command, for a connection that never handshakes.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    if proxy:
        monkeypatch.setenv("http_proxy", proxy)
    loaded: list[object] = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(
        ssl.SSLContext, "load_verify_locations", lambda self, *a, **k: loaded.append(a) or real(self, *a, **k)
    )
    server = FixedAnswer(200, b"[]")
    try:
        result = runner.invoke(app, ["incidents", "list", "--url", server.url.replace("http", scheme, 1)])
    finally:
        server.close()
    assert bool(loaded) is loads, result.output
    if scheme == "http" and not proxy:
        assert result.exit_code == 0, result.output
