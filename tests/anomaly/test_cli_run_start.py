"""``anomaly run`` at its start: the config, URLs and ports it refuses, the warnings and lines it gives before
its warm-up, and its state file."""

from __future__ import annotations

import io
import logging
import os
import socket
from pathlib import Path

import pytest
import typer

from gpuwarden.cli import anomaly_cmd, anomaly_run, app, startup
from gpuwarden.cli.consoles import CliConsole
from tests.anomaly.cli_runs import _Prometheus, _run_on_fake_prometheus, runner
from tests.anomaly.fakes import FakePrometheus
from tests.integration.servers import free_port


def test_run_refuses_a_config_without_queries():
    result = runner.invoke(app, ["anomaly", "run", "--ticks", "1"])
    assert result.exit_code == 78
    assert "anomaly.queries" in result.output


def test_run_refuses_an_alert_url_without_a_token_or_scheme(tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    base = "anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    cfg.write_text(base + "  alert_url: http://127.0.0.1:9700\n")
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 78 and "GPUWARDEN_API_TOKEN" in result.output
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    cfg.write_text(base + "  alert_url: 127.0.0.1:9700\n")
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 78 and "anomaly.alert_url" in " ".join(result.output.split())


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
    assert result.exit_code == 75
    assert (
        f"--port {port}: cannot listen on 127.0.0.1:{port}: Address already in use; another process listens"
        " there; stop it or choose another port" in " ".join(result.output.split())
    )


def test_a_metrics_port_of_the_file_in_use_is_said_at_its_line_as_serve_and_the_exporter_say_it(tmp_path):
    """It said "anomaly.port / anomaly.listen_address: cannot serve /metrics on ...: Address already in use":
    neither the file's line nor what to do, where serve and the exporter name their port's."""
    cfg = tmp_path / "c.yaml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg.write_text(
            "anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
            f"  port: {port}\n  state_file: {tmp_path / 's.npz'}\n"
        )
        result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg)])
    said = " ".join(result.output.split())
    assert result.exit_code == 75, said
    assert (
        f"error: {cfg}:4: anomaly.port: cannot listen on 127.0.0.1:{port}: Address already in use; another"
        " process listens there; stop it or choose another port" in said
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no state file, nor its lock


def test_run_refused_its_metrics_port_lets_go_of_its_state_file(tmp_path):
    """Its hold on the state file ends with it: a later ``anomaly run`` in the same process (a test, a
    script driving the CLI) may take the file."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n")
    args = ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--state-file", str(tmp_path / "s.npz")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert runner.invoke(app, [*args, "--port", str(taken.getsockname()[1])]).exit_code == 75
    result = runner.invoke(app, [*args, "--port", "0"])
    assert "another process keeps its state" not in " ".join(result.output.split()), result.output


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
    assert result.exit_code == 78 and "pass --config FILE" in result.stderr


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
    assert result.exit_code == 78 and isinstance(result.exception, SystemExit), result.output
    assert f"{cfg}:2: anomaly.detectors: unknown detector(s) ['bogus']" in " ".join(result.output.split())


def test_run_refuses_a_negative_tick_count():
    result = runner.invoke(app, ["anomaly", "run", "--ticks", "-1"])  # it ran nothing and exited 0
    assert result.exit_code == 2 and "--ticks" in result.output


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
        " alerts printed as JSON lines (no anomaly.alert_url); warming up from the last 64 s of history"
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
    assert result.exit_code == 78, result.output
    said = " ".join(result.stderr.split())
    assert said.endswith(
        f"error: --state-file '{state}': cannot write in {state.parent}: it does not exist; make it, or give"
        " a file in a directory that exists"
    ), said


def test_run_refuses_the_files_unwritable_state_file_with_its_line_unless_an_option_leaves_it_unread(
    tmp_path,
):
    """As ``config validate`` says it, with the file and line; ``--state-file`` or ``--ticks`` does not use
    the setting, so it refuses nothing then."""
    cfg = tmp_path / "c.yaml"
    state = tmp_path / "gone" / "s.npz"
    cfg.write_text(
        f"anomaly:\n  queries:\n    - {{name: temp, expr: DCGM_FI_DEV_GPU_TEMP}}\n  state_file: {state}\n"
    )
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--port", "0"])
    assert result.exit_code == 78, result.output
    said = " ".join(result.stderr.split())
    assert f"error: {cfg}:4: anomaly.state_file: '{state}': cannot write in {state.parent}: it does" in said
    prometheus = _Prometheus()
    try:
        cfg.write_text(cfg.read_text() + f"  prometheus_url: {prometheus.url}\n")
        for option in (["--ticks", "1"], ["--ticks", "1", "--state-file", str(tmp_path / "s.npz")]):
            result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--port", "0", *option])
            assert result.exit_code == 0 and "anomaly.state_file" not in result.output, (
                option,
                result.output,
            )
    finally:
        prometheus.close()


def test_run_warns_and_keeps_no_state_where_the_default_state_file_cannot_be_written(monkeypatch):
    """The default (not written in the file) must not stop an ``anomaly run`` whose working directory is
    read-only, as none did before there was a state file; one chosen is refused."""
    from gpuwarden.config_anomaly import AnomalyConfig  # noqa: PLC0415
    from gpuwarden.errors import InputError  # noqa: PLC0415

    def unwritable(path: Path, field: str) -> None:
        raise InputError(f"{field} '{path}': cannot write in .: it is not writable")

    stderr = io.StringIO()
    monkeypatch.setattr(anomaly_run, "check_writable", unwritable)
    monkeypatch.setattr(startup, "err_console", CliConsole(file=stderr, width=400))
    assert anomaly_cmd._state_path(AnomalyConfig(), None, 0) is None
    said = stderr.getvalue()
    assert "warning: anomaly.state_file 'gpuwarden-anomaly.state.npz': cannot write in ." in said
    assert "is not kept across a restart" in said
    with pytest.raises(typer.Exit):
        anomaly_cmd._state_path(AnomalyConfig(state_file="kept.npz"), None, 0)


def test_run_refuses_a_state_file_that_is_another_programs_file_and_leaves_it_as_it_was(tmp_path):
    """``state_file`` naming the incident store (or the configuration) passed ``config validate``; ``anomaly
    run`` warned that the "snapshot" was "cut short or corrupt?" and its first save replaced the file."""
    store = tmp_path / "incidents.db"
    store.write_bytes(b"SQLite format 3\x00" + bytes(100))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"anomaly:\n  queries:\n    - {{name: temp, expr: DCGM_FI_DEV_GPU_TEMP}}\n  state_file: {store}\n"
    )
    reason = (
        "it is not an anomaly state file (an .npz that anomaly run wrote), and its first save would replace"
        " it"
    )
    for args in (["config", "validate", str(cfg)], ["anomaly", "run", "--config", str(cfg), "--port", "0"]):
        result = runner.invoke(app, args)  # validate first: it said ok, and anomaly run then ran
        assert result.exit_code == (1 if args[0] == "config" else 78), result.output
        said = " ".join(result.stderr.split())
        assert f"error: {cfg}:4: anomaly.state_file: '{store}': {reason}" in said, said
    args = ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--state-file", str(store)]
    option = runner.invoke(app, args)
    assert option.exit_code == 78, option.output
    assert f"error: --state-file '{store}': {reason}" in " ".join(option.stderr.split())
    assert store.read_bytes().startswith(b"SQLite format 3\x00")


def test_a_state_file_of_zeros_a_power_cut_left_is_taken_as_a_damaged_snapshot_not_refused(tmp_path):
    """Refused as another program's file, it would keep ``anomaly run`` from starting again after a power
    cut; it is warned of and saved over, as a snapshot cut short is."""
    state = tmp_path / "anomaly.state.npz"
    state.write_bytes(bytes(4096))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"anomaly:\n  queries:\n    - {{name: temp, expr: DCGM_FI_DEV_GPU_TEMP}}\n  state_file: {state}\n"
    )
    result = runner.invoke(app, ["config", "validate", str(cfg)])
    assert result.exit_code == 0, result.output


def test_run_refuses_a_state_file_that_is_a_fifo_rather_than_hang_reading_it(tmp_path):
    """Taking up the "snapshot" waited on the FIFO for a writer: ``anomaly run --ticks 1`` never ended."""
    fifo = tmp_path / "state.npz"
    os.mkfifo(fifo)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"anomaly:\n  queries:\n    - {{name: temp, expr: DCGM_FI_DEV_GPU_TEMP}}\n  state_file: {fifo}\n"
    )
    reason = "it is not a regular file, and its first save would replace it"
    for args in (["config", "validate", str(cfg)], ["anomaly", "run", "--config", str(cfg), "--port", "0"]):
        result = runner.invoke(app, args)  # validate first: it said ok, and anomaly run then hung
        assert result.exit_code == (1 if args[0] == "config" else 78), result.output
        assert f"error: {cfg}:4: anomaly.state_file: '{fifo}': {reason}" in " ".join(result.stderr.split())
