"""``PromQLSource.read`` against its deadline: slow queries fail at it, go first next time, hold no worker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as futures_wait
from typing import Any

import httpx
import pytest

from anomaly import promql
from anomaly.promql import PromQLSource, PromQuery
from gpuwarden.clock import FakeClock
from tests.anomaly.fakes import FakePrometheus
from tests.anomaly.promql_answers import Answer, _read_well_then_failing, _too_long, matrix, source
from tests.http_stub import LocalServer, QuietHandler


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


def test_an_answer_whose_body_comes_slowly_is_cut_at_the_deadline_and_holds_no_worker() -> None:
    # The timeout bounds each wait for a byte, not the request: a body sent a little at a time (a big answer
    # over a slow link or proxy) ran 12 s past a 2 s deadline on the only worker, and the reads after it
    # sent no request while it ran on.
    served: list[str] = []

    class Trickle(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for char in body:  # 72 bytes, 0.1 s apart: 7 s
                    self.wfile.write(char.encode())
                    self.wfile.flush()
                    time.sleep(0.1)
                served.append("whole")
            except OSError:
                served.append("cut")

    server = LocalServer(Trickle)
    clock = FakeClock()
    prom = PromQLSource(
        server.url, [PromQuery("q", "up")], clock, timeout_seconds=10, deadline_seconds=1.0, workers=1
    )
    try:
        for _ in range(3):
            began = time.monotonic()
            end = clock.time()
            assert prom.read(end - 30, end) == []
            assert time.monotonic() - began < 3.0  # returned at its deadline, not after the whole body
            clock.advance(30)
        deadline = time.monotonic() + 5
        while len(served) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served == ["cut"] * 3  # each read sent its request: no worker was held by the one before
        assert "deadline" in prom.health().queries["q"].last_error
    finally:
        prom.close()
        server.close()


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
