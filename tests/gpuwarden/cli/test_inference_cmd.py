"""`gpuwarden inference-server` and `gpuwarden loadgen` as a person runs them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.cli.stopping import otlp_collector, run_then_sigterm
from tests.integration.servers import free_port, ipv6_loopback, wait_http_ok

runner = BuiltCliRunner()
CLI = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
OTLP = "http://127.0.0.1:4318/v1/traces"


def test_the_server_says_where_it_listens_and_prints_no_span_by_default() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "inference-server", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # printed once the port is bound
        assert first.startswith(f"inference server on http://127.0.0.1:{port} "), first
        assert "spans exported: none" in first
        body = {"model": "gpuwarden-toy-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        for _ in range(3):
            answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10)
            assert answer.status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "gpuwarden_inference_request_duration_seconds" in metrics  # traced all the same
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert out == ""  # not 40 lines of span JSON per request


def test_otel_sdk_disabled_keeps_the_request_metrics_and_the_start_up_line_says_spans_are_not_exported() -> (
    None
):
    first, metrics = _first_line_and_metrics(["--otlp-endpoint", OTLP], OTEL_SDK_DISABLED="true")
    assert "tracing on, spans exported: none (OTEL_SDK_DISABLED=true)" in first, first
    assert (
        'gpuwarden_inference_requests_total{route="/v1/chat/completions",status_class="2xx"} 1.0' in metrics
    )


def test_tracing_enabled_false_in_the_file_turns_tracing_off_without_an_option(tmp_path: Path) -> None:
    """The --tracing option's default (on) beat the file's tracing.enabled: false: it traced all the same."""
    config = tmp_path / "gpuwarden.yaml"
    config.write_text("tracing:\n  enabled: false\n")
    first, metrics = _first_line_and_metrics(["--config", str(config)])
    assert "tracing off, spans exported: none" in first, first
    assert "gpuwarden_inference_requests_total" not in metrics


def test_a_warning_follows_the_start_up_line_where_the_base_otlp_endpoint_ends_in_v1_traces() -> None:
    """Spans went to .../v1/traces/v1/traces, a 404 at every batch, only the URL in the line hinting why."""
    port, base = free_port(), f"http://127.0.0.1:{free_port()}/v1/traces"
    # Unbuffered bytes: a buffered reader's readline() takes in what follows the first line too, and
    # communicate() reads the pipe past that buffer, so the warning went missing whenever it came at once.
    proc = subprocess.Popen(
        [*CLI, "inference-server", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        bufsize=0,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": base},
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().decode()
        # Answered once uvicorn serves: after whatever the start-up logged (a bounded wait, not a readline).
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).status_code == 200
    finally:
        proc.terminate()
        _, rest_bytes = proc.communicate(timeout=30)
    rest = rest_bytes.decode()
    second = rest.splitlines()[0] if rest else ""
    assert f"spans exported: otlp to {base}/v1/traces (from OTEL_EXPORTER_OTLP_ENDPOINT)" in first, first
    assert "WARNING" in second and (
        f"OTEL_EXPORTER_OTLP_ENDPOINT={base} already ends in /v1/traces: it is a base URL, to which"
        " /v1/traces is appended" in second
    ), second
    assert "set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to give the traces URL as is" in second, second


def _first_line_and_metrics(options: list[str], **environ: str) -> tuple[str, str]:
    """An inference server's start-up line and its /metrics after one chat request, with ``options``."""
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "inference-server", "--port", str(port), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **environ},
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        chat_once(port)()
        return first, httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--otlp-endpoint", "ftp://x"], "error: --otlp-endpoint 'ftp://x': is not an http(s) URL"),
        (
            ["--otlp-endpoint", "127.0.0.1:4318"],
            "error: --otlp-endpoint '127.0.0.1:4318': is not an http(s) URL",
        ),
        (  # said as every bad option is, the password hidden as the setting's refusal hides it
            ["--otlp-endpoint", "ftp://u:pw-secret@x"],
            "error: --otlp-endpoint 'ftp://u:***@x': is not an http(s) URL",
        ),
        (
            ["--otlp-endpoint", "ftp://x/v1/traces?access_token=tok-secret"],
            "error: --otlp-endpoint 'ftp://x/v1/traces?access_token=***': is not an http(s) URL",
        ),
        (
            ["--otlp-endpoint", OTLP, "--trace-console"],
            f"error: --otlp-endpoint {OTLP!r}: spans go to one place",
        ),
    ],
    ids=["ftp", "no-scheme", "password", "query-token", "with-trace-console"],
)
def test_a_bad_otlp_endpoint_option_stops_the_server_before_it_starts(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exporters.server  # noqa: PLC0415 - inference-server serves as the exporter does

    def started(_server: object, _sockets: list[socket.socket]) -> None:
        raise AssertionError("the server started")  # the unfixed server started and served

    monkeypatch.setattr(exporters.server, "run_until_stopped", started)
    result = runner.invoke(app, ["inference-server", "--port", str(free_port()), *args])
    assert result.exit_code == 2, (result.exception, result.output)
    assert result.stderr.startswith(message), result.stderr


def test_a_port_in_use_is_one_error_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["inference-server", "--port", str(port)])
    assert result.exit_code == 75
    assert result.stderr == (
        f"error: --port {port}: cannot listen on 127.0.0.1:{port}: Address already in use; another process"
        " listens there; stop it or choose another port\n"
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [("192.0.2.1", "not an address of this machine"), ("a b", "")],  # TEST-NET-1 (RFC 5737): no machine's
    ids=["another-machines-address", "no-host-name"],
)
def test_a_host_this_machine_cannot_listen_on_is_said_with_what_to_give_as_serve_says_it(
    host: str, reason: str
) -> None:
    """``inference-server --host 10.0.0.9`` said only "cannot listen on 10.0.0.9:8000: Cannot assign requested
    address", where ``serve --host`` and ``exporter --listen-address`` say it is not this machine's and what
    to give."""
    result = runner.invoke(app, ["inference-server", "--host", host, "--port", str(free_port())])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 78, result.output
    assert said.startswith(f"error: --host '{host}': cannot listen on it: {reason}"), said
    assert said.endswith("; give an IP address of this machine (0.0.0.0: all of them) or its host name"), said


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_host_is_in_brackets_in_the_start_line_and_a_taken_port_s_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import exporters.server  # noqa: PLC0415 - inference-server serves as the exporter does

    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = runner.invoke(app, ["inference-server", "--host", "::1", "--port", str(port)])
    assert refused.exit_code == 75
    assert refused.stderr.startswith(f"error: --port {port}: cannot listen on [::1]:{port}: Address already")
    monkeypatch.setattr(
        exporters.server, "run_until_stopped", lambda _server, _sockets, _stop: None
    )  # no serving
    started = runner.invoke(app, ["inference-server", "--host", "::1", "--port", str(port)])
    assert started.exit_code == 0, started.output
    assert started.stderr.startswith(f"inference server on http://[::1]:{port} (")


