"""Run `gpuwarden serve` as a subprocess for integration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.integration import http_probe
from tests.integration.servers import free_port, running

TOKEN = "integration-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def gpuwarden_binary() -> str:
    """The console script installed next to this interpreter."""
    return str(Path(sys.executable).with_name("gpuwarden"))


def simulated_exporter_argv(fleet: str, port: int) -> list[str]:
    """``gpuwarden exporter --simulate FLEET`` (``1x4``: nodes x GPUs) on 127.0.0.1:PORT, collecting every
    second."""
    return [
        gpuwarden_binary(), "exporter", "--simulate", fleet, "--port", str(port),
        "--listen-address", "127.0.0.1", "--interval", "1",
    ]  # fmt: skip


@contextmanager
def gpuwarden_serve(
    tmp_path: Path, db: str, name: str = "serve", extra_args: Sequence[str] = (), ready: str = "/-/ready"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `gpuwarden serve` on a free port; yield its base URL and process once ``ready`` answers 200:
    by default readiness, which waits for the replay of the journal's backlog (``/healthz``: the port is
    open, replay or not)."""
    port = free_port()
    argv = [gpuwarden_binary(), "serve", "--port", str(port), "--db", db, *extra_args]
    url = f"http://127.0.0.1:{port}"
    # The token is the child's alone: set in this process, it reached every CLI call the test made while
    # serve ran, so a test passed without saying which token its client sends.
    env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN}
    with running(argv, f"{url}{ready}", tmp_path / f"{name}.log", env=env) as proc:
        yield url, proc


def serve_metric(url: str, name: str) -> float:
    """One unlabelled sample of serve's /metrics."""
    for line in http_probe.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def gpuwarden_argv() -> list[str]:
    script = Path(sys.executable).parent / "gpuwarden"
    return [str(script)] if script.exists() else [shutil.which("gpuwarden") or "gpuwarden"]
