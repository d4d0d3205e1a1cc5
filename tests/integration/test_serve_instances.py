"""Two `gpuwarden serve` on one store: the second is refused, or as a standby takes over when the first dies.

Before the instance lock both ran: each kept its own offsets into the one accept journal beside the SQLite
file, and alerts posted to them were lost.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import pytest

from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_binary, gpuwarden_serve, serve_metric
from tests.integration.servers import free_port, stop, wait_http_ok


def _node_down(node: str) -> list[dict[str, object]]:
    return [{"labels": {"alertname": "NodeDown", "cluster": "c1", "rack": "r01", "Hostname": node}}]


def _serve_argv(db: str, port: int, *extra: str) -> list[str]:
    return [gpuwarden_binary(), "serve", "--port", str(port), "--db", db, *extra]


def _start_standby(db: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        _serve_argv(db, port, "--standby"),
        env={**os.environ, "GPUWARDEN_API_TOKEN": TOKEN},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_for_line(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, path.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{text!r} not logged in {timeout} s"
        time.sleep(0.1)


def _assert_answers_as_a_standby_of(url: str, active_pid: int) -> None:
    """The standby's port answers: alive, not ready, every request 503 naming the active server; the CLI
    prints that (it used to say "Connection refused"); no alert is taken."""
    assert http_probe.get(f"{url}/-/healthy", timeout=10).status_code == 200
    assert http_probe.get(f"{url}/-/ready", timeout=10).status_code == 503
    assert serve_metric(url, "gpuwarden_serve_standby") == 1
    response = http_probe.post(f"{url}/api/v2/alerts", json=_node_down("n9"), headers=AUTH, timeout=10)
    assert response.status_code == 503 and f"pid {active_pid} on " in response.json()
    cli = subprocess.run(
        [gpuwarden_binary(), "incidents", "list", "--url", url],
        env={**os.environ, "GPUWARDEN_API_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = " ".join(cli.stderr.split())
    assert cli.returncode == 1, said
    assert "HTTP 503: this serve is a standby" in said and f"pid {active_pid} on " in said


@pytest.mark.integration
def test_a_second_server_on_the_same_store_is_refused_naming_the_first(tmp_path: Path) -> None:
    db = str(tmp_path / "gw.db")
    with gpuwarden_serve(tmp_path, db) as (url, first):
        second = subprocess.run(
            _serve_argv(db, free_port()),
            env={**os.environ, "GPUWARDEN_API_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 75  # EX_TEMPFAIL: it may start once the first stops
        said = " ".join(second.stderr.split())
        assert f"store {db} is in use by another gpuwarden serve (pid {first.pid} on " in said
        assert "--standby" in said
        # The first one is untouched and still takes alerts.
        response = http_probe.post(f"{url}/api/v2/alerts", json=_node_down("n1"), headers=AUTH, timeout=10)
        assert response.status_code == 200


@pytest.mark.integration
def test_a_standby_takes_over_when_the_active_server_is_killed(tmp_path: Path) -> None:
    db = str(tmp_path / "gw.db")
    port = free_port()
    standby_url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "standby.log").open("wb")
    with gpuwarden_serve(tmp_path, db) as (url, active):
        standby = _start_standby(db, port, log)
        try:
            for node in ("n1", "n2"):
                response = http_probe.post(
                    f"{url}/api/v2/alerts", json=_node_down(node), headers=AUTH, timeout=10
                )
                assert response.status_code == 200
            _wait_for_line(tmp_path / "standby.log", "standby, waiting", standby)
            _assert_answers_as_a_standby_of(standby_url, active.pid)
            active.send_signal(signal.SIGKILL)
            active.wait(timeout=10)
            wait_http_ok(f"{standby_url}/-/ready", standby, timeout=60)
            assert serve_metric(standby_url, "gpuwarden_serve_standby") == 0
            incidents = http_probe.get(f"{standby_url}/api/v1/incidents", timeout=10).json()
            assert [i["alert_count"] for i in incidents] == [2]
            response = http_probe.post(
                f"{standby_url}/api/v2/alerts", json=_node_down("n3"), headers=AUTH, timeout=10
            )
            assert response.status_code == 200
        finally:
            stop(standby)
            log.close()
    assert "this server is now active" in (tmp_path / "standby.log").read_text()


@pytest.mark.integration
def test_a_standby_stopped_while_it_waits_exits_0_and_frees_its_port(tmp_path: Path) -> None:
    db = str(tmp_path / "gw.db")
    port = free_port()
    with gpuwarden_serve(tmp_path, db), (tmp_path / "standby.log").open("wb") as log:
        standby = _start_standby(db, port, log)
        wait_http_ok(f"http://127.0.0.1:{port}/-/healthy", standby, timeout=60)
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(timeout=30) == 0
    with socket.socket() as again:  # the port was closed with it
        again.bind(("127.0.0.1", port))


@pytest.mark.integration
def test_a_standby_on_the_active_servers_own_port_waits_with_it_closed_and_takes_it_over(
    tmp_path: Path,
) -> None:
    """Two serves on one host and one port: the standby cannot answer there while the active one does, so
    it waits as standbys did before, and binds the port once the active one is gone."""
    db = str(tmp_path / "gw.db")
    with gpuwarden_serve(tmp_path, db) as (url, active), (tmp_path / "standby.log").open("wb") as log:
        port = int(url.rsplit(":", 1)[1])
        standby = _start_standby(db, port, log)
        try:
            _wait_for_line(tmp_path / "standby.log", "standby, waiting", standby)
            assert "waiting with the port closed" in (tmp_path / "standby.log").read_text()
            active.send_signal(signal.SIGKILL)
            active.wait(timeout=10)
            wait_http_ok(f"{url}/-/ready", standby, timeout=60)
        finally:
            stop(standby)


@pytest.mark.integration
def test_a_standby_waiting_with_its_port_closed_stops_on_sigterm_with_exit_0(tmp_path: Path) -> None:
    """serve now catches SIGTERM from before the lock wait to the end; this wait must still end on it."""
    db = str(tmp_path / "gw.db")
    with gpuwarden_serve(tmp_path, db) as (url, _), (tmp_path / "standby.log").open("wb") as log:
        standby = _start_standby(db, int(url.rsplit(":", 1)[1]), log)
        try:
            _wait_for_line(tmp_path / "standby.log", "standby, waiting", standby)
            standby.send_signal(signal.SIGTERM)
            assert standby.wait(timeout=30) == 0, (tmp_path / "standby.log").read_text()
        finally:
            stop(standby)
        assert http_probe.get(f"{url}/-/ready", timeout=10).status_code == 200  # the active one is untouched
