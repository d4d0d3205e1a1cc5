"""Chart series from PromQL: query rendering, Prometheus' matrix answer, and a real Prometheus."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerting.notifiers.base import Notification, build_notification, target_fields
from alerting.notifiers.charts import render_chart
from alerting.notifiers.series import (
    DEFAULT_QUERIES,
    PromQLSeriesSource,
    parse_matrix,
    render_query,
    series_source_from_config,
)
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config import SlackConfig
from gpuwarden.errors import SourceError
from gpuwarden.model import FaultKind, GpuRef, NodeRef, Priority, RackRef, RootCause
from tests.alerting.notifiers.incidents import change, make_incident
from tests.integration.servers import free_port, require_binary, running


def gpu_notification(
    kind: FaultKind = FaultKind.THERMAL, node: str = "n0701", index: int = 3
) -> Notification:
    incident = make_incident(priority=Priority.P2, title="GPU 3 on n0701 throttling")
    incident.root_cause = RootCause(kind, GpuRef(node, index, "GPU-abc"))
    return build_notification(change(incident, ChangeKind.OPENED, 0, "opened"))


def test_query_is_filled_from_the_target_and_escaped() -> None:
    fields = target_fields(GpuRef("n1", 3))
    assert render_query('DCGM_FI_DEV_GPU_TEMP{Hostname="$node",gpu="$gpu"}', fields) == (
        'DCGM_FI_DEV_GPU_TEMP{Hostname="n1",gpu="3"}'
    )
    assert render_query('up{instance="$node"}', target_fields(NodeRef('evil"} or vector(1) #'))) == (
        'up{instance="evil\\"} or vector(1) #"}'
    )


def test_a_query_needing_a_field_the_target_lacks_gives_none() -> None:
    assert render_query('x{gpu="$gpu"}', target_fields(RackRef("c1", "r07"))) is None
    assert render_query('x{uuid="$uuid"}', target_fields(GpuRef("n1", 3))) is None, "an empty uuid is missing"


def test_matrix_answer_becomes_series() -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"__name__": "DCGM_FI_DEV_GPU_TEMP", "gpu": "3", "job": "x"},
                    "values": [[1.0, "90"], [31.0, "95"]],
                },
                {"metric": {"__name__": "DCGM_FI_DEV_GPU_TEMP", "gpu": "4"}, "values": []},
            ],
        },
    }
    [series] = parse_matrix(body)
    assert series.name == "DCGM_FI_DEV_GPU_TEMP{gpu=3}"
    assert series.values == (90.0, 95.0)
    assert [t.timestamp() for t in series.times] == [1.0, 31.0]


@pytest.mark.parametrize(
    "body",
    [
        {"status": "error", "error": "parse error"},
        {"status": "success", "data": {"resultType": "vector"}},
        [],
    ],
    ids=["error", "vector", "not-an-object"],
)
def test_answers_that_are_not_a_matrix_are_source_errors(body: Any) -> None:
    with pytest.raises(SourceError):
        parse_matrix(body)


def test_a_failing_prometheus_means_no_chart_not_no_notification() -> None:
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503, text="down")))
    source = PromQLSeriesSource("http://prometheus:9090", FakeClock(), client=client)
    assert source.series_for(gpu_notification()) == []


def test_fault_kinds_without_a_query_draw_nothing() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no query should be sent")

    source = PromQLSeriesSource(
        "http://p", FakeClock(), client=httpx.Client(transport=httpx.MockTransport(fail))
    )
    assert source.series_for(gpu_notification(FaultKind.RACK_DOWN)) == []


def _matrix_body(*results: tuple[dict[str, str], list[tuple[float, float]]]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": m, "values": [[t, str(v)] for t, v in pts]} for m, pts in results],
        },
    }


def test_a_gpu_series_carries_the_band_the_anomaly_service_wrote_back() -> None:
    asked: list[str] = []
    temp = {"__name__": "DCGM_FI_DEV_GPU_TEMP", "Hostname": "n0701", "gpu": "3"}

    def prometheus(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        asked.append(query)
        if query.startswith("min(gpuwarden_anomaly_yhat_lower"):
            return httpx.Response(200, json=_matrix_body(({}, [(30.0, 55.0), (60.0, 56.0)])))
        if query.startswith("max(gpuwarden_anomaly_yhat_upper"):
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json=_matrix_body((temp, [(0.0, 60.0), (30.0, 61.0), (60.0, 90.0)])))

    client = httpx.Client(transport=httpx.MockTransport(prometheus))
    [series] = PromQLSeriesSource("http://p", FakeClock(), client=client).series_for(gpu_notification())
    assert asked[1:] == [
        'min(gpuwarden_anomaly_yhat_lower{for="DCGM_FI_DEV_GPU_TEMP",Hostname="n0701",gpu="3"})',
        'max(gpuwarden_anomaly_yhat_upper{for="DCGM_FI_DEV_GPU_TEMP",Hostname="n0701",gpu="3"})',
    ]
    assert series.lower is not None and series.lower[1:] == (55.0, 56.0)
    assert series.lower[0] != series.lower[0]  # NaN: no band point at t=0
    assert series.upper is None  # its query failed: the chart goes without that edge


def test_a_series_that_is_not_one_gpus_metric_asks_for_no_band() -> None:
    asked: list[str] = []

    def prometheus(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["query"])
        return httpx.Response(200, json=_matrix_body(({"Hostname": "n0701", "gpu": "3"}, [(0.0, 1.0)])))

    client = httpx.Client(transport=httpx.MockTransport(prometheus))
    source = PromQLSeriesSource("http://p", FakeClock(), client=client)
    [series] = source.series_for(gpu_notification(FaultKind.ECC_SBE_STORM))  # rate(): no __name__
    assert len(asked) == 1 and series.lower is None and series.upper is None


GPU3 = 'for="DCGM_FI_DEV_GPU_TEMP",Hostname="n0701",gpu="3"'  # the anomaly service's labels for its band


class GpuTemperatures(BaseHTTPRequestHandler):
    """A /metrics endpoint whose GPU 3 heats up with every scrape."""

    scrapes = itertools.count()

    def do_GET(self) -> None:
        n = next(self.scrapes)
        body = (
            "# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
            f'DCGM_FI_DEV_GPU_TEMP{{Hostname="n0701",gpu="3"}} {60 + n}\n'
            'DCGM_FI_DEV_GPU_TEMP{Hostname="n0701",gpu="4"} 55\n'
            "# TYPE gpuwarden_anomaly_yhat_lower gauge\n"
            f'gpuwarden_anomaly_yhat_lower{{{GPU3},model="adaptive"}} 58\n'
            f'gpuwarden_anomaly_yhat_lower{{{GPU3},model="fleet"}} 50\n'
            "# TYPE gpuwarden_anomaly_yhat_upper gauge\n"
            f'gpuwarden_anomaly_yhat_upper{{{GPU3},model="adaptive"}} 62\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def metrics_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), GpuTemperatures)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_series_of_the_hot_gpu_come_from_a_real_prometheus(tmp_path: Path, metrics_port: int) -> None:
    prometheus = require_binary("prometheus")
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
        "scrape_configs:\n  - job_name: dcgm\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    argv = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    url = f"http://127.0.0.1:{prom_port}"
    with running(argv, f"{url}/-/ready", tmp_path / "prometheus.log"):
        source = PromQLSeriesSource(url, SystemClock(), window_seconds=120, step_seconds=1)
        series: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = gpu_notification().model_copy(update={"event_at": datetime.now(UTC)})
            series = list(source.series_for(n))
            if series and len(series[0].values) >= 3:
                break
            time.sleep(0.5)
        source.close()
    [hot] = series
    assert hot.name == "DCGM_FI_DEV_GPU_TEMP{Hostname=n0701,gpu=3,instance=127.0.0.1:" + f"{metrics_port}}}"
    assert hot.values[-1] > hot.values[0] >= 60
    # The band written back by two detectors: the lowest lower bound, the highest upper one.
    assert hot.lower is not None and hot.upper is not None
    assert {v for v in hot.lower if v == v} == {50.0}  # v == v: not NaN (a point before the first band)
    assert {v for v in hot.upper if v == v} == {62.0}
    assert render_chart(series, "GPU 3 on n0701").startswith(b"\x89PNG")


def test_config_turns_the_chart_source_on() -> None:
    assert series_source_from_config(SlackConfig(), FakeClock()) is None
    assert (
        series_source_from_config(
            SlackConfig(chart_prometheus_url="http://p:9090", charts=False), FakeClock()
        )
        is None
    )
    source = series_source_from_config(SlackConfig(chart_prometheus_url="http://p:9090"), FakeClock())
    assert isinstance(source, PromQLSeriesSource)
    source.close()


def test_the_range_ends_a_little_after_the_event_and_never_in_the_future() -> None:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    clock = FakeClock()
    source = PromQLSeriesSource(
        "http://p", clock, window_seconds=600, client=httpx.Client(transport=httpx.MockTransport(answer))
    )
    long_ago = gpu_notification().model_copy(update={"event_at": clock.now() - timedelta(hours=2)})
    just_now = gpu_notification().model_copy(update={"event_at": clock.now()})
    assert source.series_for(long_ago) == []
    assert source.series_for(just_now) == []
    ends = [float(r.url.params["end"]) for r in asked]
    starts = [float(r.url.params["start"]) for r in asked]
    assert ends == [clock.time() - 7200 + 300, clock.time()]
    assert [e - s for s, e in zip(starts, ends, strict=True)] == [600, 600]
    assert asked[0].url.params["query"] == 'DCGM_FI_DEV_GPU_TEMP{Hostname="n0701",gpu="3"}'


def test_the_range_stops_short_of_the_stores_latency_offset() -> None:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    clock = FakeClock()
    config = SlackConfig.model_validate(
        {"chart_prometheus_url": "http://vm:8428", "chart_latency_offset_seconds": 30}
    )
    source = series_source_from_config(config, clock)
    assert source is not None
    source._client = httpx.Client(transport=httpx.MockTransport(answer))
    source.series_for(gpu_notification().model_copy(update={"event_at": clock.now()}))
    assert float(asked[0].url.params["end"]) == clock.time() - 30


def test_a_band_query_timing_out_skips_the_other_band_queries_of_that_chart() -> None:
    asked: list[str] = []
    gpu = {"__name__": "DCGM_FI_DEV_GPU_TEMP", "Hostname": "n0701"}

    def prometheus(request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        asked.append(query)
        if "yhat" in query:
            raise httpx.ReadTimeout("slow", request=request)
        rows = [({**gpu, "gpu": str(i)}, [(0.0, 60.0)]) for i in range(3)]
        return httpx.Response(200, json=_matrix_body(*rows))

    client = httpx.Client(transport=httpx.MockTransport(prometheus))
    series = PromQLSeriesSource("http://p", FakeClock(), client=client).series_for(gpu_notification())
    assert len(series) == 3 and all(s.lower is None and s.upper is None for s in series)
    assert len(asked) == 2  # the series, then one band query: not six


@pytest.mark.parametrize("whole", [True, False], ids=["g+i", "instances only"])
def test_a_mig_gpus_chart_draws_one_line_of_a_device_level_metric_not_one_per_instance(whole: bool) -> None:
    gpu = {"__name__": "DCGM_FI_DEV_GPU_TEMP", "Hostname": "n0701", "gpu": "3", "UUID": "GPU-abc"}
    instances = [
        {**gpu, "GPU_I_ID": str(i), "GPU_I_PROFILE": "1g.10gb", "namespace": "ml", "pod": f"llm-{i}"}
        for i in range(7)
    ]
    points = [(0.0, 60.0), (30.0, 90.0)]
    rows = ([(gpu, points)] if whole else []) + [(lab, points) for lab in instances]

    def prometheus(request: httpx.Request) -> httpx.Response:
        if "yhat" in request.url.params["query"]:
            return httpx.Response(200, json=_matrix_body())
        return httpx.Response(200, json=_matrix_body(*rows))

    client = httpx.Client(transport=httpx.MockTransport(prometheus))
    series = PromQLSeriesSource("http://p", FakeClock(), client=client).series_for(gpu_notification())
    assert [s.name for s in series] == ["DCGM_FI_DEV_GPU_TEMP{Hostname=n0701,UUID=GPU-abc,gpu=3}"]
    assert series[0].values == (60.0, 90.0)


def test_a_mig_gpus_memory_chart_keeps_each_instances_own_line() -> None:
    gpu = {"__name__": "DCGM_FI_DEV_FB_USED", "Hostname": "n0701", "gpu": "3"}
    rows = [(gpu, [(0.0, 9000.0)])] + [({**gpu, "GPU_I_ID": str(i)}, [(0.0, 1000.0 * i)]) for i in (1, 2)]

    def prometheus(request: httpx.Request) -> httpx.Response:
        if "yhat" in request.url.params["query"]:
            return httpx.Response(200, json=_matrix_body())
        return httpx.Response(200, json=_matrix_body(*rows))

    client = httpx.Client(transport=httpx.MockTransport(prometheus))
    source = PromQLSeriesSource("http://p", FakeClock(), client=client)
    assert [s.values for s in source.series_for(gpu_notification(FaultKind.MEMORY_LEAK))] == [
        (9000.0,),
        (1000.0,),
        (2000.0,),
    ]


def _instance_regex(query: str) -> re.Pattern[str]:
    """The ``instance=~"..."`` matcher of ``query`` as Prometheus reads it: the string literal unescaped,
    the regular expression anchored at both ends."""
    literal = re.search(r'instance=~"((?:[^"\\]|\\.)*)"', query)
    assert literal is not None, query
    return re.compile(re.sub(r"\\(.)", r"\1", literal.group(1)))


@pytest.mark.parametrize("node", ["n07|.+", ".*", "r07.n03", "n0[1-9]", "n(7)?", "a\\b"])
def test_a_node_down_chart_reads_that_node_alone_whatever_its_name_holds(node: str) -> None:
    """The node's name went into the chart's regular expression as it was: a node label ``n07|.+`` (or
    ``.*``) drew the ``up`` of every target in Prometheus in the incident's Slack chart, and a dot matched
    any character (``r07.n03`` also read ``r07xn03``)."""
    query = render_query(DEFAULT_QUERIES[FaultKind.NODE_DOWN], target_fields(NodeRef(node)))
    assert query is not None
    matcher = _instance_regex(query)
    assert matcher.fullmatch(node) and matcher.fullmatch(f"{node}:9400")
    assert not any(matcher.fullmatch(other) for other in ("n99:9400", "r07xn03", "n01", "n7", "x"))
