"""What `gpuwarden incidents list` and `show` print: one row per incident when piped, text and tables for
people, JSON, merged, reopened and silenced incidents, empty listings and times; label text reaching the
terminal with its control characters escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import Result

from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.cli import app
from gpuwarden.clock import FakeClock
from gpuwarden.model import WorkloadKind, WorkloadRef
from tests.gpuwarden.cli.incidents_answers import (
    DETAIL,
    URL,
    _in_process,
    _invoke_against,
    runner,
    stdout_for,
)
from tests.http_stub import FixedAnswer
from tests.integration.gpuwarden_server import AUTH


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
        client.post(
            f"/api/v1/incidents/{item['id']}/silence", json={"duration": "2h", "by": "bob"}, headers=AUTH
        )
        listed = runner.invoke(app, ["incidents", "list", "--url", URL])
        assert "triggered (silenced until 2026-01-01T02:00:00Z)" in listed.stdout, listed.output
        shown = runner.invoke(app, ["incidents", "show", item["id"], "--url", URL])
        assert f"({item['id']}, triggered (silenced until 2026-01-01T02:00:00Z))" in shown.stdout
        engine.clock.advance(7200)  # type: ignore[attr-defined]
        assert "silenced" not in runner.invoke(app, ["incidents", "list", "--url", URL]).stdout


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


def test_outbox_list_says_which_notifier_holds_its_messages_and_why() -> None:
    body = {
        "counts": {"pending": 3},
        "messages": [],
        "blocked": {
            "slack": {
                "since": "2026-01-01T00:00:30+00:00",
                "next_try": "2026-01-01T00:01:30+00:00",
                "reason": "slack: chat.postMessage failed: token_revoked",
            }
        },
    }
    result, _ = _invoke_against(body, ["outbox", "list"])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "slack holds all of its messages since 2026-01-01T00:00:30Z, none failed" in said, said
    assert "(slack: chat.postMessage failed: token_revoked)" in said
    assert "they go out in order once a call goes through (tried again at 2026-01-01T00:01:30Z)" in said


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


def test_list_at_an_80_column_terminal_shows_every_id_whole_a_merged_ones_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ids are what `incidents ack ID` takes: rich cut them to `inc-746c…` to fit 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    merged = {
        **DETAIL,
        "id": "inc-746c1a2b9f0e",
        "merged_into": "inc-29d4e5f6a7b8",
        "title": "gpu node-01/3 GpuRecoveryActionPending on gpuwarden_gpu_recovery_action, rack r01",
    }
    result = _answered([merged, DETAIL], "incidents", "list")
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    assert "inc-746c1a2b9f0e" in result.stdout and "inc-0123456789ab" in result.stdout, result.stdout
    state = "".join(line.split("│")[3].strip() for line in result.stdout.splitlines() if line.count("│") > 3)
    assert "(mergedintoinc-29d4e5f6a7b8)" in state.replace(" ", ""), result.stdout  # folded, never cut


def test_list_at_an_80_column_terminal_folds_the_opened_time_and_title_and_cuts_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """README: a table at a narrow terminal folds a long cell onto more lines; rich cut the opened time to
    ``2026-01…`` and the title's long words at the terminal's default 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    result = _answered([DETAIL], "incidents", "list")
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, result.stdout
    rows = [line.split("│") for line in result.stdout.splitlines() if line.count("│") == 8]
    opened = "".join(row[6].strip() for row in rows)
    assert opened == "2026-01-01T00:00:00Z", result.stdout
