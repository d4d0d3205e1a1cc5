"""``PromQLSource.read``'s catch-up after an outage: shortened where the server refuses it, said once read."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from anomaly import catchup
from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.promql_answers import _read_well_then_failing, _too_long, matrix, source


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
    assert shortened and shortened[0].startswith(
        "promql: 2 queries: for each, reading what it missed failed (timed out): temp (630s, next 315s),"
        " power (630s, next 315s); their next reads ask half as far back"
    )  # one line for the read, not one per query
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
    assert body["error"] in prom.health().queries["temp"].last_error
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


@pytest.mark.parametrize("queries", [1, 7])
def test_a_hung_server_is_caught_up_whole_once_it_answers_again(
    queries: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Prometheus SIGSTOPped past the read's deadline (the kernel still takes the connection, no answer comes)
    # fails every read whatever its size. Read as a catch-up too long for the server, the first tick of the
    # hang halved it and the next cut it to one step: at its return only the last step was read and the whole
    # hang stayed unread ("read the last 30s; the 120s before ... stay unread"), with a line per tick saying
    # catch-ups were shortened. (Each query's line at every tick, 22 at once for the example configuration,
    # was made one line a read before; now there is none to say.)
    clock, hung = FakeClock(), [False]
    asked: dict[str, list[float]] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        if hung[0]:
            return _too_long("timeout")
        asked.setdefault(request.url.params["query"], []).append(float(request.url.params["start"]))
        return matrix(request)

    names = [f"q{i}" for i in range(queries)]
    prom = source(dict.fromkeys(names, answer), clock)
    caplog.set_level(logging.WARNING, logger="anomaly.catchup")

    def tick() -> None:
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())

    tick()
    good = clock.time()
    hung[0] = True
    for _ in range(5):
        tick()
    assert not any(h.up for h in prom.health().queries.values())
    hung[0] = False
    tick()
    assert all(h.up for h in prom.health().queries.values())
    assert {q: starts[-1] for q, starts in asked.items()} == dict.fromkeys(names, good + 30)  # the whole hang
    assert not [r.getMessage() for r in caplog.records if r.name == "anomaly.catchup"]
    prom.close()


def test_a_catch_up_too_long_once_a_hung_server_is_back_is_shortened_until_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Back from its hang, the server answers the queries whose catch-up it can: one too long for it is
    # shortened as after any outage (the hang's failures are no sign of its size, an answer is).
    clock, hung = FakeClock(), [False]

    def short(request: httpx.Request) -> httpx.Response:
        return _too_long("timeout") if hung[0] else matrix(request)

    def answer(request: httpx.Request) -> httpx.Response:
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        return _too_long("timeout") if hung[0] or (end - start) / step >= 4 else matrix(request)

    prom = source({"small": short, "big": answer}, clock)

    def tick() -> bool:
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
        return prom.health().queries["big"].up

    assert tick()
    hung[0] = True
    assert not any(tick() for _ in range(10))
    hung[0] = False
    ups = [tick() for _ in range(6)]
    assert ups[-3:] == [True] * 3, ups
    said = [r.getMessage() for r in caplog.records if "it missed failed" in r.getMessage()]
    assert said and said[0].startswith("promql: query big: reading the 360s it missed failed"), said
    prom.close()


@pytest.mark.parametrize(
    ("error", "said"),
    [
        ("too many points for the given step={step}, start={start} and end={end}: {points}; cannot exceed"
         " -search.maxPointsPerTimeseries=3", "cannot exceed -search.maxPointsPerTimeseries=3)"),
        ('cannot execute query: cannot evaluate "temp": cannot select more than -search.maxSamplesPerQuery='
         "100 samples; possible solutions: to increase the -search.maxSamplesPerQuery; to reduce time range"
         " for the query; to use more specific label filters in order to select lower number of series",
         "cannot select more than -search.maxSamplesPerQuery=100 samples"),
    ],
    ids=["max-points", "max-samples"],
)  # fmt: skip
def test_a_read_refused_by_a_victoriametrics_limit_is_said_with_the_limits_flag(
    error: str, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    # VictoriaMetrics' errors begin with the query and the time range asked: the 80 characters shown of them
    # ended in "(start=17966", never reaching the flag.
    clock = FakeClock()

    def victoriametrics(request: httpx.Request) -> httpx.Response:
        start, end, step = (round(float(request.url.params[k]) * 1000) for k in ("start", "end", "step"))
        points = (end - start) // step + 1
        if points <= 3:
            return matrix(request)
        text = error.format(start=start, end=end, step=step, points=points)
        where = (
            f'error when executing query="temp" on the time range (start={start}, end={end}, step={step}): '
        )
        return httpx.Response(422, json={"status": "error", "errorType": "422", "error": where + text})

    prom = source({"temp": victoriametrics}, clock)
    caplog.set_level(logging.WARNING, logger="anomaly.promql")
    end = clock.time()
    assert prom.read(end - 300, end)  # ten steps, read in parts
    (line,) = [r.getMessage() for r in caplog.records if "was refused" in r.getMessage()]
    assert said in line, line
    prom.close()


def test_a_hung_server_is_logged_failing_once_whichever_way_each_read_ran_out_of_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Hung (SIGSTOP), a read ends either by its request's timeout (httpx' ReadTimeout) or by its deadline
    # passing first: a real Prometheus gave each in turn, and "2 of 2 queries failed" was logged again every
    # few ticks of the hang as a new failure.
    clock, mode = FakeClock(), ["up"]

    def answer(request: httpx.Request) -> httpx.Response:
        if mode[0] == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if mode[0] == "slow":
            time.sleep(0.3)  # past the read's deadline
        return matrix(request)

    prom = source({"temp": answer}, clock, deadline_seconds=0.1)
    caplog.set_level(logging.WARNING, logger="anomaly.promql")
    for state in ("up", "timeout", "slow", "timeout", "slow", "up"):
        mode[0] = state
        if state == "up":
            time.sleep(0.5)  # the slow request before, cut at its deadline, has let its worker go
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
    failed = [r.getMessage() for r in caplog.records if "queries failed" in r.getMessage()]
    assert len(failed) == 1, failed
    assert prom.health().queries["temp"].up
    prom.close()


def test_a_query_refused_for_what_it_asks_not_its_length_leaves_its_catch_up_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A label come into one side of a vector match (`a / on(gpu) b`, a second series of b per GPU) makes
    # Prometheus refuse every read with HTTP 422 ("found duplicate series for the match group"), one step
    # too: nothing about its length. Its catch-up was said too long and halved ("reading the 60s it missed
    # failed (HTTP 422: found duplicate series ...); the next read asks only the last 30s"), and the steps
    # it missed were left unread once the label went.
    clock, duplicate = FakeClock(), [False]
    asked: list[float] = []
    body = {
        "status": "error",
        "errorType": "execution",
        "error": 'found duplicate series for the match group {gpu="0"} on the right hand-side of the'
        " operation",
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if duplicate[0]:
            return httpx.Response(422, json=body)
        asked.append(float(request.url.params["start"]))
        return matrix(request)

    prom = source({"temp": answer}, clock)
    good = _read_well_then_failing(prom, clock, duplicate, 4)
    duplicate[0] = False
    clock.advance(30)
    prom.read(clock.time() - 30, clock.time())
    assert prom.health().queries["temp"].up
    assert asked[-1] == good + 30  # every step it missed
    assert not [r.getMessage() for r in caplog.records if r.name == "anomaly.catchup"]
    prom.close()


def test_an_expression_the_server_cannot_parse_is_said_with_its_field_file_and_text() -> None:
    # `rate(x)` (no range) or `x offset` pass the configuration's own check (brackets balanced) and Prometheus
    # answers each read with HTTP 400 bad_data: the error named the query and Prometheus' parser position
    # ("1:6: parse error: expected type range vector ..."), not the setting to change nor where it is.
    clock = FakeClock()
    body = {
        "status": "error",
        "errorType": "bad_data",
        "error": '1:6: parse error: expected type range vector in call to function "rate", got instant'
        " vector",
    }

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.params["query"].startswith("rate("):
            return httpx.Response(400, json=body)
        return matrix(request)

    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(handle))
    queries = [PromQuery("temp", "temp"), PromQuery("power", "rate(DCGM_FI_DEV_POWER_USAGE)")]
    prom = PromQLSource("http://prom:9090", queries, clock, client=client, config_file="/etc/gpuwarden.yaml")
    prom.read(clock.time() - 30, clock.time())
    error = prom.health().queries["power"].last_error
    assert body["error"] in error
    assert error.endswith(
        " (fix anomaly.queries[1].expr of query power in /etc/gpuwarden.yaml:"
        " 'rate(DCGM_FI_DEV_POWER_USAGE)')"
    ), error
    assert prom.health().queries["temp"].up
    prom.close()


def test_a_server_back_from_a_hang_with_every_catch_up_too_long_reads_again() -> None:
    # Back from its hang, a server to which every query's catch-up is too long answers nothing either: left
    # whole for good as after a hang, each failed at every tick and the source stayed down until a restart.
    clock, hung = FakeClock(), [False]

    def answer(request: httpx.Request) -> httpx.Response:
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        return _too_long("timeout") if hung[0] or (end - start) / step >= 4 else matrix(request)

    prom = source({"temp": answer, "power": answer}, clock)

    def tick() -> bool:
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
        return prom.health().up

    assert tick()
    hung[0] = True
    assert not any(tick() for _ in range(5))
    hung[0] = False
    ups = [tick() for _ in range(catchup.STALL_EXCUSED + 8)]
    assert ups[-3:] == [True] * 3, ups
    prom.close()
