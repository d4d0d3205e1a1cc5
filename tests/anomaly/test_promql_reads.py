"""How ``PromQLSource.read`` treats degraded answers (a mock transport; a fake Prometheus for timeouts)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as futures_wait
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly import promql
from anomaly.needs import DBE
from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.writeback import AnomalyCollector, TickStats
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import FakePrometheus

Answer = Callable[[httpx.Request], httpx.Response]


def matrix(request: httpx.Request, gpus: int = 4, **extra: Any) -> httpx.Response:
    """Every GPU of one node at each step of the asked grid."""
    start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
    stamps = [start + i * step for i in range(round((end - start) / step) + 1)]
    result = [
        {"metric": {"Hostname": "n1", "gpu": str(g)}, "values": [[t, "1"] for t in stamps]}
        for g in range(gpus)
    ]
    return httpx.Response(
        200, json={"status": "success", "data": {"resultType": "matrix", "result": result}, **extra}
    )


def source(answers: dict[str, Answer], clock: FakeClock, **kwargs: Any) -> PromQLSource:
    def handle(request: httpx.Request) -> httpx.Response:
        return answers[request.url.params["query"]](request)

    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(handle))
    queries = [PromQuery(name, name) for name in answers]
    return PromQLSource("http://prom:9090", queries, clock, client=client, **kwargs)


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


def _read_well_then_failing(prom: PromQLSource, clock: FakeClock, failing: list[bool], reads: int) -> float:
    """One good read now, then ``reads`` reads 30 s apart with ``failing`` set; the time of the good read."""
    prom.read(clock.time() - 30, clock.time())
    good = clock.time()
    failing[0] = True
    for _ in range(reads):
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
    return good


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


def test_a_slow_query_is_a_failed_read_at_the_deadline_and_does_not_delay_the_others() -> None:
    clock, release, hold = FakeClock(), threading.Event(), threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        if hold.is_set():
            release.wait(5)  # held until the read is over: it cannot answer within the deadline
        return matrix(request)

    answers: dict[str, Answer] = {"slow": slow, "temp": matrix, "power": matrix, "util": matrix}
    # The deadline is real time: 1.5 s for the read that waits it out, 30 s (never waited out) for the
    # reads that every query must answer in time.
    prom = source(answers, clock, deadline_seconds=30, workers=2)
    end = clock.time()
    assert len(prom.read(end - 30, end)) == 4
    hold.set()
    prom.deadline_seconds = 1.5
    try:
        clock.advance(30)
        end = clock.time()
        frames = prom.read(end - 30, end)
    finally:
        release.set()
    prom.deadline_seconds = 30
    assert sorted(f.query for f in frames) == ["power", "temp", "util"]
    health = prom.health()
    assert health.up and not health.queries["slow"].up
    assert "deadline" in health.queries["slow"].last_error
    hold.clear()
    clock.advance(30)
    end = clock.time()
    frames = prom.read(end - 30, end)  # the slow query answers again and catches up from where it failed
    assert sorted(f.query for f in frames) == ["power", "slow", "temp", "util"]
    (caught_up,) = [f for f in frames if f.query == "slow"]
    assert caught_up.timestamps.size == 2
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


def test_queries_a_slow_prometheus_could_not_answer_in_time_go_first_at_the_next_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prometheus answers two queries per read within the deadline, the rest too late (each within its own
    # timeout: slow, not down). Read in config order every time, the same four queries were never read.
    clock, late, answered = FakeClock(), threading.Event(), []
    lock = threading.Lock()
    reading = [clock.time()]  # the end of the read under way

    def answer(request: httpx.Request) -> httpx.Response:
        with lock:
            # A worker of an earlier read, still starting when that read ended, is past its deadline: it
            # answers at once and takes none of this read's two answers in time (it took one, on a loaded
            # machine, and this read waited the 60 s below for a second).
            if float(request.url.params["end"]) != reading[0]:
                return matrix(request)
            # The first two the read sent, however their requests arrive: on a loaded machine the second
            # one's worker, slow to send it, arrived after the first worker's next query and lost its turn.
            on_time = request.url.params["query"] in sent[:2]
            if on_time:
                answered.append(request.url.params["query"])
        if not on_time:
            # Past the read's deadline: answered once the read is over (60: never a hung worker).
            late.wait(60)
        return matrix(request)

    def deadline_once_two_answered(
        futures: Iterable[Future[Any]], timeout: float | None = None
    ) -> tuple[set[Future[Any]], set[Future[Any]]]:
        # The read's deadline comes once the two queries answered in time are parsed, however slow the
        # machine: with a real 1.5 s deadline, a loaded CI machine (2 cores, two test workers, servers) once
        # parsed an answer given in time past it, and the test failed.
        done: set[Future[Any]] = set()
        pending = set(futures)
        while len(done) < 2:
            finished, pending = futures_wait(pending, return_when=FIRST_COMPLETED)  # pytest's timeout: a hang
            done |= finished
        return done, pending

    monkeypatch.setattr(promql, "wait", deadline_once_two_answered)
    names = [f"q{i}" for i in range(6)]
    # The real deadline is far off: only the one above ends a read.
    prom = source(dict.fromkeys(names, answer), clock, deadline_seconds=600, workers=2)
    sent: list[str] = []  # this read's queries in the order it sent them to its workers
    submit = prom._pool.submit

    def sending(fn: Callable[..., Any], query: PromQuery, *args: Any, **kwargs: Any) -> Future[Any]:
        sent.append(query.name)
        return submit(fn, query, *args, **kwargs)

    monkeypatch.setattr(prom._pool, "submit", sending)
    read: set[str] = set()
    reads = stalled = 0
    while read != set(names) and reads < 3 + stalled and reads < 10:
        clock.advance(30)
        end = reading[0] = clock.time()
        answered.clear()
        sent.clear()
        late.clear()
        try:
            frames = {f.query for f in prom.read(end - 30, end)}
        finally:
            late.set()
        stalled += not set(answered) <= frames
        read |= frames
        reads += 1
    assert read == set(names), (reads, stalled)
    prom.close()


def test_a_query_still_unanswered_at_the_deadline_does_not_hold_a_worker_into_the_next_read() -> None:
    # Its answer was dropped at the deadline, but its request ran on (up to the query timeout) and kept the
    # worker, so the next read's queries could not start in time either: every other tick read nothing.
    prometheus, release = FakePrometheus(), threading.Event()
    clock = FakeClock()

    def slow(_: float) -> list[tuple[dict[str, str], float]]:
        release.wait(10)
        return []

    prometheus.answers["slow"] = slow
    prometheus.answers["fast"] = lambda _: [({"gpu": "0"}, 1.0)]
    queries = [PromQuery("slow", "slow"), PromQuery("fast", "fast")]
    prom = PromQLSource(prometheus.url, queries, clock, timeout_seconds=10, deadline_seconds=1.5, workers=1)
    try:
        end = clock.time()
        assert prom.read(end - 30, end) == []  # `slow` holds the only worker past the deadline
        clock.advance(30)
        end = clock.time()
        frames = prom.read(end - 30, end)
        assert [f.query for f in frames] == ["fast"]
    finally:
        release.set()
        prom.close()
        prometheus.close()


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


def _too_long(kind: str) -> httpx.Response:
    """What a server says to a read too long or too big for it."""
    if kind == "timeout":
        raise httpx.ReadTimeout("timed out")
    if kind == "query-timeout":
        body = {"status": "error", "errorType": "timeout", "error": "query timed out in query execution"}
        return httpx.Response(503, json=body)
    if kind == "sample-limit":
        error = "query processing would load too many samples into memory in query execution"
        return httpx.Response(422, json={"status": "error", "errorType": "execution", "error": error})
    return httpx.Response(504, text="<html>504 Gateway Time-out</html>")


@pytest.mark.parametrize("kind", ["timeout"])
def test_a_catch_up_too_long_for_the_server_is_shortened_until_the_source_is_read_again(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # After an outage a big fleet's queries asked every step they missed at once, which the server could not
    # answer in time; they failed again and asked more at the next tick, and were never read again. (One the
    # server refuses for its size, HTTP 422, 504 or a 503 timeout, is read in parts: test_promql_parts.py.)
    clock, down = FakeClock(), [False]

    def answer(request: httpx.Request) -> httpx.Response:
        if down[0]:
            return httpx.Response(502, json={"status": "error", "error": "bad gateway"})
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        return _too_long(kind) if (end - start) / step >= 4 else matrix(request)

    prom = source({"temp": answer, "power": answer}, clock)
    service = AnomalyService(AnomalyConfig(), [prom], clock, detectors=[])

    def tick() -> bool:
        clock.advance(30)
        service.infer()
        return prom.health().up

    assert tick()
    down[0] = True
    assert not any(tick() for _ in range(20))  # ten minutes of outage
    down[0] = False
    ups = [tick() for _ in range(8)]
    assert ups[-3:] == [True] * 3, ups  # read again, and at every tick after
    assert all(h.up for h in prom.health().queries.values())
    shortened = [r.getMessage() for r in caplog.records if "it missed failed" in r.getMessage()]
    assert shortened and shortened[0].startswith("promql: query temp: reading the 630s it missed failed")
    prom.close()


def test_a_read_of_one_step_too_slow_for_its_deadline_is_not_said_to_leave_steps_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    prom = source({"temp": lambda r: _too_long("timeout")}, clock)
    for _ in range(3):
        clock.advance(30.5)  # a tick's window a little over one step: the scheduler's jitter
        prom.read(clock.time() - 30.5, clock.time())
    assert not [r for r in caplog.records if "it missed failed" in r.getMessage()]
    prom.close()


def test_a_query_the_deadline_left_no_turn_keeps_its_whole_catch_up(caplog: pytest.LogCaptureFixture) -> None:
    # One worker: `slow` takes the whole deadline and `waiting` never starts. Only `slow` was too long for
    # the server; `waiting` still asks every step it missed at its turn.
    clock, down, hold, release = FakeClock(), [False], threading.Event(), threading.Event()
    asked: dict[str, list[float]] = {"slow": [], "waiting": []}

    def answer(request: httpx.Request) -> httpx.Response:
        name = request.url.params["query"]
        if down[0]:
            return httpx.Response(502, json={"status": "error", "error": "bad gateway"})
        asked[name].append(float(request.url.params["start"]))
        if hold.is_set() and name == "slow":
            release.wait(5)
        return matrix(request)

    prom = source({"slow": answer, "waiting": answer}, clock, workers=1, deadline_seconds=30)
    clock.advance(30)
    good = _read_well_then_failing(prom, clock, down, 3)
    down[0] = False
    hold.set()
    prom.deadline_seconds = 1.5
    try:
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
    finally:
        release.set()
    hold.clear()
    prom.deadline_seconds = 30
    clock.advance(30)
    prom.read(clock.time() - 30, clock.time())
    shortened = [r.getMessage() for r in caplog.records if "it missed failed" in r.getMessage()]
    assert [m.split(":")[1] for m in shortened] == [" query slow"], shortened
    assert asked["waiting"][-1] == good + 30  # its first missed step: the whole catch-up
    assert asked["slow"][-1] > good + 30  # half of it
    prom.close()


@pytest.mark.parametrize("error", [httpx.ConnectTimeout, httpx.PoolTimeout], ids=["connect", "pool"])
def test_an_outage_where_the_server_cannot_be_reached_is_caught_up_whole_once_it_is_back(
    error: type[httpx.TimeoutException], caplog: pytest.LogCaptureFixture
) -> None:
    # A host down or cut off (its packets dropped) times out connecting: the request never reached the
    # server, so its size says nothing. Read as a catch-up too long for the server, the second tick of the
    # outage cut the catch-up to one step, and every step missed in the outage stayed unread once it ended.
    clock, unreachable = FakeClock(), [False]
    asked: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if unreachable[0]:
            raise error("timed out", request=request)
        asked.append(float(request.url.params["start"]))
        return matrix(request)

    prom = source({"temp": answer}, clock)
    good = _read_well_then_failing(prom, clock, unreachable, 10)
    unreachable[0] = False
    clock.advance(30)
    prom.read(clock.time() - 30, clock.time())
    assert asked[-1] == good + 30  # every step it missed, from the first
    assert not [r for r in caplog.records if "it missed failed" in r.getMessage()]
    prom.close()


@pytest.mark.parametrize(
    "refusal",
    [
        # VictoriaMetrics answers a query it cannot parse with 422, as Prometheus its execution limits.
        (422, {"errorType": "422", "error": 'cannot execute query: singleExpr: unexpected token ""'}),
        (503, {"errorType": "timeout", "error": "query timed out in query execution"}),
    ],
    ids=["victoriametrics-typo", "warm-up-too-long"],
)
def test_a_query_never_read_is_not_said_to_leave_steps_it_missed_unread(
    refusal: tuple[int, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    # A query never read has nothing to catch up: its next read asks the tick's window whatever failed. Its
    # failed warm-up (an hour) was logged as "reading the 3600s it missed failed (...); the next read asks
    # only the last 1800s", and a typo sent to VictoriaMetrics (HTTP 422) as a read too long for the server.
    clock = FakeClock()
    status, body = refusal
    asked: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(float(request.url.params["start"]))
        return httpx.Response(status, json={"status": "error", **body})

    prom = source({"temp": answer}, clock)
    prom.read(clock.time() - 3600, clock.time())  # the warm-up
    clock.advance(30)
    prom.read(clock.time() - 30, clock.time())
    assert asked[-1] == clock.time()  # the tick's one step: nothing to catch up
    assert not [r for r in caplog.records if "it missed failed" in r.getMessage()]
    assert prom.health().queries["temp"].last_error.endswith(body["error"])
    prom.close()


def test_a_query_never_read_refused_at_every_tick_of_several_steps_is_not_said_to_leave_steps_unread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A tick of several steps (``infer_every_seconds`` 60 at a 30 s step) whose query is refused whatever
    # its size (a typo VictoriaMetrics answers with 422) asks nothing it missed: each read is the tick's own
    # window, after the last. Shortening a never-read query from its second failure for its size said
    # "reading the 60s it missed failed ... the older steps stay unread" at the second tick and asked
    # only half the next tick's window.
    clock = FakeClock()
    asked: list[tuple[float, float]] = []
    body = {"status": "error", "errorType": "422", "error": 'cannot execute query: unexpected token ""'}

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append((float(request.url.params["start"]), float(request.url.params["end"])))
        return httpx.Response(422, json=body)

    prom = source({"temp": answer}, clock)
    prom.read(clock.time() - 3600, clock.time())  # the warm-up: asked in halves down to one step, refused
    asked.clear()
    for _ in range(3):
        clock.advance(60)
        prom.read(clock.time() - 60, clock.time())
    assert [end - start for start, end in asked] == [30, 30, 30]  # (t-60, t]: steps t-30 and t, not halved
    assert not [r for r in caplog.records if "it missed failed" in r.getMessage()]
    prom.close()


@pytest.mark.parametrize("kind", ["timeout"])
def test_a_restarted_process_whose_first_catch_up_is_too_big_shortens_it_and_reads_again(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A process restarted from a snapshot asks from the snapshot's last read at every tick until a read
    # succeeds. Its queries never read in this process, a catch-up too big for the server was not shortened:
    # it failed at every tick, asking more each time, and the restarted service never read again
    # (anomaly_restart_fuzz --prom-faults: no score after the restart; the uninterrupted run's went on).
    # A read the server refuses for its size is read in parts (test_promql_parts.py); one this client gave up
    # waiting for is shortened.
    clock = FakeClock()

    def answer(request: httpx.Request) -> httpx.Response:
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        return _too_long(kind) if (end - start) / step >= 4 else matrix(request)

    prom = source({"temp": answer}, clock)
    prom.read(clock.time() - 3600, clock.time())  # the warm-up: too long for the server
    read_until = clock.time() - 300  # where the snapshot's reads ended
    ups = []
    for _ in range(6):
        clock.advance(30)
        prom.read(read_until, clock.time())  # the service asks from its last good read (the snapshot's)
        ups.append(prom.health().up)
        read_until = clock.time() if ups[-1] else read_until
    assert ups[-3:] == [True] * 3, ups
    said = [r.getMessage() for r in caplog.records if "it missed failed" in r.getMessage()]
    assert said and said[0].startswith("promql: query temp: reading the 330s it missed failed"), said
    prom.close()


def test_a_catch_up_shortened_before_another_outage_says_what_it_leaves_unread_once_read_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The shortened catch-up holds until a good read: after a second outage (here half an hour) the read asks
    # only the last 90 s again, and the half hour stayed unread without a word (the warning, 30 min before,
    # spoke of 90 s).
    clock, mode = FakeClock(), ["up"]

    def answer(request: httpx.Request) -> httpx.Response:
        if mode[0] == "down":
            return httpx.Response(502, json={"status": "error", "error": "bad gateway"})
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        return _too_long("timeout") if (end - start) / step >= 4 else matrix(request)

    prom = source({"temp": answer}, clock)
    good = _read_well_then_failing(prom, clock, [False], 0)
    for state, ticks in (("down", 5), ("up", 1), ("down", 60), ("up", 1)):
        mode[0] = state
        caplog.clear()
        for _ in range(ticks):
            clock.advance(30)
            prom.read(clock.time() - 30, clock.time())
    assert prom.health().queries["temp"].up
    said = [r.getMessage() for r in caplog.records if r.name == "anomaly.catchup"]
    unread = clock.time() - 90 - good
    assert said == [
        f"promql: query temp: read the last 90s; the {unread:.0f}s before, since its last good read, stay"
        " unread (a gap)"
    ]
    prom.close()


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
