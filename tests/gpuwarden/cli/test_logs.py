"""How the long-running commands log: ``--log-format text|json``, the time in UTC (RFC 3339) in both."""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuwarden.cli.logs import JsonLogFormatter, TextLogFormatter
from tests.integration.servers import free_port, running

COMMAND = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
UTC_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's zone is nine hours ahead of UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def a_record(created: float, exc: bool = False) -> logging.LogRecord:
    record = logging.LogRecord("gpuwarden.serve", logging.WARNING, __file__, 1, "store %s", ("down",), None)
    record.created, record.msecs = created, (created % 1) * 1000
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            record.exc_info = sys.exc_info()
    return record


def test_both_formats_write_the_time_in_utc_whatever_the_machines_zone(tokyo: None) -> None:
    # Before, serve wrote "2026-12-06 20:20:02,057" in the machine's zone without saying which; a shipper
    # reading the logs of two zones could not order them.
    record = a_record(1_796_587_202.25)  # 2026-12-06T20:00:02.250Z
    text = TextLogFormatter().format(record)
    assert text == "2026-12-06T20:00:02.250Z WARNING gpuwarden.serve: store down"
    line = json.loads(JsonLogFormatter().format(record))
    assert line == {"ts": "2026-12-06T20:00:02.250Z", "level": "warning", "logger": "gpuwarden.serve"} | {
        "msg": "store down"
    }


def test_the_context_fields_a_call_gives_are_in_both_formats() -> None:
    # Before, both formats dropped them: retention logged "pruned resolved history" and never what it pruned.
    record = a_record(1_796_587_202.0)
    record.__dict__.update({"incidents": 500, "older_than": "2026-09-08T00:00:00+00:00", "msg_id": Path("x")})
    assert TextLogFormatter().format(record) == (
        "2026-12-06T20:00:02.000Z WARNING gpuwarden.serve: store down"
        " incidents=500 older_than=2026-09-08T00:00:00+00:00 msg_id=x"
    )
    line = json.loads(JsonLogFormatter().format(record))
    assert (line["msg"], line["incidents"], line["older_than"], line["msg_id"]) == (
        "store down",
        500,
        "2026-09-08T00:00:00+00:00",
        "x",
    )


def test_an_exception_follows_the_line_in_text_and_is_a_field_in_json() -> None:
    record = a_record(1_796_587_202.0, exc=True)
    first, *rest = TextLogFormatter().format(record).splitlines()
    assert first == "2026-12-06T20:00:02.000Z WARNING gpuwarden.serve: store down"
    assert rest[-1] == "ValueError: boom"
    assert json.loads(JsonLogFormatter().format(record))["exc"].endswith("ValueError: boom")


def test_the_exporter_logs_json_and_serve_logs_text_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    exporter = [*COMMAND, "exporter", "--simulate", "1x1", "--listen-address", "127.0.0.1"]
    with running(
        [*exporter, "--port", str(port), "--log-format", "json"],
        f"http://127.0.0.1:{port}/",
        tmp_path / "e.log",
    ):
        pass
    lines = [json.loads(line) for line in (tmp_path / "e.log").read_text().splitlines()]
    assert all(re.fullmatch(UTC_TIME, line["ts"]) for line in lines)
    assert any(line["msg"].startswith("exporter serving simulated fleet 1x1") for line in lines)
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "log-format-test-token-123")
    port = free_port()
    serve = [*COMMAND, "serve", "--db", str(tmp_path / "s.db"), "--port", str(port), "--log-format", "text"]
    with running(serve, f"http://127.0.0.1:{port}/-/ready", tmp_path / "s.log"):
        pass
    said = (tmp_path / "s.log").read_text().splitlines()
    assert f"INFO gpuwarden.serve: serving on 127.0.0.1:{port}" in "\n".join(said)
    assert all(re.match(rf"{UTC_TIME} [A-Z]+ [\w.]+: ", line) for line in said), said


def _a_request_uvicorn_refuses(port: int) -> None:
    """A request line uvicorn cannot parse: it answers 400 and logs a warning of its own."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["exporter", "--simulate", "1x1", "--listen-address", "127.0.0.1"], id="exporter"),
        pytest.param(["inference-server", "--host", "127.0.0.1"], id="inference-server"),
    ],
)
def test_json_logs_are_json_on_every_line_uvicorns_own_warnings_included(
    tmp_path: Path, command: list[str]
) -> None:
    # uvicorn's own logging configuration gave its lines a handler of their own: the exporter wrote
    # "WARNING:  Invalid HTTP request received." between its JSON lines, and inference-server, which took no
    # --log-format, wrote every line (the OTLP exporter's warnings too) bare, without time, level or logger.
    port = free_port()
    argv = [*COMMAND, *command, "--port", str(port), "--log-format", "json"]
    with running(argv, f"http://127.0.0.1:{port}/metrics", tmp_path / "log"):
        _a_request_uvicorn_refuses(port)
        deadline = time.monotonic() + 30
        while "Invalid HTTP request" not in (tmp_path / "log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.05)
    lines = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert all(re.fullmatch(UTC_TIME, line["ts"]) for line in lines), lines
    refused = [line for line in lines if line["msg"].startswith("Invalid HTTP request received.")]
    assert [(line["level"], line["logger"]) for line in refused] == [("warning", "uvicorn.error")], lines
