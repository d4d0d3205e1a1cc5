"""What the ``anomaly`` command tests share: a runner, series and NAB files, a fake Prometheus, one tick."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.http_stub import LocalServer, QuietHandler

runner = BuiltCliRunner()


def write_series(path: Path, spike_at: int | None = 400) -> None:
    rng = np.random.default_rng(0)
    values = 10 + rng.normal(0, 1, 600)
    if spike_at is not None:
        values[spike_at] = 60
    stamps = pd.date_range("2024-01-01", periods=600, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": values}).to_csv(path, index=False)


def evaluate_args(tmp_path: Path, windows: object) -> list[str]:
    """`anomaly evaluate nab` over one NAB-like file, c/x.csv under tmp_path/data, with these windows."""
    (tmp_path / "data" / "c").mkdir(parents=True)
    write_series(tmp_path / "data" / "c" / "x.csv")
    (tmp_path / "w.json").write_text(json.dumps(windows))
    return [
        "anomaly",
        "evaluate",
        "nab",
        "--data",
        str(tmp_path / "data"),
        "--windows",
        str(tmp_path / "w.json"),
    ]


class _Prometheus(LocalServer):
    """A Prometheus that answers every range query with two flat series, or 400 for the query `bad`."""

    def __init__(self) -> None:
        class Handler(QuietHandler):
            def do_GET(self) -> None:
                params = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                start, end, step = (float(params[k][0]) for k in ("start", "end", "step"))
                values = [[t, "40"] for t in np.arange(start, end + step / 2, step).tolist()]
                result = [{"metric": {"Hostname": "n1", "gpu": str(i)}, "values": values} for i in range(2)]
                body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
                status = 200
                if params["query"][0] == "bad":
                    status, body = 400, {"status": "error", "error": "parse error [bad]"}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


def _run_on_fake_prometheus(
    tmp_path: Path, queries: str, ticks: int, user: str = "", listen: tuple[str, int] = ("127.0.0.1", 0)
) -> tuple[str, Any]:
    """``anomaly run --ticks N --port 0`` on ``_Prometheus`` with ``queries`` (YAML list items), ticking
    every 0.2 s (``user``: ``user:password`` in its URL; ``listen``: /metrics' address and port): that
    Prometheus' URL and the CLI's result."""
    prometheus = _Prometheus()
    cfg = tmp_path / "c.yaml"
    url = prometheus.url.replace("://", f"://{user}@") if user else prometheus.url
    cfg.write_text(
        f"anomaly:\n  prometheus_url: {url}\n  listen_address: '{listen[0]}'\n  infer_every_seconds: 0.2\n"
        f"  queries:\n{queries}"
    )
    try:
        args = ["anomaly", "run", "--config", str(cfg), "--ticks", str(ticks), "--port", str(listen[1])]
        return prometheus.url, runner.invoke(app, args)
    finally:
        prometheus.close()


def run_one_tick_forwarding_to(receiver, tmp_path, monkeypatch, reescalate: bool):
    """``anomaly run --ticks 1`` reading a stand-in Prometheus and posting to ``receiver`` (closed after,
    with the Prometheus), re-escalation on or off; its result, exit status checked."""
    prometheus = _Prometheus()
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"anomaly:\n  prometheus_url: {prometheus.url}\n  infer_every_seconds: 0.2\n"
        f"  alert_url: {receiver.url}\n  reescalate_alerts: {str(reescalate).lower()}\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n"
    )
    try:
        result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    finally:
        prometheus.close()
        receiver.close()
    assert result.exit_code == 0, result.output
    return result
