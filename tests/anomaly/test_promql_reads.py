"""How ``PromQLSource.read`` treats degraded answers (a mock transport; a fake Prometheus for timeouts)."""

from __future__ import annotations

import logging

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.needs import DBE
from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.writeback import AnomalyCollector, TickStats
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.promql_answers import _read_well_then_failing, matrix, source


def test_a_partial_response_is_a_failed_read_of_its_query_not_half_the_fleet_gone() -> None:
    clock = FakeClock()
    partial = {"warnings": ["store unavailable: 10.0.0.7:10901"]}
    prom = source({"up": lambda r: matrix(r, 2, **partial), "temp": matrix}, clock)
    end = clock.time()
    frames = prom.read(end - 60, end)
    assert [f.query for f in frames] == ["temp"]  # the half-answer is not fed to any detector
    health = prom.health()
    assert health.up and health.queries["temp"].up and not health.queries["up"].up
    assert "partial response" in health.queries["up"].last_error
    assert "store unavailable" in health.queries["up"].last_error
    registry = CollectorRegistry()
    collector = AnomalyCollector()
    collector.update([], [health], TickStats())
    registry.register(collector)
    labels = {"source": "prometheus", "query": "up"}
    assert registry.get_sample_value("gpuwarden_anomaly_query_errors_total", labels) == 1


def test_a_victoriametrics_clusters_partial_answer_is_a_failed_read_of_its_query() -> None:
    # vmselect marks an answer that misses a vmstorage node's series "isPartial": true, with no warning.
    clock = FakeClock()
    prom = source(
        {"up": lambda r: matrix(r, 1, isPartial=True), "temp": lambda r: matrix(r, isPartial=False)}, clock
    )
    end = clock.time()
    frames = prom.read(end - 60, end)
    assert [f.query for f in frames] == ["temp"]  # 1 of 4 GPUs answered: not fed as 3 GPUs gone
    health = prom.health()
    assert health.queries["temp"].up and not health.queries["up"].up
    assert "partial response (isPartial" in health.queries["up"].last_error
    prom.close()


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        ("https://prom.example:9443/api/v1/query_range?query=up", "https://prom.example:9443/"),
        ("/prometheus/api/v1/query_range", "http://prom:9090/"),
    ],
    ids=["to-https", "path-prefix"],
)
def test_a_redirect_names_the_server_where_it_points_and_the_setting_to_change(
    location: str, shown: str
) -> None:
    error = _failed_read(httpx.Response(308, headers={"Location": location}))
    assert "http://prom:9090: HTTP 308, a redirect to " in error
    assert shown in error
    assert "(not followed: set anomaly.prometheus_url to where it points)" in error


def test_an_html_page_answered_200_names_the_server_what_it_was_and_the_setting() -> None:
    page = "<html><body>Sign in</body></html>"
    error = _failed_read(httpx.Response(200, text=page, headers={"Content-Type": "text/html; charset=utf-8"}))
    assert "http://prom:9090: HTTP 200, not JSON (text/html): is anomaly.prometheus_url a Prometheus" in error


def _failed_read(answer: httpx.Response) -> str:
    """The error of a read of `up` from a server answering ``answer``, the source's URL set by
    ``anomaly.prometheus_url``."""
    clock = FakeClock()
    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(lambda request: answer))
    prom = PromQLSource(
        "http://prom:9090", [PromQuery("up", "up")], clock, client=client, setting="anomaly.prometheus_url"
    )
    end = clock.time()
    assert prom.read(end - 60, end) == []
    error = prom.health().queries["up"].last_error
    prom.close()
    return error


