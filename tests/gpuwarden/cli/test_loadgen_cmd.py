"""`gpuwarden loadgen` as a person runs it: its exit status says whether requests failed, and --duration
bounds a run against a server that never answers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()
CLI = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]


class EveryThirdFails(BaseHTTPRequestHandler):
    """An OpenAI-like route where every third request answers 503."""

    protocol_version = "HTTP/1.1"
    count = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        with self.lock:
            type(self).count += 1
            failing = type(self).count % 3 == 0
        body = json.dumps({"error": {"message": "gpu lost"}} if failing else {"choices": []}).encode()
        self.send_response(503 if failing else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def flaky_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EveryThirdFails)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_help_states_the_exit_status_rule() -> None:
    said = " ".join(runner.invoke(app, ["loadgen", "--help"]).output.split())
    assert "--allow-errors" in said
    assert "Exit status: 0 when every finished request succeeded; 1 when any failed" in said


@pytest.mark.parametrize(
    "shown",
    [
        "--requests <int> [1<=x<=1000000]",
        "--rate <float> [x>=0]",
        "--concurrency <int> [1<=x<=1024]",
        "--max-tokens <int> [1<=x<=4096]",
        "--duration <float> [0<x<=3600]",
    ],
)
def test_help_shows_the_bounds_of_each_number(shown: str) -> None:
    """README: ``--help`` shows each bound; loadgen showed ``--requests <int>``, refusing 0 once run."""
    result = runner.invoke(app, ["loadgen", "--help"], env={"COLUMNS": "200"})
    assert shown in " ".join(result.output.replace("│", " ").split()), result.output


@pytest.mark.parametrize(("flags", "code"), [([], 1), (["--allow-errors"], 0)], ids=["strict", "allowed"])
def test_failed_requests_make_the_exit_status_1_unless_allowed(
    flaky_server: str, flags: list[str], code: int
) -> None:
    argv = ["loadgen", "--url", flaky_server, "--requests", "6", "--rate", "0", "--concurrency", "1"]
    result = runner.invoke(app, [*argv, "-o", "json", *flags])
    assert result.exit_code == code, result.output
    report = json.loads(result.stdout)
    assert report["ok"] == 4
    assert report["errors"] == {"503": 2}
    assert report["latency"]["p50"] is not None


def test_a_server_that_never_answers_is_cut_at_the_duration_and_reported_unfinished() -> None:
    with socket.socket() as hole:  # the kernel accepts connections; nobody ever answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        argv = ["loadgen", "--url", url, "--requests", "3", "--rate", "0", "--duration", "1"]
        result = runner.invoke(app, argv)
    assert result.exit_code == 1
    assert "requests 3  ok 0  failed 0  unfinished 3" in result.stdout
    assert "cannot connect" not in result.output  # it did connect; it got no answer


class TwoThenHang(BaseHTTPRequestHandler):
    """Answers the first two requests; the others hang until the test ends."""

    protocol_version = "HTTP/1.1"
    arrived = 0
    lock = threading.Lock()
    release = threading.Event()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        with self.lock:
            type(self).arrived += 1
            hang = type(self).arrived > 2
        if hang:
            self.release.wait(60)
            return
        body = b'{"choices": []}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_ctrl_c_prints_the_report_of_what_finished_and_exits_130() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), TwoThenHang)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def interrupt_once_all_arrived() -> None:
        while TwoThenHang.arrived < 5:
            threading.Event().wait(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C at the terminal

    threading.Thread(target=interrupt_once_all_arrived, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        args = ["loadgen", "--url", url, "--rate", "0", "--requests", "5", "--concurrency", "5"]
        result = runner.invoke(app, [*args, "--duration", "600", "-o", "json"])
    finally:
        TwoThenHang.release.set()
        server.shutdown()
        server.server_close()
    assert result.exit_code == 130, result.output
    report = json.loads(result.stdout)
    assert report["sent"] == 5 and report["unfinished"] >= 3 and report["ok"] + report["unfinished"] == 5
    assert report["warnings"][0].startswith("interrupted after")


def test_sigterm_prints_the_report_of_what_finished_and_exits_143() -> None:
    # SIGTERM (`timeout 60 gpuwarden loadgen ...`, `kill`, a pod's stop) killed it with no report at all:
    # exit 143 and nothing on stdout, so `-o json` piped to jq read nothing. It now ends the run as Ctrl-C.
    TwoThenHang.arrived, TwoThenHang.release = 0, threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), TwoThenHang)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    argv = [*CLI, "loadgen", "--url", url, "--rate", "0", "--requests", "5", "--concurrency", "5"]
    proc = subprocess.Popen(
        [*argv, "--duration", "600", "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        while TwoThenHang.arrived < 5 and proc.poll() is None:
            threading.Event().wait(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        TwoThenHang.release.set()
        server.shutdown()
        server.server_close()
    assert proc.returncode == 143, err.decode()
    report = json.loads(out)
    assert report["sent"] == 5 and report["unfinished"] >= 3 and report["ok"] + report["unfinished"] == 5
    assert report["warnings"][0].startswith("interrupted after"), report["warnings"]
    assert "(SIGTERM):" in report["warnings"][0]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--rate", "-1"], "--rate"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--url", "http://example.com:8000"], "--url"),
    ],
    ids=["rate", "max-tokens", "remote-url"],
)
def test_a_bad_value_is_refused_naming_the_option_as_typed(args: list[str], option: str) -> None:
    """``loadgen --rate -1`` said "error: rate: must be ...", ``--max-tokens 0`` "max_tokens: ...": names of
    no option the user can type."""
    result = runner.invoke(app, ["loadgen", *args])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and said.startswith(f"error: {option} "), said
    assert f"{option} {args[1]}: " in said or f"{option} '{args[1]}': " in said, said  # and its value


@pytest.mark.parametrize("unusable", ["missing.pem", "not-pem.txt"], ids=["missing", "not_pem"])
def test_an_ssl_cert_file_it_cannot_load_is_named_before_any_request(
    flaky_server: str, tmp_path: os.PathLike[str], unusable: str
) -> None:
    """README: an ``SSL_CERT_FILE`` that cannot be loaded is named, exit 2. httpx loads it as loadgen's client
    is built, for an http:// server too: a stale one in the shell ended every run in a traceback, exit 1."""
    path = os.path.join(tmp_path, unusable)
    if unusable == "not-pem.txt":
        with open(path, "w") as handle:
            handle.write("not a certificate\n")
    argv = ["loadgen", "--url", flaky_server, "--requests", "1"]
    served = EveryThirdFails.count
    result = runner.invoke(app, argv, env={"SSL_CERT_FILE": path})
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert said.startswith(f"error: SSL_CERT_FILE: '{path}': cannot load CA certificates from it ("), said
    assert "loadgen refuses to start" in said, said
    assert EveryThirdFails.count == served  # nothing was sent
