"""`gpuwarden serve` with a kubeconfig whose exec plugin never answers (kubelogin waiting for a browser login
no one makes): it starts, the Kubernetes inventory failing, and leaves no plugin running."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.gpuwarden_server import gpuwarden_serve, serve_metric
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration


def test_serve_starts_with_an_exec_plugin_that_never_answers_and_kills_it(tmp_path: Path) -> None:
    # kubelogin waiting for a browser login no one makes: the client waited for it, and serve never started.
    pids = tmp_path / "pids"
    plugin = tmp_path / "login"
    plugin.write_text(f"#!/bin/sh\necho $$ >> {pids}\nsleep 3600 &\necho $! >> {pids}\nwait\n")
    plugin.chmod(0o755)
    exec_config = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(plugin)}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {"exec": exec_config}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    inventory = {"cluster": "k1", "kubeconfig": str(kubeconfig), "request_timeout_seconds": 1}
    config = tmp_path / "gpuwarden.yaml"
    # No refresh while the test runs: the plugin's runs counted are the start's.
    alerting = {"kubernetes_inventory": inventory, "inventory_refresh_seconds": 3600}
    config.write_text(yaml.safe_dump({"alerting": alerting}))
    left: list[int] = []
    try:
        with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(config)]) as (
            url,
            _,
        ):
            assert serve_metric(url, "gpuwarden_inventory_workloads") == 0
            # Run once (its shell and its sleep), each run request_timeout_seconds: it ran at the check
            # before the start, at the start, and again at the first read, 30 s with the default timeout.
            assert len(pids.read_text().split()) == 2, pids.read_text()
        log = (tmp_path / "serve.log").read_text()
        assert "login gave no credential within 1 s" in log and "kubernetes inventory: cannot read it" in log
    finally:
        for pid in [int(line) for line in pids.read_text().split()] if pids.exists() else []:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)  # a plugin left running fails the test, and is stopped
                left.append(pid)
    assert pids.exists() and left == []  # each run killed, with its sleep


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs within a few seconds. The plugin's sleep, killed with its group, is
    reparented to init, which reaps it when it gets to it: until then it is a zombie that a signal still
    reaches, dead all the same (the test failed on it once, on a loaded machine)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False  # gone (or its /proc entry half torn down)
        if state in ("Z", "X"):
            return False
        time.sleep(0.1)
    return True
