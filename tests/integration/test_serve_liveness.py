"""``/-/healthy`` as a Kubernetes liveness probe (timeoutSeconds 5) sees it: it must fail for a hung serve,
whose lock would otherwise keep a standby from ever taking over, and pass for a busy one."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve

PROBE_TIMEOUT = 5.0  # deploy/kubernetes-serve.yaml's livenessProbe.timeoutSeconds


def _storm(url: str, stop: threading.Event, sent: list[int]) -> None:
    """Batches of 200 alerts on distinct nodes, posted until ``stop``."""
    k = 0
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            batch = [
                {"labels": {"alertname": "GpuTempHigh", "cluster": "c1", "node": f"n{k}-{i}", "gpu": "0"}}
                for i in range(200)
            ]
            client.post(f"{url}/api/v2/alerts", json=batch, headers=AUTH).raise_for_status()
            sent.append(len(batch))
            k += 1


@pytest.mark.integration
def test_healthy_passes_for_a_busy_serve_and_fails_for_a_stopped_one(tmp_path: Path) -> None:
    with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db")) as (url, proc):
        stop, sent = threading.Event(), []
        senders = [threading.Thread(target=_storm, args=(url, stop, sent)) for _ in range(3)]
        for t in senders:
            t.start()
        try:
            while len(sent) < 6:  # the applier has a backlog to chew on
                assert all(t.is_alive() for t in senders)
                threading.Event().wait(0.05)
            for _ in range(5):
                assert http_probe.get(f"{url}/-/healthy", timeout=PROBE_TIMEOUT).status_code == 200
        finally:
            stop.set()
            for t in senders:
                t.join()
        proc.send_signal(signal.SIGSTOP)  # hung: the kernel still accepts connections, nothing answers
        try:
            with pytest.raises(httpx.ReadTimeout):
                http_probe.get(f"{url}/-/healthy", timeout=PROBE_TIMEOUT)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert http_probe.get(f"{url}/-/healthy", timeout=30).status_code == 200
