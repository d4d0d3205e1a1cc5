"""Why a long-running command cannot start: JSON lines with ``--log-format json`` (serve's default), plain
``error:`` lines with ``text``, and an exit status that says whether a restart can help (sysexits.h)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.servers import free_port

# sysexits.h, what systemd's RestartPreventExitStatus= and an operator's wrapper read: written out here, not
# imported, so that a run against a release without them fails on the status, not on an import.
EXIT_UNAVAILABLE = 69
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78

COMMAND = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
TOKEN = {"GPUWARDEN_API_TOKEN": "startup-test-token-12345"}
LOCAL = ["--listen-address", "127.0.0.1"]

# Each long-running command with what it needs to get as far as its configuration file.
COMMANDS = {
    "serve": ["serve"],
    "anomaly-run": ["anomaly", "run", "--ticks", "1"],
    "exporter": ["exporter", "--simulate", "1x1", *LOCAL],
    "inference-server": ["inference-server", "--host", "127.0.0.1"],
}


def _start(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one command that is expected not to start; its exit status and stderr."""
    return subprocess.run(
        [*COMMAND, *argv],
        cwd=cwd,
        env={**os.environ, **TOKEN, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _json_lines(stderr: str) -> list[dict[str, str]]:
    """Every line of ``stderr`` as the JSON object it must be (a plain line fails here, naming it)."""
    return [json.loads(line) for line in stderr.splitlines()]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 another process listens on."""
    with socket.create_server(("127.0.0.1", free_port())) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    "argv",
    [pytest.param([*argv, "--log-format", "json"], id=name) for name, argv in COMMANDS.items()]
    + [pytest.param(["serve"], id="serve-by-default")],
)
def test_a_missing_config_file_is_a_json_error_line_and_exit_78(tmp_path: Path, argv: list[str]) -> None:
    # It was a plain "error: ..." line among the JSON ones (a log shipper broke on it), and exit 1, as for a
    # port in use: systemd restarted a configuration that no restart fixes.
    result = _start([*argv, "--config", "gone.yaml"], tmp_path)
    (line,) = _json_lines(result.stderr)
    assert line["level"] == "error"
    assert line["msg"] == "gone.yaml: cannot read file: No such file or directory"
    assert set(line) == {"ts", "level", "logger", "msg"}
    assert result.returncode == EXIT_CONFIG, result.stderr


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "api:\n  port: [1\n",
            "bad.yaml:2: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence that"
            " starts at line 2)",
        ),
        ("api:\n  port: x\n", "bad.yaml:2: api.port: 'x' is not a whole number; write one"),
    ],
    ids=["broken-yaml", "bad-field"],
)
def test_serve_says_a_bad_file_in_the_format_asked_and_exits_78(tmp_path: Path, text: str, said: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    as_json = _start(["serve", "--config", "bad.yaml"], tmp_path)
    assert [(line["level"], line["logger"], line["msg"]) for line in _json_lines(as_json.stderr)] == [
        ("error", "gpuwarden.serve", said)
    ]
    assert as_json.returncode == EXIT_CONFIG
    as_text = _start(["serve", "--config", "bad.yaml", "--log-format", "text"], tmp_path)
    assert (as_text.returncode, as_text.stderr) == (EXIT_CONFIG, f"error: {said}\n")


def test_anomaly_runs_warnings_before_its_start_are_json_lines_too(tmp_path: Path) -> None:
    # Its configuration's warnings were printed before its logging was set up: plain "warning: ..." lines.
    (tmp_path / "a.yaml").write_text(
        "anomaly:\n  infer_every_seconds: 5\n  detectors: [adaptive, bogus]\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 120}\n"
    )
    result = _start([*COMMANDS["anomaly-run"], "--config", "a.yaml", "--log-format", "json"], tmp_path)
    said = [(line["level"], line["msg"]) for line in _json_lines(result.stderr)]
    assert [level for level, _ in said] == ["warning", "error"], said
    assert "query temp: step_seconds 120 is longer than" in said[0][1]
    assert "bogus" in said[1][1]
    assert result.returncode == EXIT_CONFIG


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_port_in_use_is_a_json_error_line_and_exit_75(tmp_path: Path, taken_port: int, name: str) -> None:
    # Another process holds it: a restart succeeds once that one stops, unlike a bad configuration.
    port = ["--port", str(taken_port)]
    (tmp_path / "a.yaml").write_text("anomaly:\n  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n")
    config = ["--config", "a.yaml"] if name == "anomaly-run" else []  # one query: it gets as far as its port
    argv = [*COMMANDS[name], *config, *port, "--log-format", "json"]
    result = _start(argv, tmp_path, {"GPUWARDEN_API__DB": str(tmp_path / "gw.db")})
    assert result.returncode == EXIT_TEMPFAIL, result.stderr
    errors = [line for line in _json_lines(result.stderr) if line["level"] == "error"]
    assert len(errors) == 1
    assert f"cannot listen on 127.0.0.1:{taken_port}" in errors[0]["msg"]  # anomaly run's too, as the others


def test_serve_whose_store_server_refuses_the_connection_exits_69_with_a_json_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", free_port())) as listener:
        closed = listener.getsockname()[1]  # closed below: nothing listens there
    store = f"postgresql+psycopg://gw@127.0.0.1:{closed}/gw"
    env = {"GPUWARDEN_API__DB": store, "GPUWARDEN_ALERTING__JOURNAL_DIR": str(tmp_path / "journal")}
    result = _start(["serve", "--port", str(free_port())], tmp_path, env)
    assert result.returncode == EXIT_UNAVAILABLE, result.stderr
    (error,) = [line for line in _json_lines(result.stderr) if line["level"] == "error"]
    assert "cannot open the store: connection failed" in error["msg"]


@pytest.mark.parametrize(
    ("outside", "status"),
    [
        ((None,), EXIT_CONFIG),
        (("busy",), EXIT_TEMPFAIL),
        (("down",), EXIT_UNAVAILABLE),
        (("down", "busy"), EXIT_UNAVAILABLE),
        (("busy", None), EXIT_CONFIG),
    ],
    ids=["config", "busy", "down", "down-and-busy", "busy-and-config"],
)
def test_any_problem_of_the_configuration_makes_the_exit_status_78(
    outside: tuple[str | None, ...], status: int
) -> None:
    # A restart cannot help while one problem is the configuration's, whatever else failed beside it.
    from gpuwarden.cli.startup import exit_status  # noqa: PLC0415 - see EXIT_CONFIG
    from gpuwarden.errors import BUSY, DOWN, ConfigError  # noqa: PLC0415

    assert (BUSY, DOWN) == ("busy", "down")
    problems = [ConfigError(f"problem {n}", outside=kind) for n, kind in enumerate(outside)]
    error = ConfigError.first_of(problems)
    assert exit_status(error) == status
    assert exit_status(error.alone()) == exit_status(problems[0])  # carried by the copies it makes


# Each command's logger, the name its usage errors are logged under as its other lines are.
LOGGERS = {
    "serve": "gpuwarden.serve",
    "anomaly-run": "gpuwarden.cli.anomaly_cmd",
    "exporter": "gpuwarden.cli.exporter_cmd",
    "inference-server": "gpuwarden.inference",
}
USAGE_ERRORS = {
    "bad-number": (["--port", "abc"], "--port 'abc': use a whole number from "),
    "unknown-option": (["--bogus"], "no such option: --bogus"),
    "missing-value": (["--port"], "option '--port' requires an argument"),
}


@pytest.mark.parametrize("error", list(USAGE_ERRORS))
@pytest.mark.parametrize(
    ("name", "asked"),
    [(name, ["--log-format", "json"]) for name in COMMANDS]
    + [("serve", []), ("exporter", ["--log-format=json"])],
    ids=[*COMMANDS, "serve-by-default", "exporter-with-equals"],
)
def test_a_usage_error_is_a_json_log_line_and_exit_2_when_json_is_asked(
    tmp_path: Path, name: str, asked: list[str], error: str
) -> None:
    # click's usage errors and the bounded options' refusals were a plain "error: ..." line, the only one a
    # log shipper could not read, whatever --log-format said. The option that is wrong comes last: its
    # missing value would take --log-format's place.
    argv, said = USAGE_ERRORS[error]
    result = _start([*COMMANDS[name], *asked, *argv], tmp_path)
    (line,) = _json_lines(result.stderr)
    assert (line["level"], line["logger"]) == ("error", LOGGERS[name])
    assert line["msg"].startswith(said), line
    assert set(line) == {"ts", "level", "logger", "msg"}
    assert result.returncode == 2


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["serve", "--log-format", "text", "--port", "abc"],
            "--port 'abc': use a whole number from 1 to 65535",
        ),
        (["exporter", "--port", "abc"], "--port 'abc': use a whole number from 1 to 65535"),
        (["serve", "--log-format", "text", "--bogus"], "no such option: --bogus"),
        (["anomaly", "run", "--ticks"], "option '--ticks' requires an argument"),
    ],
    ids=["serve-text", "exporter-by-default", "unknown-option", "missing-value"],
)
def test_a_usage_error_in_text_is_the_plain_line_it_was(tmp_path: Path, argv: list[str], said: str) -> None:
    result = _start(argv, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {said}") and result.stderr.count("\n") == 1, result.stderr


def test_a_json_log_format_given_as_a_bad_value_is_said_in_the_commands_default(tmp_path: Path) -> None:
    # serve logs JSON unless told otherwise: a --log-format it does not take is said in its default.
    (line,) = _json_lines(_start(["serve", "--log-format", "xml"], tmp_path).stderr)
    assert line["msg"] == "--log-format 'xml': use one of text, json"
    plain = _start(["exporter", "--log-format", "xml"], tmp_path).stderr
    assert plain == "error: --log-format 'xml': use one of text, json\n", plain


def test_anomaly_runs_ticks_with_prometheus_down_are_json_lines_and_exit_1(tmp_path: Path) -> None:
    # "source prometheus down: ..." and "error: no source could be read in 1 tick" were plain lines among
    # the JSON ones: the lines that said why nothing was scored.
    (tmp_path / "a.yaml").write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
    )
    argv = [*COMMANDS["anomaly-run"], "--config", "a.yaml", "--port", "0", "--log-format", "json"]
    result = _start(argv, tmp_path)
    said = [(line["level"], line["msg"]) for line in _json_lines(result.stderr)]
    down = [(level, msg) for level, msg in said if msg.startswith("source prometheus down: ")]
    assert [level for level, _ in down] == ["warning"], said
    assert "1 of 1 queries (temp)" in down[0][1]
    assert said[-1] == (
        "error",
        "no source could be read in 1 tick: nothing was scored (the lines above say why)",
    )
    assert result.returncode == 1


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_start_up_error_and_a_usage_error_are_log_lines_of_the_same_shape(
    tmp_path: Path, name: str
) -> None:
    # The usage error is written before the command's logging is set up, the start-up error through its
    # logger: one shape for both, keys in the same order, under the same logger, or a shipper's parsing
    # rule written for one misses the other.
    (start_up,) = _json_lines(
        _start([*COMMANDS[name], "--log-format", "json", "--config", "gone.yaml"], tmp_path).stderr
    )
    (usage,) = _json_lines(_start([*COMMANDS[name], "--log-format", "json", "--bogus"], tmp_path).stderr)
    assert list(start_up) == list(usage) == ["ts", "level", "logger", "msg"]
    assert [line["logger"] for line in (start_up, usage)] == [LOGGERS[name]] * 2


def test_a_usage_error_in_json_says_the_value_as_typed_as_the_text_line_does(tmp_path: Path) -> None:
    # A value written like an emoji code came back as the emoji in the JSON line's message ('--port ':x:''
    # said as '--port '❌''), where the text line and every other line keep data as it is.
    as_text = _start(["serve", "--log-format", "text", "--port", ":x:"], tmp_path).stderr
    (as_json,) = _json_lines(_start(["serve", "--port", ":x:"], tmp_path).stderr)
    assert as_text == f"error: {as_json['msg']}\n"
    assert as_json["msg"].startswith("--port ':x:': ")
