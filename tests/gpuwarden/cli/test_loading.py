"""A stop signal that reaches a long-running command while it still loads (``gpuwarden.cli.loading``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuwarden.cli.loading import LoadingStop, log_format_given, stop_while_loading
from gpuwarden.cli.logs import LogFormat
from gpuwarden.graceful import StopRequest
from tests.integration.gpuwarden_server import gpuwarden_argv
from tests.integration.servers import free_port, sigterm_once

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status")

SERVE = "serve stopped by SIGTERM while it started: nothing was running yet"


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler for SIGTERM (``SigCgt`` in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next((line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), "0")
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def _as_soon_as_it_catches_sigterm(proc: subprocess.Popen[bytes]) -> None:
    """Until the process first catches SIGTERM (the handler installed as it loads), or ends."""
    bound = time.monotonic() + 120  # a bound on a hang, not a timing: the assertions say what went wrong
    while proc.poll() is None and not _catches_sigterm(proc.pid) and time.monotonic() < bound:
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["serve", "--db", "{tmp}/serve.db", "--port", "{port}"], SERVE),
        (
            ["inference-server", "--port", "{port}", "--log-format", "text"],
            "INFO gpuwarden.cli.inference_cmd: inference-server stopped by SIGTERM while it started",
        ),
        (
            ["exporter", "--simulate", "1x1", "--port", "{port}", "--log-format", "JSON"],
            '"msg": "exporter stopped by SIGTERM while it started: nothing was running yet"',
        ),
        (
            [
                "anomaly",
                "run",
                "--config",
                "{tmp}/anomaly.yaml",
                "--state-file",
                "{tmp}/s.npz",
                "--port",
                "{port}",
            ],
            "INFO gpuwarden.cli.anomaly_cmd: anomaly run stopped by SIGTERM while it started",
        ),
    ],
    ids=["serve-json-by-default", "inference-server-text", "exporter-json", "anomaly-run-text"],
)
def test_sigterm_while_a_long_running_command_loads_exits_0_with_one_line(
    tmp_path: Path, argv: list[str], line: str
) -> None:
    # Kubernetes stops a pod that is just starting: SIGTERM during the seconds of imports and loading, before
    # the command's own handlers, killed it with exit 143 and no line, where a stop signal gives exit 0.
    args = [a.format(tmp=tmp_path, port=free_port()) for a in argv]
    config = tmp_path / "anomaly.yaml"  # anomaly run's: its warm-up caught SIGTERM, not its start
    config.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  queries:\n    - {name: up, expr: up}\n"
    )
    log = tmp_path / "out.log"
    env = {**os.environ, "GPUWARDEN_API_TOKEN": "loading-stop-token-123"}
    status = sigterm_once(gpuwarden_argv() + args, log, _as_soon_as_it_catches_sigterm, env=env)
    said = log.read_text()
    assert (status, line in said) == (0, True), said
    assert len(said.splitlines()) == 1, said
    if line == SERVE:
        assert json.loads(said)["logger"] == "gpuwarden.cli.serve_cmd"
        assert sorted(tmp_path.iterdir()) == sorted([config, log])  # no store, no lock file


@pytest.mark.parametrize(
    "argv",
    [
        ["pytest", "serve"],
        [str(Path(sys.executable).with_name("gpuwarden")), "incidents", "list"],
        [str(Path(sys.executable).with_name("gpuwarden")), "anomaly", "score", "x.csv"],
        [str(Path(sys.executable).with_name("gpuwarden"))],
        [],
    ],
    ids=["imported-by-another-program", "short-command", "short-command-of-a-group", "no-command", "no-argv"],
)
def test_only_a_long_running_command_run_as_gpuwarden_gets_the_handler(argv: list[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert stop_while_loading(argv) is None
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_command_s_own_handlers_put_back_what_the_loading_one_replaced() -> None:
    # Else a stop signal during the command's last clean-up would say it stopped while it started.
    handler = LoadingStop("serve", LogFormat.JSON)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for sig in before:
            handler.replaced[sig] = signal.signal(sig, handler)
        with StopRequest().caught():
            assert signal.getsignal(signal.SIGTERM) is not handler
        assert {sig: signal.getsignal(sig) for sig in before} == before
    finally:
        for sig, previous in before.items():
            signal.signal(sig, previous)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], LogFormat.JSON),
        (["--log-format", "text"], LogFormat.TEXT),
        (["--log-format=TEXT"], LogFormat.TEXT),
        (["--log-format", "yaml"], LogFormat.JSON),
        (["--log-format"], LogFormat.JSON),
    ],
    ids=["default", "option", "equals-any-case", "refused-value", "no-value"],
)
def test_the_line_is_in_the_log_format_the_command_line_gives(args: list[str], expected: LogFormat) -> None:
    assert log_format_given(args, LogFormat.JSON) is expected
