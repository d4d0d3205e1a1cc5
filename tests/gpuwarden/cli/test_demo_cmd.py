from __future__ import annotations

import io
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuwarden.app import build_simulated_pipeline
from gpuwarden.cli import app, demo_cmd
from gpuwarden.cli.consoles import CliConsole
from gpuwarden.cli.demo_cmd import Story, _report, _run
from gpuwarden.model import FaultKind, IncidentState
from tests.gpuwarden.cli.stopping import sigterm_uncaught


def test_the_demo_tells_the_same_story_as_text_and_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    pipeline = build_simulated_pipeline(tmp_path / "demo.db", seed=7)
    try:
        story = Story(pipeline, quiet=False)
        _run(story, 40)
        _report(story, seed=7, warmup_minutes=40, warmup_alerts=0)
        text = capsys.readouterr().out
        story.quiet = True
        _report(story, seed=7, warmup_minutes=40, warmup_alerts=0)
        summary = json.loads(capsys.readouterr().out)
        by_kind = {inc.root_cause.kind: inc for inc in pipeline.incidents()}
        posted = str([m.attachments for m in pipeline.slack.channel_messages()])
    finally:
        pipeline.close()

    assert set(by_kind) == {FaultKind.GPU_LOST, FaultKind.THERMAL, FaultKind.NODE_DOWN}
    # The GPU comes back from its reset like its stalled job's other ranks: nothing new to report.
    assert by_kind[FaultKind.GPU_LOST].state is IncidentState.RESOLVED
    assert by_kind[FaultKind.NODE_DOWN].state is IncidentState.RESOLVED
    assert by_kind[FaultKind.THERMAL].state is not IncidentState.RESOLVED  # its cooling was not repaired
    assert summary["slack_messages"] == 3
    # Its thermal alerts each resolving is not a cycle: the message said "cycling: repeating" of it.
    assert "cycling" not in posted
    # The stream's times are the simulated clock's, in UTC, and it says so before the first.
    assert "UTC, every time below is UTC" in text.split("warming up", 1)[0]

    thermal = by_kind[FaultKind.THERMAL]
    # The escalation the final table shows is in the stream, in both outputs.
    (escalation,) = [e for e in summary["events"] if e["type"] == "priority_changed"]
    assert (escalation["incident"], escalation["from"], escalation["to"]) == (thermal.id, "P3", "P2")
    assert f"incident {thermal.id} P3 -> P2: {escalation['reason']}" in text
    resolved = {e["incident"] for e in summary["events"] if e["type"] == "incident_resolved"}
    assert resolved == {by_kind[FaultKind.GPU_LOST].id, by_kind[FaultKind.NODE_DOWN].id}

    alerts = [e for e in summary["events"] if e["type"] == "alert"]
    assert all(e.get("gpu") != "" for e in alerts) and "gpu= " not in text
    anomaly = [e for e in alerts if e["alertname"] == "GpuwardenAnomaly"]
    assert anomaly and all(e["for"] for e in anomaly)  # which metric each one is about
    assert all(f"for={e['for']}" in text for e in anomaly)
    # Two alerts on the same metric of one GPU (peers, adaptive band, thermal) are told apart.
    assert all(f"for={e['for']} detector={e['detector']} " in text for e in anomaly)
    (xid,) = [e for e in alerts if e["alertname"] == "GpuXidError"]  # which XID: the script is no alert
    assert xid["xid"] == "79" and "GpuXidError          node-02  gpu=3 xid=79 " in text
    (node_down,) = [e for e in alerts if e["alertname"] == "NodeDown"]
    assert "gpu" not in node_down

    # Root causes are written as `incidents list` writes them.
    incidents = {i["id"]: i for i in summary["incidents"]}
    lost = incidents[by_kind[FaultKind.GPU_LOST].id]
    assert lost["root_cause_text"] == "GPU lost @ gpu node-02/3" and "GPU lost @ gpu node-02/3" in text
    assert lost["root_cause"]["target"]["node"] == "node-02" and lost["alert_count"] == 2
    assert [h["priority"] for h in incidents[thermal.id]["priority_history"]] == ["P3", "P2"]
    assert summary["postmortem"]["incident"] == lost["id"]
    assert summary["postmortem"]["markdown"].startswith("# Postmortem draft: gpu node-02/3 lost")
    assert summary["postmortem"]["markdown"] in text