@pytest.mark.parametrize("output", ["text", "json"])
def test_loadgen_against_a_closed_port_asks_whether_the_server_runs(output: str) -> None:
    port = free_port()
    started = time.monotonic()
    result = runner.invoke(
        app, ["loadgen", "--url", f"http://127.0.0.1:{port}", "--requests", "3", "-o", output]
    )
    assert time.monotonic() - started < 20
    assert result.exit_code == 1
    assert f"cannot connect to http://127.0.0.1:{port}: is the server running?" in result.stderr
    assert result.stdout == ""  # no report of nan latencies


BSP_NEVER_ON_ITS_OWN = {"OTEL_BSP_SCHEDULE_DELAY": "600000"}  # spans leave only when flushed at exit


def chat_once(port: int) -> Callable[[], None]:
    def go() -> None:
        body = {"model": "gpuwarden-toy-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        assert (
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=10).status_code
            == 200
        )

    return go


def test_sigterm_flushes_the_buffered_spans_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    with otlp_collector() as collector:
        argv = [
            *CLI,
            "inference-server",
            "--port",
            str(port),
            "--otlp-endpoint",
            f"{collector.base_url}/v1/traces",
        ]
        env = {**os.environ, **BSP_NEVER_ON_ITS_OWN}
        status = run_then_sigterm(
            argv,
            f"http://127.0.0.1:{port}/healthz",
            tmp_path / "server.log",
            env=env,
            meanwhile=chat_once(port),
        )
    assert status == 0, (tmp_path / "server.log").read_text()
    assert [s.name for s in collector.spans] == ["chat gpuwarden-toy-1"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_second_sigterm_during_a_long_stream_stops_the_server_at_once(
    tmp_path: Path, log_format: str
) -> None:
    # The first SIGTERM drains: the stream of 4,000 tokens (200 s here) goes on. A second SIGTERM did
    # nothing (only a second Ctrl-C forced uvicorn's exit, with a CancelledError traceback per request).
    # What it says of both is a log line in the log's format (raw lines broke a JSON log).
    port = free_port()
    config = tmp_path / "gw.yaml"
    config.write_text("tracing:\n  token_seconds: 0.05\n")
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        argv = [*CLI, "inference-server", "--port", str(port), "--config", str(config)]
        argv += ["--log-format", log_format]
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/healthz", proc)
            body = {"model": "gpuwarden-toy-1", "prompt": "hi", "max_tokens": 4000, "stream": True}
            url = f"http://127.0.0.1:{port}/v1/completions"
            with httpx.stream("POST", url, json=body, timeout=30) as stream:
                lines = stream.iter_lines()
                assert next(lines).startswith("data: ")  # streaming
                proc.send_signal(signal.SIGTERM)
                time.sleep(1)
                assert next(lines) is not None and proc.poll() is None  # drains: the stream goes on
                proc.send_signal(signal.SIGTERM)
                status = proc.wait(timeout=20)
                with pytest.raises(httpx.RemoteProtocolError):  # cut short: no [DONE], the body unfinished
                    list(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    said = log.read_text()
    assert status == 0, said
    if log_format == "json":
        said = "\n".join(json.loads(line)["msg"] for line in said.splitlines())  # each line is JSON
    assert "SIGTERM: stopping once 1 request(s) in flight finish" in said
    assert "SIGTERM again: closing the connections of 1 request(s) in flight and stopping now" in said
    assert "Traceback" not in said


def test_standard_otel_variables_choose_the_endpoint_and_the_service_name(tmp_path: Path) -> None:
    port = free_port()
    with otlp_collector() as collector:
        env = {
            **os.environ,
            **BSP_NEVER_ON_ITS_OWN,
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url,
            "OTEL_SERVICE_NAME": "llama-serve",
        }
        run_then_sigterm(
            [*CLI, "inference-server", "--port", str(port)],
            f"http://127.0.0.1:{port}/healthz",
            tmp_path / "server.log",
            env=env,
            meanwhile=chat_once(port),
        )
    assert "spans exported: otlp" in (tmp_path / "server.log").read_text()
    assert collector.paths == ["/v1/traces"]
    [span] = collector.spans
    assert span.resource["service.name"] == "llama-serve"


def test_the_start_up_line_comes_once_the_port_accepts_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that connects on reading the line waits in the backlog rather than being refused while
    uvicorn starts (seen under load: connection refused right after the line)."""
    import exporters.server  # noqa: PLC0415 - inference-server serves as the exporter does

    seen: list[int] = []

    def serve_nothing(_server: object, sockets: list[socket.socket], _stop: object) -> None:
        seen.extend(s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) for s in sockets)

    monkeypatch.setattr(exporters.server, "run_until_stopped", serve_nothing)
    result = runner.invoke(app, ["inference-server", "--port", str(free_port()), "--no-tracing"])
    assert result.exit_code == 0, result.output
    assert "inference server on http://127.0.0.1:" in result.output
    assert seen == [1]


def test_the_server_refuses_headers_past_the_limit_as_serve_does() -> None:
    """It ran uvicorn's protocol as it comes: no deadline on a request's headers and no bound on their size,
    so one client could make it hold what it sent (serve and the exporter answer 431 past 1 MiB)."""
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "inference-server", "--port", str(port), "--no-tracing"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        proc.stderr.readline()  # printed once the port accepts connections
        with socket.create_connection(("127.0.0.1", port)) as big:
            big.settimeout(20)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: " + b"a" * (2 << 20))
            answer = big.recv(200)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert answer.startswith(b"HTTP/1.1 431 "), answer


def test_a_fleet_larger_than_any_simulated_one_is_refused_before_it_is_built() -> None:
    """``--nodes`` had no upper bound: ``--nodes 99999`` spent minutes building the fleet in silence (the
    exporter's and the config's ``--simulate`` stop at 2048 nodes)."""
    result = runner.invoke(app, ["inference-server", "--nodes", "99999"])
    assert result.exit_code == 2, result.output
    assert result.stderr == "error: --nodes 99999: use a whole number from 1 to 2048\n"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["--gpu", "9", "--gpus-per-node", "2"],
            "error: --gpu 9: node-01 has no GPU 9; valid indices: 0..1\n",
        ),
        (
            ["--node", "node-09", "--nodes", "2"],
            "error: --node 'node-09': unknown node 'node-09'; valid nodes: node-01, node-02\n",
        ),
    ],
    ids=["gpu", "node"],
)
def test_a_node_or_gpu_the_fleet_lacks_is_said_as_the_option_given(args: list[str], said: str) -> None:
    """README: a bad option is said `error: OPTION VALUE: what to give`; these said the fleet's field name
    (`error: gpu: node-01 has no GPU 9; ...`), which is no option of the command."""
    result = runner.invoke(app, ["inference-server", "--port", str(free_port()), *args])
    assert result.exit_code == 2, result.output
    assert result.stderr == said
