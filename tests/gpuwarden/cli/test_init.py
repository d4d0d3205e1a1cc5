"""The ``gpuwarden`` console script itself: what it sets up before any command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.http_stub import FixedAnswer

ROOT = Path(__file__).resolve().parents[3]
INCIDENT = {
    "id": "inc-1",
    "title": "gpu n1/0 Xid 中文",
    "priority": "P3",
    "state": "triggered",
    "root_cause": {"kind": "xid", "target": {"type": "gpu", "node": "n1", "index": 0}},
    "alert_count": 1,
    "opened_at": "2026-01-01T00:00:00Z",
    "last_opened_at": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "env",
    [{"PYTHONIOENCODING": "ascii"}, {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}],
    ids=["pythonioencoding-ascii", "lang-c"],
)
def test_a_title_stdout_cannot_encode_is_shown_escaped_not_a_traceback(env: dict[str, str]) -> None:
    """Under LANG=C or PYTHONIOENCODING=ascii (cron, a minimal container), an incident titled from a
    non-ASCII label stopped `incidents list` with a UnicodeEncodeError traceback, exit 1."""
    stub = FixedAnswer(200, json.dumps([INCIDENT]).encode())
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIO", "PYTHONUTF8"))}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gpuwarden", "incidents", "list", "--url", stub.url],
            env={**clean, "PYTHONPATH": str(ROOT), **env},
            cwd=ROOT,
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        stub.close()
    said = done.stdout.decode("ascii") + done.stderr.decode("ascii", "replace")
    assert done.returncode == 0 and "Traceback" not in said, said
    assert "Xid \\u4e2d\\u6587" in said and "inc-1" in said, said


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize(
    "args", [["config", "show"], ["--help"], ["--version"]], ids=["config-show", "help", "version"]
)
def test_stdout_on_a_full_disk_is_said_in_one_line_not_a_traceback(args: list[str]) -> None:
    """`gpuwarden config show > /dev/full` (stdout on a full disk) ended in an OSError traceback."""
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "gpuwarden", *args],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=ROOT,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    said = done.stderr.decode()
    assert done.returncode == 1, said
    assert said == "error: cannot write standard output: No space left on device\n", said


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs Linux's /dev/full")
def test_anomaly_runs_alerts_to_a_full_disk_are_said_in_a_json_line_with_json_logs(tmp_path: Path) -> None:
    """`anomaly run --log-format json > /dev/full`: the line that said why it stopped was the one plain line
    among its JSON ones. Its source down past stale_after_seconds raises an alert, printed on stdout."""
    (tmp_path / "a.yaml").write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  infer_every_seconds: 1\n  stale_after_seconds: 1\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
    )
    argv = ["anomaly", "run", "--config", str(tmp_path / "a.yaml"), "--ticks", "4", "--log-format", "json"]
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "gpuwarden", *argv],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
        )
    lines = [json.loads(line) for line in done.stderr.decode().splitlines()]
    assert done.returncode == 1, lines
    assert (lines[-1]["level"], lines[-1]["logger"], lines[-1]["msg"]) == (
        "error",
        "gpuwarden.cli.anomaly_cmd",
        "cannot write standard output: No space left on device",
    )
