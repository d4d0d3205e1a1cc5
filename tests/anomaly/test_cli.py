"""``anomaly run`` ticking against Prometheus and serve: an unreachable Prometheus, the lines each tick logs,
what it asks serve and forwards; and ``anomaly xid``."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
import pytest
import yaml

from anomaly.forwarder import STATE_COMPONENT, AlertForwarder
from anomaly.promql import PromQLSource, PromQuery
from anomaly.series import SeriesIndex
from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, read_snapshot, save_snapshot, shaping_settings
from gpuwarden.cli import anomaly_cmd, anomaly_run, app
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert
from tests.anomaly.cli_runs import _Prometheus, _run_on_fake_prometheus, run_one_tick_forwarding_to, runner
from tests.anomaly.forwarder_serve import _resolved, _xid
from tests.anomaly.snapshot_grid import (
    EVERY,
    GridSource,
    _config,
    saved_with_one_firing,
)
from tests.http_stub import LocalServer, QuietHandler


def test_xid_lookup_names_the_recommended_action():
    result = runner.invoke(app, ["anomaly", "xid", "48"])
    assert result.exit_code == 0
    assert "drain_and_reset" in result.output
    assert runner.invoke(app, ["anomaly", "xid", "99999"]).exit_code == 1


def test_xid_lookup_prints_the_same_fields_as_json_for_scripts():
    text = runner.invoke(app, ["anomaly", "xid", "79"])
    result = runner.invoke(app, ["anomaly", "xid", "79", "-o", "json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert entry["xid"] == 79 and entry["immediate_action"] == "RESTART_BM"
    assert f"{entry['immediate_action']} -> {entry['recommended_action']}" in text.stdout
    assert entry["mnemonic"] in text.stdout and entry["investigatory_action"] in text.stdout
    assert runner.invoke(app, ["anomaly", "xid", "79", "-o", "yaml"]).exit_code == 2


def test_run_reports_an_unreachable_prometheus_and_exits_cleanly(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
    )
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    # No traceback, the source named; exit 1: nothing was read (it was 0, and a script could not tell).
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert (
        "source prometheus down: 1 of 1 queries (temp): /api/v1/query_range: http://127.0.0.1:1: Connect"
        in " ".join(result.stderr.split())
    )
    assert "no source could be read in 1 tick: nothing was scored" in " ".join(result.stderr.split())


@pytest.mark.parametrize("due", [True, False], ids=["tick-on-a-step", "tick-between-steps"])
def test_run_exits_1_with_prometheus_down_whether_or_not_its_single_tick_fell_due(tmp_path, monkeypatch, due):
    # A query on a 120 s step, ticks of 30 s: a tick between two of its steps asks Prometheus nothing.
    # Such a tick marked the source up, so `--ticks 1` with Prometheus down exited 0 or 1 by the wall clock.
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  query_timeout_seconds: 1\n"
        "  infer_every_seconds: 30\n  latency_offset_seconds: 0\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 120}\n"
    )
    start = 1_767_225_600.0 + (0.0 if due else 30.0)  # 1_767_225_600 is a multiple of 120
    monkeypatch.setattr(anomaly_run, "SystemClock", lambda: FakeClock(start))
    result = runner.invoke(app, ["anomaly", "run", "--config", str(cfg), "--ticks", "1", "--port", "0"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    said = " ".join(result.stderr.split())
    assert "source prometheus down: 1 of 1 queries (temp)" in said
    assert "no source could be read in 1 tick: nothing was scored" in said


class _Receiver(LocalServer):
    """A gpuwarden serve that holds no alert: what it was asked, method and path, in order, and the alerts
    posted to it."""

    def __init__(self) -> None:
        asked: list[tuple[str, str]] = []
        posted: list[dict[str, Any]] = []
        self.asked, self.posted = asked, posted

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                asked.append(("GET", self.path))
                self._answer(b"[]")

            def do_POST(self) -> None:
                posted.extend(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                asked.append(("POST", self.path))
                self._answer(b"")

            def _answer(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(Handler)


@pytest.mark.parametrize("reescalate", [True, False], ids=["on", "off"])
def test_run_asks_serve_what_it_holds_before_its_warm_up_recalls_alerts(tmp_path, monkeypatch, reescalate):
    """A restart recalls the alerts its warm-up left firing only while serve still holds them, until serve's
    own endsAt (``AlertForwarder.held``): ``anomaly run`` did not ask, so after a downtime it recalled them
    for 4 minutes past serve's hold. Asked with re-escalation off too: the recall keeps the side an alert was
    raised on, and the labels serve holds each alert by are those the forwarder posts it on under
    (``AlertForwarder._as_served``), or an alert firing across the upgrade that added ``deviation`` was a
    second alert at serve."""
    receiver = _Receiver()
    run_one_tick_forwarding_to(receiver, tmp_path, monkeypatch, reescalate)
    assert [a for a in receiver.asked if a[0] == "GET"] == [("GET", "/api/v2/alerts")]


def test_run_logs_one_line_per_tick_not_one_per_http_request(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    _, result = _run_on_fake_prometheus(
        tmp_path,
        "    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n"
        "    - {name: typo, expr: bad, step_seconds: 0.2}\n",
        ticks=4,
    )
    assert result.exit_code == 0, result.output
    assert not [r for r in caplog.records if r.name.startswith(("httpx", "httpcore"))]
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")]
    assert len(ticks) == 4, ticks
    # The first tick's window is one step wide, so it holds a grid point (the grid is computed in whole
    # milliseconds: in floating point it could hold none, which CI saw): it reads `temp` and fails `typo`.
    # A later tick may fall within the 0.2 s step of the one before: then `temp` reads nothing new, while
    # `typo`, which never read, still asks for what it missed.
    assert ticks[0] == "tick: queries read 1, failed 1 (typo); alerts raised 0, resolved 0", ticks
    later = re.compile(
        r"tick: queries read [01], failed (1 \(typo\)|0 \(none due: a query's step_seconds\))"
        r"; alerts raised 0, resolved 0"
    )
    assert all(later.fullmatch(t) for t in ticks[1:]), ticks


def test_a_tick_line_counts_what_that_tick_read_not_what_the_warm_up_failed(caplog):
    # The warm-up's hour was too long for Prometheus; the first tick read the query well and logged
    # "tick: queries read 0, failed 1 (temp)": the warm-up's failure counted as the tick's.
    clock, ok = FakeClock(), [False]

    def answer(request: httpx.Request) -> httpx.Response:
        if not ok[0]:
            body = {"status": "error", "errorType": "timeout", "error": "query timed out in query execution"}
            return httpx.Response(503, json=body)
        point = [float(request.url.params["end"]), "1"]
        result = [{"metric": {"gpu": "0"}, "values": [point]}]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(answer))
    prom = PromQLSource("http://prom:9090", [PromQuery("temp", "temp")], clock, client=client)
    tick_log = anomaly_cmd.TickLog([prom], None, lambda alert: None)
    caplog.set_level(logging.INFO, logger=anomaly_cmd.logger.name)

    def tick() -> str:
        caplog.clear()
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
        tick_log.after()
        return next(r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:"))

    prom.read(clock.time() - 3600, clock.time())  # the warm-up, before the first tick
    ok[0] = True
    assert tick() == "tick: queries read 1, failed 0; alerts raised 0, resolved 0"
    ok[0] = False
    assert tick() == "tick: queries read 0, failed 1 (temp); alerts raised 0, resolved 0"
    prom.close()


def test_a_tick_line_in_an_outage_names_a_few_failed_queries_not_every_one(caplog):
    clock = FakeClock()
    client = httpx.Client(
        base_url="http://prom:9090",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(502, json={"status": "error", "error": "down"})
        ),
    )
    queries = [PromQuery(f"q{i}", f"q{i}") for i in range(24)]
    prom = PromQLSource("http://prom:9090", queries, clock, client=client)
    tick_log = anomaly_cmd.TickLog([prom], None, lambda alert: None)
    caplog.set_level(logging.INFO, logger=anomaly_cmd.logger.name)
    prom.read(clock.time() - 30, clock.time())
    tick_log.after()
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")]
    assert ticks == ["tick: queries read 0, failed 24 (q0, q1, q2 and 21 more); alerts raised 0, resolved 0"]
    prom.close()


def test_a_tick_line_names_the_host_the_alerts_went_to_not_gpuwarden_serve(caplog):
    # With anomaly.alert_url an Alertmanager, every tick said "sent 1 to gpuwarden serve".
    clock = FakeClock()
    answers = httpx.MockTransport(lambda request: httpx.Response(200))
    forwarder = AlertForwarder(
        "http://gw:S3cretPW@am.example:9093/",
        None,
        clock,
        resend_seconds=30,
        client=httpx.Client(transport=answers),
    )
    tick_log = anomaly_cmd.TickLog([], forwarder, forwarder.on_alert)
    caplog.set_level(logging.INFO, logger=anomaly_cmd.logger.name)
    tick_log.on_alert(Alert({"alertname": "GpuHot", "gpu": "0"}, starts_at=clock.now()))
    tick_log.after()
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")]
    assert ticks == [
        "tick: queries read 0, failed 0 (none due: a query's step_seconds); alerts raised 1,"
        " resolved 0; sent 1 to am.example:9093"
    ]
    forwarder.close()


def test_the_first_tick_after_a_restart_says_re_sent_for_an_alert_that_fired_before_it_not_raised(
    tmp_path, caplog
):
    """An alert firing at the save is posted again at the first tick after the restart (serve takes it as the
    one it holds). The tick's line said "alerts raised 1" for it, which read as a new fault at every restart;
    it says "re-sent 1", and a raise of that tick is still a raise."""
    clock = FakeClock()
    _, alert, path = saved_with_one_firing(tmp_path, clock)
    clock.advance(EVERY)
    posted: list[Alert] = []
    tick_log = anomaly_cmd.TickLog([], None, posted.append)
    other = AnomalyService(
        _config(), [GridSource()], clock, on_alert=tick_log.on_alert, on_resend=tick_log.on_resend
    )
    other.warm_up({alert.fingerprint: clock.now()}, load_snapshot(path, other.cfg))
    caplog.set_level(logging.INFO, logger=anomaly_cmd.logger.name)
    for _ in range(2):
        clock.advance(EVERY)
        other.infer()
        tick_log.after()
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")]
    assert ticks == [
        "tick: queries read 0, failed 0 (none due: a query's step_seconds); alerts raised 0, resolved 0,"
        " re-sent 1 (firing before the restart)",
        "tick: queries read 0, failed 0 (none due: a query's step_seconds); alerts raised 0, resolved 0",
    ]
    assert posted == [alert]  # posted again all the same, once


@pytest.mark.parametrize("fleet", ["this", "another"])
def test_run_posts_what_serve_never_received_after_a_restart_that_changed_a_setting(
    tmp_path, monkeypatch, caplog, fleet
):
    """An alert that fired and cleared while serve was down waits in the state file
    (``AlertForwarder.state``). A restart to change a setting (``fleet_k`` here) refused the snapshot, and
    that alert with it: the hard fault never reached serve. What the detectors learnt is still refused; the
    alert is posted, where the snapshot is this fleet's (its series are read now): another fleet's (two
    configurations run one after the other in one directory) is not posted to this one's serve."""
    prometheus, receiver = _Prometheus(), _Receiver()
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    text = (
        f"anomaly:\n  prometheus_url: {prometheus.url}\n  infer_every_seconds: 0.2\n"
        f"  alert_url: {receiver.url}\n"
        "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP, step_seconds: 0.2}\n"
    )
    (tmp_path / "c.yaml").write_text(text)
    state = tmp_path / "s.npz"
    args = ["anomaly", "run", "--config", str(tmp_path / "c.yaml"), "--ticks", "1", "--port", "0"]
    args += ["--state-file", str(state)]
    try:
        assert runner.invoke(app, args).exit_code == 0
        snapshot = read_snapshot(state, shaping_settings(AnomalyConfig(**yaml.safe_load(text)["anomaly"])))
        clock = FakeClock()
        before = AlertForwarder(receiver.url, "t", clock, resend_seconds=0.2)
        before.on_alert(_resolved(_xid("7", clock), clock))  # fired and cleared while serve was down
        snapshot.components[STATE_COMPONENT] = before.state()
        if fleet == "another":
            index = SeriesIndex()
            index.ids_for("temp", [{"Hostname": "elsewhere", "gpu": "0"}], snapshot.read_until)
            snapshot.components["index"] = index.state()
        assert save_snapshot(state, snapshot)
        before.close()
        (tmp_path / "c.yaml").write_text(text + "  fleet_k: 5\n")
        receiver.posted.clear()
        with caplog.at_level(logging.INFO):
            result = runner.invoke(app, args)
    finally:
        prometheus.close()
        receiver.close()
    assert result.exit_code == 0, result.output
    assert "saved under other settings (anomaly.fleet_k changed)" in caplog.text
    xid = [(a["labels"]["gpu"], "endsAt" in a) for a in receiver.posted if a["labels"].get("xid")]
    if fleet == "this":
        assert xid == [("7", True), ("7", True)]  # it fires, then ends: serve never had it
    else:
        assert xid == [] and "the alerts serve had not received are not posted: it is another" in caplog.text
