from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from anomaly import univariate
from anomaly.forwarder import AlertForwarder
from anomaly.promql import PromQLSource, PromQuery
from gpuwarden.cli import anomaly_cmd, anomaly_run, anomaly_score, app
from gpuwarden.cli.consoles import CliConsole
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from tests.anomaly.fakes import FakePrometheus
from tests.http_stub import LocalServer, QuietHandler
from tests.integration.servers import free_port

runner = CliRunner()


def write_series(path: Path, spike_at: int | None = 400) -> None:
    rng = np.random.default_rng(0)
    values = 10 + rng.normal(0, 1, 600)
    if spike_at is not None:
        values[spike_at] = 60
    stamps = pd.date_range("2024-01-01", periods=600, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)


def evaluate_args(tmp_path: Path, windows: object) -> list[str]:
    """`anomaly evaluate nab` over one NAB-like file, c/x.csv under tmp_path/data, with these windows."""
    (tmp_path / "data" / "c").mkdir(parents=True)
    write_series(tmp_path / "data" / "c" / "x.csv")
    (tmp_path / "w.json").write_text(json.dumps(windows))
    return [
        "anomaly",
        "evaluate",
        "nab",
        "--data",
        str(tmp_path / "data"),
        "--windows",
        str(tmp_path / "w.json"),
    ]