def test_metrics_say_since_when_a_query_fails_while_its_source_reads_well() -> None:
    clock, broken = FakeClock(), [False]

    def answer(request: httpx.Request) -> httpx.Response:
        if broken[0]:
            return httpx.Response(
                400, json={"status": "error", "errorType": "bad_data", "error": "parse error"}
            )
        return matrix(request)

    prom = source({"temp": answer, "power": matrix}, clock)
    good = _read_well_then_failing(prom, clock, broken, 4)
    registry = CollectorRegistry()
    collector = AnomalyCollector()
    collector.update([], [prom.health()], TickStats())
    registry.register(collector)
    name = "gpuwarden_anomaly_query_last_success_timestamp_seconds"
    assert registry.get_sample_value(name, {"source": "prometheus", "query": "temp"}) == good
    assert registry.get_sample_value(name, {"source": "prometheus", "query": "power"}) == clock.time()
    assert (
        registry.get_sample_value("gpuwarden_anomaly_query_up", {"source": "prometheus", "query": "temp"})
        == 0
    )
    prom.close()


def test_failed_queries_are_logged_in_one_line_a_tick_and_not_again_while_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, status = FakeClock(), {"temp": 502}

    def answer(request: httpx.Request) -> httpx.Response:
        code = status.get(request.url.params["query"], 502)
        if code == 200:
            return matrix(request)
        return httpx.Response(code, json={"status": "error", "error": f"bad gateway {code}"})

    names = [f"q{i}" for i in range(7)]
    prom = source(dict.fromkeys(names, answer), clock)
    caplog.set_level(logging.INFO, logger="anomaly.promql")

    def tick() -> list[logging.LogRecord]:
        caplog.clear()
        clock.advance(30)
        end = clock.time()
        prom.read(end - 30, end)
        return [r for r in caplog.records if r.name == "anomaly.promql"]

    (line,) = tick()  # seven queries answered 502: one line, not seven
    assert line.levelno == logging.WARNING
    assert "7 of 7 queries failed: q0, q1, q2, q3, q4, q5, q6" in line.getMessage()
    assert (
        "first error: prometheus: query q0: /api/v1/query_range: HTTP 502: bad gateway 502"
        in line.getMessage()
    )
    assert tick() == []  # failing the same way: said already
    assert tick() == []
    status["q3"] = 200
    (line,) = tick()
    assert line.levelno == logging.INFO and line.getMessage() == "promql: read again: q3"
    assert tick() == []
    status["q5"] = 504
    (line,) = tick()  # failing another way: named again, the others counted
    assert (
        "6 of 7 queries failed: q5 (and 5 failing as before); first error: prometheus: query q5"
        in line.getMessage()
    )
    assert all(not q.up for name, q in prom.health().queries.items() if name != "q3")


def test_a_window_of_more_than_11000_steps_is_read_in_parts_prometheus_accepts() -> None:
    # Prometheus refuses a range read of more than 11,000 points per series: a 0.25 s step over the
    # hour-long catch-up failed every tick, and the query never caught up.
    clock = FakeClock()
    end = clock.time()
    asked: list[float] = []

    def prometheus(request: httpx.Request) -> httpx.Response:
        start, stop, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        asked.append((stop - start) / step + 1)
        if (stop - start) / step > 11_000:
            error = "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query"
            return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": error})
        response = matrix(request, gpus=2)
        late = [[t, v] for t, v in response.json()["data"]["result"][1]["values"] if t > end - 600]
        body = response.json()
        body["data"]["result"][1]["values"] = late  # gpu 1 appeared 10 minutes ago: in the last part only
        return httpx.Response(200, json=body)

    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(prometheus))
    query = PromQuery("temp", "temp", step_seconds=0.25)
    # Parsing the hour's parts is CPU work: 10 s (the default deadline, real time) passed once under six
    # busy loops on two cores; 60 s is an upper bound the read does not wait out.
    prom = PromQLSource(
        "http://prom:9090", [query], clock, client=client, max_lookback_seconds=3600, deadline_seconds=60
    )
    [frame] = prom.read(end - 3600, end)
    assert prom.health().queries["temp"].up
    assert len(asked) > 1 and max(asked) <= 11_000
    assert frame.timestamps.size == 3600 * 4 and (frame.timestamps[1:] - frame.timestamps[:-1] == 0.25).all()
    by_gpu = {lab["gpu"]: row for lab, row in zip(frame.labels, frame.values, strict=True)}
    assert sorted(by_gpu) == ["0", "1"] and (by_gpu["0"] == 1).all()
    assert (by_gpu["1"][frame.timestamps > end - 600] == 1).all()
    assert np.isnan(by_gpu["1"][frame.timestamps <= end - 600]).all()


