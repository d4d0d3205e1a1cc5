"""The everyday commands start without the heavy libraries that only some commands need.

Each case runs in a fresh interpreter, because this test process has long since imported all of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers import free_port

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "gpuwarden.example.yaml"

# Libraries only anomaly, demo, exporter, inference-server and serve need. pydantic is not listed: Typer
# itself imports it to convert option values.
HEAVY = (
    "sklearn",
    "scipy",
    "pandas",
    "numpy",
    "matplotlib",
    "alembic",
    "sqlalchemy",
    "slack_sdk",
    "uvicorn",
    "prometheus_client",
    "opentelemetry",
    "pynvml",  # with the simulated fleet's modules: only the exporter, the demo and `sim show` run a fleet
)
# What gpuwarden.config brings; only commands that read a configuration file need it.
CONFIG_MODEL = ("pydantic_settings", "yaml")
# Only commands that send a request (or parse a URL) need httpx; help text needs none of these.
HELP_ONLY = HEAVY + CONFIG_MODEL + ("httpx",)

PROBE = """
import json, sys
from typer.testing import CliRunner
from gpuwarden.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"exit_code": result.exit_code, "loaded": loaded, "output": result.output}))
"""


def run_cli_fresh(args: list[str], watched: tuple[str, ...]) -> dict[str, Any]:
    """Run ``gpuwarden ARGS`` through CliRunner in a new interpreter: exit code, output, which of ``watched``
    it imported."""
    env = {**os.environ}
    for name in ("GPUWARDEN_API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        env[name] = f"secret-{name}"  # the example configuration references these
    # The example's store and anomaly state are in the deployment's /var/lib/gpuwarden, which config validate
    # checks exists here.
    env["GPUWARDEN_API__DB"] = os.path.join(tempfile.gettempdir(), "gpuwarden-example.db")
    env["GPUWARDEN_ANOMALY__STATE_FILE"] = os.path.join(tempfile.gettempdir(), "gpuwarden-example.state.npz")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(watched),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize(
    ("args", "exit_code", "watched"),
    [
        # The top-level help converts no option value, so Typer loads no pydantic either: nor may we (the
        # configuration's bounds, read by the exporter's options, brought its models: ~0.2 s at every start).
        pytest.param(["--help"], 0, (*HELP_ONLY, "pydantic", "pydantic_core"), id="help"),
        pytest.param(["incidents", "--help"], 0, HELP_ONLY, id="incidents-help"),
        pytest.param(["incidents", "list", "--output", "json"], 1, HEAVY + CONFIG_MODEL, id="incidents-list"),
        pytest.param(["incidents", "show", "inc-1"], 1, HEAVY + CONFIG_MODEL, id="incidents-show"),
        pytest.param(["anomaly", "--help"], 0, HELP_ONLY, id="anomaly-help"),
        pytest.param(["serve", "--help"], 0, HELP_ONLY, id="serve-help"),
        pytest.param(["config", "validate", str(EXAMPLE)], 0, HEAVY, id="config-validate"),
    ],
)
def test_everyday_commands_do_not_import_heavy_libraries(
    args: list[str], exit_code: int, watched: tuple[str, ...]
) -> None:
    if args[0] == "incidents" and "--help" not in args:
        args = [*args, "--url", f"http://127.0.0.1:{free_port()}"]  # nothing listens: exit 1, cannot reach
    result = run_cli_fresh(args, watched)
    assert result["exit_code"] == exit_code, result["output"]
    assert result["loaded"] == [], f"gpuwarden {' '.join(args)} imported {result['loaded']} at start"


def test_the_probe_sees_a_heavy_import_when_a_command_needs_one() -> None:
    result = run_cli_fresh(["anomaly", "xid", "79"], HEAVY)
    assert result["exit_code"] == 0, result["output"]
    assert "numpy" in result["loaded"]  # anomaly.signatures works on arrays