def test_score_writes_scores_and_labels_an_alert_at_the_spike(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(frame) == 600
    assert frame.loc[400, "label"] == 1
    assert frame.loc[400, "anomaly_score"] > 1
    assert frame["label"].sum() <= 3


def test_score_counts_one_alert_in_the_singular(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src, spike_at=None)  # its noise alone raised one: "600 rows, 1 alerts" it said
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    alerts = int(pd.read_csv(out)["label"].sum())  # a detector's change may move it: the grammar follows
    assert result.stdout == f"{out}: 600 rows, {alerts} alert{'' if alerts == 1 else 's'}\n"


def test_score_rejects_a_csv_without_a_value_column(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("timestamp,v\n2024-01-01,1\n")
    result = runner.invoke(
        app, ["anomaly", "score", "--input", str(src), "--output", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 1
    assert "value" in result.output


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1\nsoon,2\n", "line 4: 'soon' is not a time"),
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1O\n", "line 3: '1O' is not a number"),
        ("2024-01-01 00:05:00,1\n2024-01-01 00:00:00,2\n", "line 3: '2024-01-01 00:00:00' is before the row"),
        (
            "2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1e400\n",
            "line 3: the value is inf, not a finite number",
        ),
        ("2024-01-01 00:00:00,-inf\n", "line 2: the value is -inf, not a finite number"),
        ("2024-01-01 00:00:00,1,5\n", "line 2: 3 fields under a header of 2 (timestamp,value); remove the"),
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2,5\n", "line 3: 3 fields under a header of 2"),
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00\n", "line 3: 1 field under a header of 2"),
        ("2024-01-01 00:00:00,1\n,2\n", "line 3: the timestamp is empty"),
        ("2024-01-01 00:00:00,1\n\n2024-01-01 00:05:00,1O\n", "line 4: '1O' is not a number"),
        (
            "1704067200,1\n1704067200000,2\n",
            "line 3: '1704067200000' is not a time like the rows above (Unix",
        ),
        ("1704067200000000000,1\n", "line 2: '1704067200000000000' is not Unix seconds or milliseconds"),
        (
            "soon,1\n2024-01-01 00:05:00,1\n",
            "in.csv': line 2: 'soon' is not a time; write epoch seconds (1704067200) or a time"
            " (2024-01-01T00:00:00Z)",
        ),
        ("1704067200x,1\n", "line 2: '1704067200x' is not a time; write epoch seconds (1704067200) or a"),
    ],
    ids=[
        "bad-time",
        "typo-value",
        "backwards",
        "overflow",
        "infinity",
        "extra-field-first-row",
        "extra-field",
        "missing-field",
        "empty-time",
        "line-after-a-blank-line",
        "seconds-then-milliseconds",
        "nanoseconds",
        "bad-time-first",
        "typo-in-first-unix-time",
    ],
)
def test_score_refuses_a_bad_row_naming_its_line_and_writes_nothing(tmp_path, rows, message):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n" + rows)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.parametrize(
    "epoch",
    [
        lambda t: str(int(t)),
        lambda t: f"{t:.1f}",
        lambda t: str(int(t) * 1000),
    ],
    ids=["seconds", "decimal-seconds", "milliseconds"],
)
def test_score_reads_unix_timestamps_as_the_same_times_and_gives_them_back_as_written(tmp_path, epoch):
    iso, unix = tmp_path / "iso.csv", tmp_path / "unix.csv"
    write_series(iso)
    frame = pd.read_csv(iso)
    seconds = (pd.to_datetime(frame["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    written = [epoch(float(t)) for t in seconds]
    frame.assign(timestamp=written).to_csv(unix, index=False)
    for src in (iso, unix):
        result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(src) + ".out"])
        assert result.exit_code == 0, result.output
    scored = pd.read_csv(str(unix) + ".out", dtype={"timestamp": str})
    from_iso = pd.read_csv(str(iso) + ".out", dtype={"timestamp": str})
    assert list(scored["timestamp"]) == written  # a join back to the input keeps working
    assert list(from_iso["timestamp"]) == list(frame["timestamp"])
    assert scored["label"].sum() > 0
    pd.testing.assert_frame_equal(scored.drop(columns="timestamp"), from_iso.drop(columns="timestamp"))


def test_score_keeps_empty_nan_and_na_values_as_gaps_scored_zero(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    rows = "".join(f"2024-01-01 00:{m:02d}:00,{v}\n" for m, v in enumerate(["1", "", "NaN", "NA", "2"]))
    src.write_text("timestamp,value\n" + rows)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert len(scored) == 5
    assert scored["value"].isna().tolist() == [False, True, True, True, False]
    assert scored["anomaly_score"][1:4].tolist() == [0.0, 0.0, 0.0]


def test_score_refuses_a_repeated_timestamp_unless_told_to_keep_it(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2\n2024-01-01 00:05:00,3\n")
    args = ["anomaly", "score", "--input", str(src), "--output", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert (
        f"{src}': line 4: '2024-01-01 00:05:00' repeats the time of line 3; remove the repeated row" in said
    )
    assert "--keep-repeated-timestamps" in said
    assert not out.exists()
    result = runner.invoke(app, [*args, "--keep-repeated-timestamps"])  # local times at a clock change
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["value"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "in.csv': is empty; write the header timestamp,value"),
        ("\n\n", "in.csv': line 1 is blank; the first line must be the header"),
        (
            "1704067200,1\n1704067260,2\n",
            "in.csv': line 1: '1704067200,1' lacks the column(s) timestamp, value;",
        ),
        ("timestamp,val\n1704067200,1\n", "in.csv': line 1: 'timestamp,val' lacks the column(s) value;"),
        ("timestamp,value\n", "in.csv': has the header but no rows; nothing to score"),
        ("timestamp,value\n\n\n", "in.csv': has the header but no rows; nothing to score"),
    ],
    ids=["empty", "blank-lines", "no-header", "misspelt-header", "header-only", "header-and-blank-lines"],
)
def test_score_refuses_a_file_without_header_or_rows_and_writes_nothing(tmp_path, text, message):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text(text)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not out.exists()


def test_evaluate_nab_prints_json_with_splits_profiles_and_f1(tmp_path):
    windows = {"c/x.csv": [["2024-01-02 08:00:00.000000", "2024-01-02 11:00:00.000000"]]}  # rows 384-420
    args = evaluate_args(tmp_path, windows)
    result = runner.invoke(app, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert json.loads(runner.invoke(app, [*args, "--json"]).output) == report  # the older spelling
    overall = report["splits"]["all"]
    assert set(overall["scores"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert overall["windows"] == 1
    assert overall["window_recall"] == 1.0
    assert overall["scores"]["standard"] > 50
    assert report["files"]["c/x.csv"]["detected"] == 1


@pytest.mark.parametrize(
    ("terminal", "flags", "shown"), [(True, [], True), (True, ["-q"], False), (False, [], False)]
)
def test_evaluate_nab_shows_its_progress_on_a_terminal_only(tmp_path, monkeypatch, terminal, flags, shown):
    # The 41 files here took 18 s with nothing on the screen until the tables; a pipe or a log gets no noise.
    args = evaluate_args(tmp_path, {"c/x.csv": [], "c/y.csv": []})
    write_series(tmp_path / "data" / "c" / "y.csv", spike_at=None)  # two files: scored together, in steps
    stderr = io.StringIO()
    monkeypatch.setattr(
        anomaly_score, "err_console", CliConsole(file=stderr, force_terminal=terminal, width=100)
    )
    result = runner.invoke(app, [*args, "-o", "json", *flags])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"]["all"]["files"] == 2
    assert ("scoring 2 files" in stderr.getvalue() and "600/600" in stderr.getvalue()) is shown
    assert stderr.getvalue() == "" or shown


@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_score_and_evaluate_name_every_problem_of_their_config(tmp_path, command):
    # A --config with two mistakes said the first and "(and 1 more problem)", naming only one to fix.
    config = tmp_path / "gw.yaml"
    config.write_text("anomaly:\n  thresholds:\n    kk: 1\n  infer_every_seconds: 30s\n")
    if command == "score":
        write_series(tmp_path / "in.csv")
        args = [
            "anomaly",
            "score",
            "--input",
            str(tmp_path / "in.csv"),
            "--output",
            str(tmp_path / "out.csv"),
        ]
    else:
        args = evaluate_args(tmp_path, {"c/x.csv": []})
    result = runner.invoke(app, [*args, "--config", str(config)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert f"{config}:3: anomaly.thresholds.kk: unknown field" in said
    assert f"{config}:4: anomaly.infer_every_seconds: '30s' is not a number" in said
    assert "more problem" not in said


def test_xid_lookup_names_the_recommended_action():
    result = runner.invoke(app, ["anomaly", "xid", "48"])
    assert result.exit_code == 0
    assert "drain_and_reset" in result.output
    assert runner.invoke(app, ["anomaly", "xid", "99999"]).exit_code == 1


def test_xid_lookup_prints_the_same_fields_as_json_for_scripts():
    text = runner.invoke(app, ["anomaly", "xid", "79"])
    result = runner.invoke(app, ["anomaly", "xid", "79", "-o", "json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert entry["xid"] == 79 and entry["immediate_action"] == "RESTART_BM"
    assert f"{entry['immediate_action']} -> {entry['recommended_action']}" in text.stdout
    assert entry["mnemonic"] in text.stdout and entry["investigatory_action"] in text.stdout
    assert runner.invoke(app, ["anomaly", "xid", "79", "-o", "yaml"]).exit_code == 2


def test_run_reports_an_unreachable_prometheus_and_exits_cleanly(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
    )
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    # No traceback, the source named; exit 1: nothing was read (it was 0, and a script could not tell).
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert (
        "source prometheus down: 1 of 1 queries (temp): /api/v1/query_range: http://127.0.0.1:1: Connect"
        in " ".join(result.stderr.split())
    )
    assert "no source could be read in 1 tick: nothing was scored" in " ".join(result.stderr.split())


@pytest.mark.parametrize("due", [True, False], ids=["tick-on-a-step", "tick-between-steps"])
def test_run_exits_1_with_prometheus_down_whether_or_not_its_single_tick_fell_due(tmp_path, monkeypatch, due):
    # A query on a 120 s step, ticks of 30 s: a tick between two of its steps asks Prometheus nothing.
    # Such a tick marked the source up, so `--ticks 1` with Prometheus down exited 0 or 1 by the wall clock.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  infer_every_seconds: 30\n  latency_offset_seconds: 0\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 120}\n"
    )
    start = 1_767_225_600.0 + (0.0 if due else 30.0)  # 1_767_225_600 is a multiple of 120
    monkeypatch.setattr(anomaly_run, "SystemClock", lambda: FakeClock(start))
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    said = " ".join(result.stderr.split())
    assert "source prometheus down: 1 of 1 queries (temp)" in said
    assert "no source could be read in 1 tick: nothing was scored" in said


def test_run_refuses_a_config_without_queries():
    result = runner.invoke(app, ["anomaly", "run", "--ticks", "1"])
    assert result.exit_code == 1
    assert "anomaly.queries" in result.output


def test_run_refuses_an_alert_url_without_a_token_or_scheme(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    base = "anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    cfg.write_text(base + "  alert_url: http://127.0.0.1:9700\n")
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 1 and "GPUWARDEN_API_TOKEN" in result.output
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    cfg.write_text(base + "  alert_url: 127.0.0.1:9700\n")
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 1 and "anomaly.alert_url" in " ".join(result.output.split())


def test_run_says_which_setting_to_change_when_its_metrics_port_is_taken(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", str(port)]
        )
    assert result.exit_code == 1
    assert f"--port {port}: cannot serve /metrics on 127.0.0.1:{port}" in " ".join(result.output.split())


def test_run_refused_its_metrics_port_lets_go_of_its_state_file(tmp_path):
    """Its hold on the state file ends with it: a later ``anomaly run`` in the same process (a test, a
    script driving the CLI) may take the file."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n")
    args = ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--state-file", str(tmp_path / "s.npz")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert runner.invoke(app, [*args, "--port", str(taken.getsockname()[1])]).exit_code == 1
    result = runner.invoke(app, [*args, "--port", "0"])
    assert "another process keeps its state" not in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("where", ["missing/o.csv", "."], ids=["no-directory", "a-directory"])
def test_score_names_an_output_it_cannot_write(tmp_path, where):
    src = tmp_path / "in.csv"
    write_series(src)
    out = tmp_path / where
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"error: --output '{out}': cannot write " in said, said


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ({"c/x.csv": "x"}, "expected a list of [start, end] pairs"),
        ({"c/x.csv": [["soon", "2024-01-02 11:00:00"]]}, "'soon' is not a time"),
        (["c/x.csv"], "expected an object"),
    ],
    ids=["not-pairs", "bad-time", "not-an-object"],
)
def test_evaluate_nab_names_a_bad_windows_file(tmp_path, windows, message):
    args = evaluate_args(tmp_path, windows)
    result = runner.invoke(app, args)
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and message in output and "Traceback" not in output, output


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_score_refuses_an_output_that_is_its_input_and_leaves_the_input_alone(tmp_path, spelling):
    src = tmp_path / "in.csv"
    write_series(src)
    before = src.read_bytes()
    out = {"same": src, "dotted": tmp_path / "." / "in.csv"}.get(spelling, tmp_path / "other.csv")
    if spelling == "symlink":
        out.symlink_to(src)
    elif spelling == "hardlink":
        out.hardlink_to(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.stderr.split())
    assert said == f"error: --output '{out}': cannot write the --input file; write the scores to another file"
    assert src.read_bytes() == before


class _Prometheus(LocalServer):
    """A Prometheus that answers every range query with two flat series, or 400 for the query `bad`."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            def do_GET(self) -> None:
                params = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                start, end, step = (float(params[k][0]) for k in ("start", "end", "step"))
                values = [[t, "40"] for t in np.arange(start, end + step / 2, step).tolist()]
                result = [{"metric": {"Hostname": "n1", "gpu": str(i)}, "values": values} for i in range(2)]
                body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
                status = 200
                if params["query"][0] == "bad":
                    status, body = 400, {"status": "error", "error": "parse error [bad]"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


def _run_on_fake_prometheus(
    tmp_path: Path, queries: str, ticks: int, user: str = "", listen: tuple[str, int] = ("127.0.0.1", 0)
) -> tuple[str, Any]:
    """``anomaly run --ticks N --port 0`` on ``_Prometheus`` with ``queries`` (YAML list items), ticking
    every 0.2 s (``user``: ``user:password`` in its URL; ``listen``: /metrics' address and port): that
    Prometheus' URL and the CLI's result."""
    prometheus = _Prometheus()
    cfg = tmp_path / "c.yaml"
    url = prometheus.url.replace("://", f"://{user}@") if user else prometheus.url
    cfg.write_text(
        f"anomaly:\n  prometheus_url: {url}\n  listen_address: '{listen[0]}'\n  infer_every_seconds: 0.2\n"
        f"  queries:\n{queries}"
    )
    try:
        args = ["anomaly", "run", "--config", str(cfg), "--ticks", str(ticks), "--port", str(listen[1])]
        return prometheus.url, runner.invoke(app, args)
    finally:
        prometheus.close()


class _Receiver(LocalServer):
    """A gpuwarden serve that holds no alert: what it was asked, method and path, in order."""

    def __init__(self) -> None:
        asked: list[tuple[str, str]] = []
        self.asked = asked

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                asked.append(("GET", self.path))
                self._answer(b"[]")

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                asked.append(("POST", self.path))
                self._answer(b"")

            def _answer(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


def run_one_tick_forwarding_to(receiver, tmp_path, monkeypatch, reescalate: bool):
    """``anomaly run --ticks 1`` reading a stand-in Prometheus and posting to ``receiver`` (closed after,
    with the Prometheus), re-escalation on or off; its result, exit status checked."""
    prometheus = _Prometheus()
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"anomaly:\n  prometheus_url: {prometheus.url}\n  infer_every_seconds: 0.2\n"
        f"  alert_url: {receiver.url}\n  reescalate_alerts: {str(reescalate).lower()}\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n"
    )
    try:
        result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    finally:
        prometheus.close()
        receiver.close()
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("reescalate", [True, False], ids=["on", "off"])
def test_run_asks_serve_what_it_holds_before_its_warm_up_recalls_alerts(tmp_path, monkeypatch, reescalate):
    """A restart recalls the alerts its warm-up left firing only while serve still holds them, until serve's
    own endsAt (``AlertForwarder.held``): ``anomaly run`` did not ask, so after a downtime it recalled them
    for 4 minutes past serve's hold. Asked with re-escalation off too: the recall keeps the side an alert was
    raised on, and the labels serve holds each alert by are those the forwarder posts it on under
    (``AlertForwarder._as_served``), or an alert firing across the upgrade that added ``deviation`` was a
    second alert at serve."""
    receiver = _Receiver()
    run_one_tick_forwarding_to(receiver, tmp_path, monkeypatch, reescalate)
    assert [a for a in receiver.asked if a[0] == "GET"] == [("GET", "/api/v2/alerts")]


def test_run_logs_one_line_per_tick_not_one_per_http_request(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    _, result = _run_on_fake_prometheus(
        tmp_path,
        "    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n"
        "    - {name: typo, expr: bad, step_seconds: 0.2}\n",
        ticks=4,
    )
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")]
    assert len(ticks) == 4, ticks
    # The first tick's window is one step wide, so it holds a grid point (the grid is computed in whole
    # milliseconds: in floating point it could hold none, which CI saw): it reads `temp` and fails `typo`.
    # A later tick may fall within the 0.2 s step of the one before: then `temp` reads nothing new, while
    # `typo`, which never read, still asks for what it missed.
    assert ticks[0] == "tick: queries read 1, failed 1 (typo); alerts raised 0, resolved 0", ticks
    later = re.compile(
        r"tick: queries read [01], failed (1 \(typo\)|0 \(none due: a query's step_seconds\))"
        r"; alerts raised 0, resolved 0"
    )
    assert all(later.fullmatch(t) for t in ticks[1:]), ticks


def test_a_tick_line_counts_what_that_tick_read_not_what_the_warm_up_failed(caplog):
    # The warm-up's hour was too long for Prometheus; the first tick read the query well and logged
    # "tick: queries read 0, failed 1 (temp)": the warm-up's failure counted as the tick's.
    clock, ok = FakeClock(), [False]

    def answer(request: httpx.Request) -> httpx.Response:
        if not ok[0]:
            body = {"status": "error", "errorType": "timeout", "error": "query timed out in query execution"}
            return httpx.Response(503, json=body)
        point = [float(request.url.params["end"]), "1"]
        result = [{"metric": {"gpu": "0"}, "values": [point]}]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(answer))
    prom = PromQLSource("http://prom:9090", [PromQuery("temp", "temp")], clock, client=client)
    tick_log = anomaly_cmd.TickLog([prom], None, lambda alert: None)
    caplog.set_level(logging.INFO, logger=anomaly_cmd.logger.name)

    def tick() -> str:
        caplog.clear()
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
        tick_log.after()
        return next(r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:"))

    prom.read(clock.time() - 3600, clock.time())  # the warm-up, before the first tick
    ok[0] = True
    assert tick() == "tick: queries read 1, failed 0; alerts raised 0, resolved 0"
    ok[0] = False
    assert tick() == "tick: queries read 0, failed 1 (temp); alerts raised 0, resolved 0"
    prom.close()


def test_a_tick_line_in_an_outage_names_a_few_failed_queries_not_every_one(caplog):
    clock = FakeClock()
    client = httpx.Client(
        base_url="http://prom:9090",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(502, json={"status": "error", "error": "down"})
        ),
    )
    queries = [PromQuery(f"q{i}", f"q{i}") for i in range(24)]
    prom = PromQLSource("http://prom:9090", queries, clock, client=client)
    tick_log = anomaly_cmd.TickLog([prom], None, lambda alert: None)
    caplog.set_level(logging.INFO, logger=anomaly_cmd.logger.name)
    prom.read(clock.time() - 30, clock.time())
    tick_log.after()
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")]
    assert ticks == ["tick: queries read 0, failed 24 (q0, q1, q2 and 21 more); alerts raised 0, resolved 0"]
    prom.close()


def test_a_tick_line_names_the_host_the_alerts_went_to_not_gpuwarden_serve(caplog):
    # With anomaly.alert_url an Alertmanager, every tick said "sent 1 to gpuwarden serve".
    clock = FakeClock()
    answers = httpx.MockTransport(lambda request: httpx.Response(200))
    forwarder = AlertForwarder(
        "http://gw:S3cretPW@am.example:9093/",
        None,
        clock,
        resend_seconds=30,
        client=httpx.Client(transport=answers),
    )
    tick_log = anomaly_cmd.TickLog([], forwarder, forwarder.on_alert)
    caplog.set_level(logging.INFO, logger=anomaly_cmd.logger.name)
    tick_log.on_alert(Alert({"alertname": "GpuHot", "gpu": "0"}, starts_at=clock.now()))
    tick_log.after()
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")]
    assert ticks == [
        "tick: queries read 0, failed 0 (none due: a query's step_seconds); alerts raised 1,"
        " resolved 0; sent 1 to am.example:9093"
    ]
    forwarder.close()


def test_run_warns_when_a_query_step_is_longer_than_the_tick(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  infer_every_seconds: 5\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
    )
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    # Whether the 30 s query is due at the one tick depends on the clock: read (and refused: exit 1, nothing
    # scored) or not due (exit 0, nothing failed).
    assert result.exit_code == (1 if "source prometheus down" in result.stderr else 0), result.output
    (line,) = [line for line in result.stderr.splitlines() if "query temp: step_seconds" in line]
    located = f"{cfg}:6: anomaly.queries[0].step_seconds: query temp: step_seconds 30 is longer than"
    assert f"{located} anomaly.infer_every_seconds 5" in line  # the query's line: step_seconds left unset
    # What it means for alerts: the ticks between two reads are not quiet ticks (4 reads, 30 s apart).
    assert "the ticks between its reads neither raise nor resolve its alerts" in line
    assert "resolve 120 s (signatures) to 720 s (learned detectors) after the fault ends" in line


def test_run_without_queries_suggests_config():
    result = runner.invoke(app, ["anomaly", "run", "--ticks", "1"])
    assert result.exit_code == 1 and "pass --config FILE" in result.stderr


def test_run_prints_a_query_error_as_it_is_not_as_markup(tmp_path):
    prometheus = _Prometheus()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"anomaly:\n  prometheus_url: {prometheus.url}\n  queries:\n    - {{name: typo, expr: bad}}\n"
    )
    try:
        result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    finally:
        prometheus.close()
    assert result.exit_code == 1, result.output  # its only query failed: nothing was scored
    assert "HTTP 400: parse error [bad]" in result.stderr


def test_run_refuses_an_unknown_detector_naming_the_line_without_a_traceback(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("anomaly:\n  detectors: [adaptive, bogus]\n  queries:\n    - {name: t, expr: up}\n")
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"{cfg}:2: anomaly.detectors: unknown detector(s) ['bogus']" in " ".join(result.output.split())


def test_run_refuses_a_negative_tick_count():
    result = runner.invoke(app, ["anomaly", "run", "--ticks", "-1"])  # it ran nothing and exited 0
    assert result.exit_code == 2 and "--ticks" in result.output


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_score_and_evaluate_refuse_a_fifo_or_a_device_instead_of_hanging_or_filling_memory(tmp_path, kind):
    # /dev/zero had evaluate's windows reader killed for memory, and a FIFO blocked it until killed.
    if kind == "fifo":
        special = tmp_path / "pipe"
        os.mkfifo(special)
    else:
        special = Path("/dev/zero")
    score = runner.invoke(
        app, ["anomaly", "score", "--input", str(special), "--output", str(tmp_path / "o.csv")]
    )
    assert score.exit_code == 1 and "not a regular file" in score.output
    data = tmp_path / "data"
    data.mkdir()
    evaluate = runner.invoke(
        app, ["anomaly", "evaluate", "nab", "--data", str(data), "--windows", str(special)]
    )
    assert evaluate.exit_code == 1 and "not a regular file" in evaluate.output
    assert not (tmp_path / "o.csv").exists()


def test_run_warns_at_start_of_each_detector_that_lacks_queries_it_reads(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  detectors: [adaptive, multivariate, thermal, signatures]\n"
        "  queries:\n    - {name: DCGM_FI_DEV_POWER_USAGE, expr: DCGM_FI_DEV_POWER_USAGE}\n"
        "    - {name: DCGM_FI_DEV_XID_ERRORS, expr: DCGM_FI_DEV_XID_ERRORS}\n"
    )
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 1, result.output  # warned at start; then nothing could be read
    warned = [" ".join(w.split()) for w in " ".join(result.stderr.split("\n")).split("warning:")[1:]]
    assert len(warned) == 3, warned  # adaptive scores what there is; each other detector lacks something
    multi, thermal, signatures = warned
    assert f"{cfg}:5: anomaly.queries: detector 'multivariate' reads queries named DCGM_FI_DEV_GPU" in multi
    assert "DCGM_FI_DEV_FB_USED" in multi and "DCGM_FI_DEV_POWER_USAGE," not in multi
    assert "detector 'thermal' reads queries named DCGM_FI_DEV_GPU_TEMP, which" in thermal
    assert (
        "detector 'signatures' reads queries named gpuwarden_gpu_up, DCGM_FI_DEV_CLOCK_THROTTLE_REASONS,"
        " DCGM_FI_DEV_ECC_DBE_VOL_TOTAL," in signatures
    )
    assert "DCGM_FI_PROF_SM_ACTIVE, which" in signatures


def test_run_sends_range_queries_guarded_as_configured_and_warns_of_one_it_cannot_guard(tmp_path):
    prometheus = FakePrometheus()
    try:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(
            f"anomaly:\n  prometheus_url: {prometheus.url}\n  detectors: [adaptive]\n  queries:\n"
            "    - {name: bare, expr: 'rate(x[5m])', adaptive: true}\n"
            "    - {name: per_pod, expr: 'sum by (pod) (rate(y[5m]))', adaptive: true, guard: true}\n"
            "    - {name: total, expr: 'sum(rate(y[5m]))', adaptive: true}\n"
            "    - {name: scaled, expr: 'rate(z[5m]) * 8', adaptive: true}\n"
        )
        result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
        sent = {r["query"] for r in prometheus.requests}
    finally:
        prometheus.close()
    assert sent >= {
        "rate(x[5m]) and x",
        "sum by (pod) (rate(y[5m]) and y)",
        "sum(rate(y[5m]))",
        "rate(z[5m]) * 8",
    }
    warned = [" ".join(w.split()) for w in " ".join(result.stderr.split("\n")).split("warning:")[1:]]
    assert len(warned) == 1, warned
    assert warned[0].startswith(
        f"{cfg}:8: anomaly.queries[3].expr: query 'scaled': when its target goes away"
    )


@pytest.mark.parametrize(
    ("terminal", "flags", "shown"),
    [
        pytest.param(True, [], True, id="terminal"),
        pytest.param(True, ["--quiet"], False, id="terminal-quiet"),
        pytest.param(False, [], False, id="pipe"),
    ],
)
def test_score_shows_its_progress_on_a_terminal_only(tmp_path, monkeypatch, terminal, flags, shown):
    # A million rows take minutes: at a terminal a bar says how far it got; a pipe or a log gets no noise.
    monkeypatch.setattr(univariate, "PROGRESS_EVERY", 100, raising=False)
    stderr = io.StringIO()
    monkeypatch.setattr(
        anomaly_score, "err_console", CliConsole(file=stderr, force_terminal=terminal, width=100)
    )
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out), *flags])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{out}: 600 rows, ")
    assert ("scoring" in stderr.getvalue() and "600/600" in stderr.getvalue()) is shown
    assert stderr.getvalue() == "" or shown


@pytest.mark.parametrize("spelling", ["-", "/dev/stdout"])
def test_score_to_stdout_keeps_its_summary_off_the_csv_stream(tmp_path, spelling):
    # `... --output /dev/stdout | next-tool` read "N rows, M alerts" as a last CSV row: a corrupt file.
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    assert runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)]).exit_code == 0
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", spelling])
    assert result.exit_code == 0, result.output
    assert result.stdout == out.read_text()
    assert result.stderr.startswith("stdout: 600 rows, " if spelling == "-" else f"{spelling}: 600 rows, ")


def test_run_says_at_start_where_it_reads_serves_and_sends_before_its_warm_up(tmp_path, caplog):
    """Before the warm-up (an hour of history: tens of seconds on a large fleet) it logged nothing, so an
    operator could not tell where /metrics was served or where alerts went until the first tick."""
    caplog.set_level(logging.INFO)
    url, result = _run_on_fake_prometheus(
        tmp_path, "    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n", ticks=1
    )
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name == "gpuwarden.cli.anomaly_cmd"]
    assert lines[0] == (
        f"anomaly run: 1 query from {url} every 0.2 s; /metrics not served (--port 0);"
        " alerts printed as JSON lines (no anomaly.alert_url); warming up from the last 24 s of history"
    ), lines


def test_run_says_at_start_the_prometheus_it_reads_without_the_password_in_its_url(tmp_path, caplog):
    """A Prometheus behind basic auth (``http://user:password@host``, which httpx sends): the start line
    logged the URL whole, password and all, where the source's own errors hide it."""
    caplog.set_level(logging.INFO)
    url, result = _run_on_fake_prometheus(
        tmp_path, "    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n", 1, "gw:s3cret"
    )
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name == "gpuwarden.cli.anomaly_cmd"]
    assert lines[0].startswith(f"anomaly run: 1 query from {url.replace('://', '://gw:***@')} every"), lines
    assert "s3cret" not in caplog.text + result.output


def test_run_says_where_it_serves_metrics_with_an_ipv6_address_in_brackets(tmp_path, caplog):
    """``http://:::9701/metrics`` (listen_address ``::``) is no URL a person or a scraper can use."""
    caplog.set_level(logging.INFO)
    port = free_port()
    _, result = _run_on_fake_prometheus(
        tmp_path,
        "    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n",
        1,
        listen=("::1", port),
    )
    assert result.exit_code == 0, result.output
    lines = [r.getMessage() for r in caplog.records if r.name == "gpuwarden.cli.anomaly_cmd"]
    assert f"; /metrics on http://[::1]:{port}/metrics; " in lines[0], lines


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            lambda src: None,
            "error: --input '{src}': cannot read it: No such file or directory; give a CSV file with the"
            " header timestamp,value",
        ),
        (
            lambda src: src.mkdir(),
            "error: --input '{src}': cannot read it: Is a directory; give a CSV file with the header"
            " timestamp,value",
        ),
        (
            lambda src: src.write_text(""),
            "error: --input '{src}': is empty; write the header timestamp,value",
        ),
        (
            lambda src: src.write_text("timestamp,value\nsoon,1\n"),
            "error: --input '{src}': line 2: 'soon' is not a time;",
        ),
        (
            lambda src: src.write_text("timestamp,value\n2024-01-01 00:00:00,x\n"),
            "error: --input '{src}': line 2: 'x' is not a number",
        ),
        (  # said Python's "'utf-8' codec can't decode byte 0xff in position 0: ...", and no fix
            lambda src: src.write_bytes(b"timestamp,value\n\xff,1\n"),
            "error: --input '{src}': cannot read it: not UTF-8 text (byte 0xff at offset 16); save it as"
            " UTF-8",
        ),
    ],
    ids=["missing", "a-directory", "empty", "bad-time", "bad-value", "not-utf-8"],
)
def test_score_names_a_bad_input_as_every_bad_option_is_named(tmp_path, make, said):
    """``anomaly score`` said ``error: input: cannot read in.csv: ...`` and ``error: timestamp: in.csv line 2:
    ...``: a field name no option has, where every other refusal says ``OPTION VALUE: reason``."""
    src = tmp_path / "in.csv"
    make(src)
    result = runner.invoke(
        app, ["anomaly", "score", "--input", str(src), "--output", str(tmp_path / "o.csv")]
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and output.startswith(said.format(src=src)), output


def _data_as_a_file(tmp: Path) -> None:
    shutil.rmtree(tmp / "data")
    (tmp / "data").touch()


@pytest.mark.parametrize(
    ("windows", "change", "said"),
    [
        (
            {},
            lambda tmp: (tmp / "w.json").unlink(),
            "--windows '{w}': cannot read file: No such file or directory; give NAB's window file, its"
            " labels/combined_windows.json",
        ),
        (
            {},
            lambda tmp: ((tmp / "w.json").unlink(), (tmp / "w.json").mkdir()),
            "--windows '{w}': cannot read file: Is a directory; give NAB's window file, its"
            " labels/combined_windows.json",
        ),
        ({}, lambda tmp: (tmp / "w.json").write_text("{"), "--windows '{w}': is not JSON: "),
        (["c/x.csv"], None, "--windows '{w}': expected an object of file name -> windows"),
        (
            {"c/x.csv": [["soon", "2024-01-02"]]},
            None,
            "--windows '{w}': c/x.csv window 0: 'soon' is not a time",
        ),
        (
            {"c/nope.csv": [], "c/zz.csv": []},
            None,
            "--data '{d}': holds none of the 2 files {w} names (such as c/nope.csv); {give}",
        ),
        ({"c/x.csv": []}, lambda tmp: shutil.rmtree(tmp / "data"), "--data '{d}': no such folder; {give}"),
        ({"c/x.csv": []}, _data_as_a_file, "--data '{d}': not a folder; {give}"),
        (
            {"c/x.csv": []},
            lambda tmp: (tmp / "data" / "c" / "x.csv").write_text("timestamp,value\nsoon,1\n"),
            "--data '{d}': {d}/c/x.csv line 2: 'soon' is not a time;",
        ),
    ],
    ids=[
        "missing-windows",
        "windows-a-directory",
        "windows-not-json",
        "windows-not-an-object",
        "bad-window",
        "no-data",
        "missing-data",
        "data-not-a-folder",
        "bad-data-file",
    ],
)
def test_evaluate_nab_names_a_bad_file_as_every_bad_option_is_named(tmp_path, windows, change, said):
    """``anomaly evaluate nab`` said ``error: windows: cannot read windows file w.json: ...`` and ``error:
    input: ...`` for a file of ``--data``; a ``--data`` that does not exist, is no folder or holds none of
    the files said "no data file named in W exists under D", neither the reason nor what to give."""
    args = evaluate_args(tmp_path, windows)
    if change is not None:
        change(tmp_path)
    result = runner.invoke(app, [*args, "-q"])
    output = " ".join(result.output.split())
    give = "give the folder of NAB's data files (category/file.csv), its data/"
    expected = "error: " + said.format(w=tmp_path / "w.json", d=tmp_path / "data", give=give)
    assert result.exit_code == 1 and output.startswith(expected), output


def test_run_keeps_its_state_in_the_state_file_and_takes_it_up_at_its_next_start(tmp_path, caplog):
    """``--state-file``: saved at the end of the ticks, private; the next start restores it and replays only
    the history after it."""
    state = tmp_path / "anomaly.state.npz"
    queries = "    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n"
    prometheus = _Prometheus()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"anomaly:\n  prometheus_url: {prometheus.url}\n  infer_every_seconds: 0.2\n  queries:\n{queries}"
    )
    args = ["anomaly", "run", "--config", str(cfg), "--ticks", "2", "--port", "0", "--state-file", str(state)]
    try:
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        assert oct(state.stat().st_mode & 0o777) == "0o600"
        with caplog.at_level(logging.INFO):
            second = runner.invoke(app, args)
    finally:
        prometheus.close()
    assert second.exit_code == 0, second.output
    assert f"anomaly state restored from {state}" in caplog.text
    assert "after the state snapshot" in caplog.text