def test_a_source_down_for_one_cause_says_it_once_not_once_per_query() -> None:
    clock = FakeClock()

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    names = [f"q{i}" for i in range(24)]
    prom = source(dict.fromkeys(names, refused), clock)
    end = clock.time()
    assert prom.read(end - 30, end) == []
    health = prom.health()
    assert not health.up
    # The cause once, with how many queries it stopped and which (the first few), and no query's name twice.
    assert health.last_error.count("Connection refused") == 1, health.last_error
    assert "24 of 24 queries" in health.last_error and "q0, q1, q2" in health.last_error
    assert "q23" not in health.last_error and "and 21 more" in health.last_error
    assert not health.last_error.startswith("prometheus: prometheus:")
    assert all("Connection refused" in q.last_error for q in health.queries.values())  # each still says why
    prom.close()


def test_two_causes_of_a_source_outage_are_each_named_with_their_queries() -> None:
    clock = FakeClock()

    def bad(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"status": "error", "error": "parse error"})

    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, json={"status": "error", "error": "bad gateway"})

    prom = source({"a": bad, "b": gateway, "c": gateway}, clock)
    end = clock.time()
    prom.read(end - 30, end)
    error = prom.health().last_error
    assert error.count("bad gateway") == 1 and error.count("parse error") == 1, error
    assert "2 of 3 queries (b, c)" in error and "1 of 3 queries (a)" in error, error
    prom.close()