@pytest.mark.parametrize("quiet", [False, True], ids=["text", "json"])
def test_the_demo_stops_at_the_tick_after_stdouts_reader_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    """`demo | head -2`: head leaves during the warm-up, which writes nothing for 40 s; the demo's next tick
    ends it with a broken pipe (the CLI's quiet exit 1), not its next line."""
    read_end, write_end = os.pipe()
    pipeline = build_simulated_pipeline(tmp_path / "demo.db", seed=7)
    try:
        with os.fdopen(write_end, "w") as writer:
            monkeypatch.setattr(sys, "stdout", writer)
            story = Story(pipeline, quiet=quiet)
            story.begin(60)
            pipeline.run(60, story.passed)  # stdout read: the ticks go on
            os.close(read_end)
            with pytest.raises(BrokenPipeError):
                pipeline.run(60, story.passed)
            monkeypatch.undo()
    finally:
        pipeline.close()


def test_an_unknown_output_format_is_refused_before_the_demo_runs() -> None:
    result = CliRunner().invoke(app, ["demo", "--output", "yaml"])
    assert result.exit_code == 2 and "use one of text, table, json" in result.output


def test_a_negative_warmup_is_refused_naming_the_flag() -> None:
    result = CliRunner().invoke(app, ["demo", "--warmup-minutes", "-5"])
    assert result.exit_code == 2 and "--warmup-minutes" in result.output


def test_a_warmup_past_a_simulated_day_is_refused_naming_the_flag_and_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Any number was taken: a warm-up of 10 million minutes ran the simulated fleet for years, minute by
    minute, with no end in sight."""
    started: list[object] = []
    monkeypatch.setattr("gpuwarden.app.build_simulated_pipeline", lambda *a, **k: started.append(a) or 1 / 0)
    result = CliRunner().invoke(app, ["demo", "--warmup-minutes", "10000000"])
    assert result.exit_code == 2 and not started, result.output
    assert "--warmup-minutes 10000000: use a whole number from 0 to 1440" in result.output


def test_the_json_demo_shows_its_progress_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """`demo -o json` printed nothing for the whole run (about a minute on 2 cores), where the text demo
    tells each event as it happens; a pipe or a log still gets nothing on stderr (StepProgress)."""
    stderr = io.StringIO()
    monkeypatch.setattr(demo_cmd, "err_console", CliConsole(file=stderr, force_terminal=True, width=100))
    # A bar that runs to its end needs no whole story: its first fault and 2 minutes after it (the story's
    # 50 minutes ran for a minute of the suite; the story itself is the test above's).
    monkeypatch.setattr(demo_cmd, "SCENARIO", demo_cmd.SCENARIO[:1])
    monkeypatch.setattr(demo_cmd, "RECOVERY_MINUTES", 2)
    result = CliRunner().invoke(app, ["demo", "-o", "json", "--warmup-minutes", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warmup_minutes"] == 0
    assert "simulated minutes" in stderr.getvalue() and "2/2" in stderr.getvalue()


def test_a_one_minute_warm_up_is_said_as_one_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_cmd, "SCENARIO", demo_cmd.SCENARIO[:1])  # as above: its first fault alone
    monkeypatch.setattr(demo_cmd, "RECOVERY_MINUTES", 2)
    result = CliRunner().invoke(app, ["demo", "--warmup-minutes", "1"])
    assert result.exit_code == 0, result.output
    assert "warming up: 1 simulated minute of normal load" in result.stdout, result.stdout  # "1 ... minutes"
    assert "warm-up done: 0 alerts while healthy" in result.stdout


def test_the_demo_stopped_by_sigterm_exits_143_and_leaves_no_temporary_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (``timeout``, ``kill``) killed it where it stood: its store, ``gpuwarden-demo-*/demo.db``
    with its WAL, was left in the temporary directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def terminated(story: Story, warmup_minutes: int) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    monkeypatch.setattr(demo_cmd, "_run", terminated)
    with sigterm_uncaught() as uncaught:
        result = CliRunner().invoke(app, ["demo", "-o", "json"])
    assert result.exit_code == 143 and not uncaught, result.output
    assert result.stdout == ""
    # Said, where a stopped demo -o json ended with nothing on stdout or stderr.
    assert (
        result.stderr
        == "error: stopped by SIGTERM before it finished; the demo's temporary store is removed\n"
    )
    assert list(tmp_path.iterdir()) == []