def test_run_refuses_a_state_file_in_a_directory_that_does_not_exist(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n")
    state = tmp_path / "gone" / "s.npz"
    result = runner.invoke(
        app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--state-file", str(state)]
    )
    assert result.exit_code == 1, result.output
    said = " ".join(result.stderr.split())
    assert said.endswith(
        f"error: --state-file '{state}': cannot write in {state.parent}: it does not exist; make it, or give"
        " a file in a directory that exists"
    ), said


def test_run_warns_and_keeps_no_state_where_the_default_state_file_cannot_be_written(monkeypatch):
    """The default (not written in the file) must not stop an ``anomaly run`` whose working directory is
    read-only, as none did before there was a state file; one chosen is refused."""
    from gpuwarden.config_anomaly import AnomalyConfig  # noqa: PLC0415
    from gpuwarden.errors import InputError  # noqa: PLC0415

    def unwritable(path: Path, field: str) -> None:
        raise InputError(f"{field} '{path}': cannot write in .: it is not writable")

    stderr = io.StringIO()
    monkeypatch.setattr(anomaly_run, "check_writable", unwritable)
    monkeypatch.setattr(anomaly_run, "err_console", CliConsole(file=stderr, width=400))
    assert anomaly_cmd._state_path(AnomalyConfig(), None, 0) is None
    said = stderr.getvalue()
    assert "warning: anomaly.state_file 'gpuwarden-anomaly.state.npz': cannot write in ." in said
    assert "is not kept across a restart" in said
    with pytest.raises(typer.Exit):
        anomaly_cmd._state_path(AnomalyConfig(state_file="kept.npz"), None, 0)


NAB_GIVE_ALL = "give the whole corpus, or --allow-missing to score the 1 it holds"


def test_evaluate_nab_refuses_a_data_folder_that_lacks_files_the_windows_name(tmp_path):
    # It scored the files it found without a word: a partial download gave a score that looked like the
    # whole corpus's. c/x.csv is there, c/y.csv and c/z.csv are not.
    args = evaluate_args(tmp_path, {"c/x.csv": [], "c/y.csv": [], "c/z.csv": []})
    result = runner.invoke(app, [*args, "-q"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1, said
    assert said.startswith(
        f"error: --data '{tmp_path / 'data'}': lacks 2 of the 3 files {tmp_path / 'w.json'} names"
        f" (c/y.csv, c/z.csv); {NAB_GIVE_ALL}"
    ), said


@pytest.mark.parametrize("output", ["json", "text"])
def test_evaluate_nab_scores_what_the_data_folder_holds_when_allowed_and_says_what_it_lacks(tmp_path, output):
    args = evaluate_args(tmp_path, {"c/x.csv": [], "c/y.csv": [], "c/z.csv": []})
    result = runner.invoke(app, [*args, "-q", "--allow-missing", "-o", output])
    assert result.exit_code == 0, result.output
    assert "scored 1 of 3 files; --data lacks c/y.csv, c/z.csv" in " ".join(result.stderr.split())
    if output == "json":
        report = json.loads(result.stdout)
        assert report["splits"]["all"]["files"] == 1
        assert report["missing_files"] == ["c/y.csv", "c/z.csv"]
    whole = runner.invoke(app, [*evaluate_args(tmp_path / "whole", {"c/x.csv": []}), "-q", "-o", "json"])
    assert json.loads(whole.stdout)["missing_files"] == [] and whole.stderr == ""


@pytest.mark.parametrize(
    ("missing", "refused"),
    [("c/y.csv", False), ("c/z.csv", True)],
    ids=["held-out-file-missing", "tuning-file-missing"],
)
def test_evaluate_nab_tune_only_minds_only_the_tuning_files_missing(tmp_path, missing, refused):
    # --tune-only leaves the held-out files out on purpose: one missing changes nothing it scores. c/x.csv
    # and c/z.csv are of the tuning split, c/y.csv held out.
    args = evaluate_args(tmp_path, {"c/x.csv": [], missing: []})
    result = runner.invoke(app, [*args, "-q", "--tune-only", "-o", "json"])
    said = " ".join(result.output.split())
    if refused:
        assert result.exit_code == 1, said
        assert f"lacks 1 of the 2 tuning files {tmp_path / 'w.json'} names (c/z.csv);" in said
        return
    assert result.exit_code == 0 and result.stderr == "", said
    report = json.loads(result.stdout)
    assert report["splits"]["all"]["files"] == 1 and report["missing_files"] == []