def test_a_query_that_matches_no_series_is_said_once_and_again_when_it_matches_some(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, gpus = FakeClock(), {"typo": 0, "temp": 2}
    prom = source({name: lambda r, n=name: matrix(r, gpus[n]) for name in gpus}, clock)
    caplog.set_level(logging.INFO, logger="anomaly.promql")

    def tick() -> list[str]:
        caplog.clear()
        clock.advance(30)
        end = clock.time()
        prom.read(end - 30, end)
        return [r.getMessage() for r in caplog.records if r.name == "anomaly.promql"]

    (line,) = tick()  # a typo in a metric name reads "successfully" as nothing: say so, naming it
    assert line.startswith("promql: 1 of 2 queries matched no series: typo"), line
    assert caplog.records[-1].levelno == logging.WARNING
    assert tick() == []  # said already
    gpus["typo"] = 3
    assert tick() == ["promql: matching series again: typo"]
    gpus["temp"] = 0
    (line,) = tick()
    assert line.startswith("promql: 1 of 2 queries matched no series: temp"), line
    prom.close()


def test_an_ha_pairs_duplicate_samples_of_a_counter_are_no_reset_and_a_real_error_still_fires() -> None:
    # Thanos or a federating proxy merging two Prometheus replicas without dedup answers two samples at one
    # timestamp, the replica that scraped earlier one error behind, in either order: the last one read was
    # taken, 5 then 4 a "reset" counting 4 double-bit errors, and every GPU was drained and reset.
    clock = FakeClock()
    errors_at = clock.time() + 300  # a real double-bit error on GPU 0

    def pair(request: httpx.Request) -> httpx.Response:
        result = []
        for sample in matrix(request, gpus=2).json()["data"]["result"]:
            gpu = sample["metric"]["gpu"]
            points = []
            for t, _ in sample["values"]:
                count = 5 + (gpu == "0" and t >= errors_at)
                both = [[t, str(count)], [t, str(count - 1)]]
                points += both if (t // 30) % 2 else both[::-1]  # whichever replica answered first
            result.append({"metric": {**sample["metric"], "UUID": f"GPU-{gpu}"}, "values": points})
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)

    prom = source({DBE: pair}, clock)
    service = AnomalyService(AnomalyConfig(detectors=["signatures"]), [prom], clock)
    raised = []
    for _ in range(20):
        clock.advance(30)
        raised += service.infer().raised
    assert [(a.labels["alertname"], a.labels["gpu"]) for a in raised] == [("GpuDoubleBitEcc", "0")]


def test_a_series_a_proxy_answers_twice_is_one_series_at_its_larger_value() -> None:
    # A proxy concatenating an HA pair's answers without dedup sends each series twice, the replica that
    # scraped earlier one error behind, in either order: the rows were two series of one id, whichever came
    # last read (here read in parts, a query limit of one step, and joined), a counter 5, 4, 5, 4, and
    # every GPU was drained and reset.
    clock = FakeClock()
    errors_at = clock.time() + 300  # a real double-bit error on GPU 0

    def concatenated(request: httpx.Request) -> httpx.Response:
        start, end = float(request.url.params["start"]), float(request.url.params["end"])
        if end > start:
            body = {"status": "error", "errorType": "execution", "error": "too many samples"}
            return httpx.Response(422, json=body)
        ahead, behind = [], []
        for sample in matrix(request, gpus=2).json()["data"]["result"]:
            gpu = sample["metric"]["gpu"]
            metric = {**sample["metric"], "UUID": f"GPU-{gpu}"}
            counts = [5 + (gpu == "0" and t >= errors_at) for t, _ in sample["values"]]
            ahead.append(
                {
                    "metric": metric,
                    "values": [[t, str(c)] for (t, _), c in zip(sample["values"], counts, strict=True)],
                }
            )
            behind.append(
                {
                    "metric": metric,
                    "values": [[t, str(c - 1)] for (t, _), c in zip(sample["values"], counts, strict=True)],
                }
            )
        result = ahead + behind if (end // 60) % 2 else behind + ahead  # whichever replica answered first
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    prom = source({DBE: concatenated}, clock)
    service = AnomalyService(AnomalyConfig(detectors=["signatures"]), [prom], clock)
    raised = []
    for _ in range(20):
        clock.advance(60)
        raised += service.infer().raised
    assert [(a.labels["alertname"], a.labels["gpu"]) for a in raised] == [("GpuDoubleBitEcc", "0")]
    prom.close()


ANNOTATION = (
    'PromQL warning: bucket label "le" is missing or has a malformed value of "" for metric name "x" (1:25)'
)


@pytest.mark.parametrize(
    ("warnings", "read"),
    [
        ([ANNOTATION], True),
        (
            ["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket"],
            True,
        ),
        ([ANNOTATION, "store unavailable: 10.0.0.7:10901"], False),
    ],
    ids=["promql-warning", "promql-info", "annotation-and-partial"],
)
def test_a_promql_annotation_on_a_whole_answer_is_read_and_logged_once_while_a_partial_one_still_fails(
    warnings: list[str], read: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Prometheus 2.46+ sends its query annotations as warnings beside a whole answer: a histogram_quantile
    # query with one ill-formed bucket failed every read, raised GpuwardenSourceStale and was never scored.
    clock = FakeClock()
    prom = source({"latency": lambda r: matrix(r, 2, warnings=warnings), "temp": matrix}, clock)
    for _ in range(2):
        clock.advance(30)
        frames = prom.read(clock.time() - 30, clock.time())
    assert sorted(f.query for f in frames) == (["latency", "temp"] if read else ["temp"])
    assert prom.health().queries["latency"].up is read
    noted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("promql: query latency:")]
    assert len(noted) == read  # said once, not at every read
    assert all(warnings[0] in message for message in noted)


def test_a_nan_sample_is_marked_a_sample_where_a_step_without_one_is_not() -> None:
    """Prometheus answers ``NaN`` for 0/0: a sample, which the warm-up's replay must take as one (a gap row,
    as the live read of its window returns it), not as a step the series had no sample at."""
    clock = FakeClock()

    def answer(request: httpx.Request) -> httpx.Response:
        start, step = float(request.url.params["start"]), float(request.url.params["step"])
        result = [
            {"metric": {"gpu": "0"}, "values": [[start, "1"], [start + step, "2"]]},
            {"metric": {"gpu": "1"}, "values": [[start + step, "NaN"]]},
        ]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)

    end = clock.time()
    (frame,) = source({"ratio": answer}, clock).read(end - 60, end)
    assert [lab["gpu"] for lab in frame.labels] == ["0", "1"]
    assert np.isnan(frame.values[1]).all()
    assert frame.samples.tolist() == [[True, True], [False, True]]


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (503, "HTTP 503, not JSON (text/plain): not ready (Prometheus answers so until its TSDB has started"),
        (502, "HTTP 502, not JSON (text/plain): the server, or a proxy before it, failed"),
    ],
    ids=["prometheus-starting", "proxy-backend-failed"],
)
def test_a_server_error_page_says_the_server_failed_not_that_the_url_may_be_wrong(
    status: int, said: str
) -> None:
    # Prometheus 2.42 answers its API so until its TSDB is ready (8 s of WAL replay here for 400,000 series).
    answer = httpx.Response(
        status, text="Service Unavailable", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    error = _failed_read(answer)
    assert said in error
    assert "a Prometheus HTTP API?" not in error


def test_a_failure_naming_the_range_it_was_asked_is_logged_once_not_at_every_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # VictoriaMetrics 1.x with -search.maxUniqueTimeseries=5, as it answered each tick (only the times move).
    clock = FakeClock()

    def victoriametrics(request: httpx.Request) -> httpx.Response:
        start, end = (round(float(request.url.params[k]) * 1000) for k in ("start", "end"))
        error = (
            f'error when executing query="temp" on the time range (start={start}, end={end}, step=30000):'
            " cannot execute query: search error after reading 0 data blocks: error when searching for"
            ' tagFilters=[{__name__="temp"}] on the time range [2026-12-07T02:17:15Z..'
            f"2026-12-07T02:{end // 60000 % 60:02d}:20Z]: error when searching tsids: the number of matching"
            " timeseries exceeds 5; either narrow down the search or increase -search.max* command-line flag"
            " values at vmselect"
        )
        return httpx.Response(422, json={"status": "error", "errorType": "422", "error": error})

    prom = source({"temp": victoriametrics, "up": matrix}, clock)
    caplog.set_level(logging.INFO, logger="anomaly.promql")
    for _ in range(4):
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
    said = [r.getMessage() for r in caplog.records if "queries failed" in r.getMessage()]
    assert len(said) == 1, said
    assert "exceeds 5; either narrow down the search or increase -search.max*" in said[0]
    assert not prom.health().queries["temp"].up
    prom.close()


@pytest.mark.parametrize(
    ("status", "kind", "error", "flag"),
    [
        (422, "execution", "query processing would load too many samples into memory in query execution",
         "--query.max-samples"),
        (503, "timeout", "query timed out in expression evaluation", "--query.timeout"),
    ],
    ids=["max-samples", "query-timeout"],
)  # fmt: skip
def test_a_read_over_a_prometheus_query_limit_names_the_flag_and_the_fix(
    status: int, kind: str, error: str, flag: str
) -> None:
    # Prometheus 2.42 with --query.max-samples=40 or --query.timeout=1ms answers so even at one step.
    body = {"status": "error", "errorType": kind, "error": error}
    said = _failed_read(httpx.Response(status, json=body))
    assert f"{error} (Prometheus' {flag}: raise it, or narrow the query or its step_seconds)" in said


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (401, "HTTP 401, not JSON (text/plain): credentials missing or refused: write them in"
         " anomaly.prometheus_url (http://user:password@host:port/..., with @ : / % and spaces in them"
         " percent-encoded)"),
        (404, "HTTP 404, not JSON (text/plain): no such path: is anomaly.prometheus_url a Prometheus HTTP"
         " API, with its path prefix (http://proxy/prom)?"),
    ],
    ids=["wrong-password", "path-prefix-missing"],
)  # fmt: skip
def test_an_auth_proxys_refusal_says_what_to_write_in_the_url(status: int, said: str) -> None:
    # A reverse proxy with basic auth and a path prefix before Prometheus: a wrong password, no prefix.
    answer = httpx.Response(status, text="Unauthorized", headers={"Content-Type": "text/plain"})
    assert said in _failed_read(answer)
