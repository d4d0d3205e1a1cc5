"""The step grid of ``PromQLSource.query_range``: exact at the edges, no gap and no overlap between ticks."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from anomaly.promql import PromQLSource, PromQuery
from gpuwarden.clock import FakeClock

EPOCH = 1_767_225_600.0  # FakeClock's start


def recording_source(requests: list[dict[str, str]]) -> PromQLSource:
    """A source whose HTTP client answers every query_range with an empty matrix and keeps the parameters."""

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append({k: v[0] for k, v in parse_qs(urlparse(str(request.url)).query).items()})
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    client = httpx.Client(base_url="http://prometheus.test", transport=httpx.MockTransport(answer))
    return PromQLSource("http://prometheus.test", [], FakeClock(), client=client)


@pytest.mark.parametrize(
    ("start", "end", "step", "point"),
    [
        (1.0, 1.2, 0.2, "1.2"),  # floor(1.2 / 0.2) == 5 in floating point
        (EPOCH + 0.4, EPOCH + 0.6, 0.2, "1767225600.6"),
        (EPOCH + 0.8, EPOCH + 1.0, 0.2, "1767225601"),
        (EPOCH, EPOCH + 0.1, 0.1, "1767225600.1"),
        (EPOCH + 0.5, EPOCH + 0.6, 0.1, "1767225600.6"),
        (EPOCH, EPOCH + 30, 30.0, "1767225630"),
        (4.2, 4.35, 0.15, "4.35"),  # 4.35 * 1000 is 4349.999...: rounded, not floored
    ],
    ids=["0.2-small", "0.2-epoch-a", "0.2-epoch-b", "0.1-epoch-a", "0.1-epoch-b", "30s", "0.15"],
)
def test_a_window_exactly_one_step_wide_asks_for_its_one_grid_point(start, end, step, point):
    requests: list[dict[str, str]] = []
    source = recording_source(requests)
    frame = source.query_range(PromQuery("q", "up", step_seconds=step), start, end)
    assert [(float(r["start"]), float(r["end"])) for r in requests] == [(float(point), float(point))]
    assert frame.timestamps.tolist() == [float(point)]


@pytest.mark.parametrize("step", [0.1, 0.2, 0.3, 0.7, 1.1, 15.0], ids=str)
def test_ticks_one_step_apart_each_ask_one_point_with_no_gap_or_overlap(step):
    requests: list[dict[str, str]] = []
    source = recording_source(requests)
    query = PromQuery("q", "up", step_seconds=step)
    clock = FakeClock()
    points: list[float] = []
    for _ in range(500):
        start = clock.time()
        clock.advance(step)  # the fake clock adds in floating point, as a real tick's window does
        points += source.query_range(query, start, clock.time()).timestamps.tolist()
    step_ms = round(step * 1000)
    assert len(requests) == 500
    assert [round(p * 1000) for p in points] == [
        (round(EPOCH * 1000) // step_ms + k) * step_ms for k in range(1, 501)
    ]


def test_the_step_parameter_is_plain_decimal_seconds_even_when_long():
    requests: list[dict[str, str]] = []
    source = recording_source(requests)
    source.query_range(PromQuery("q", "up", step_seconds=1_234_567.0), EPOCH, EPOCH + 3 * 1_234_567)
    source.query_range(PromQuery("q", "up", step_seconds=0.25), EPOCH, EPOCH + 1)
    assert [r["step"] for r in requests] == ["1234567", "0.25"]


def test_a_resumed_query_is_read_from_where_the_process_before_read_it() -> None:
    """``resume`` after a warm-up whose reads of two queries failed (HTTP 503): the next read asks each
    from the snapshot's read of it (its catch-up), else from ``default``; a query read well from the tick's
    window, as before."""
    requests: list[dict[str, str]] = []
    failing = {"temp", "power"}

    def answer(request: httpx.Request) -> httpx.Response:
        params = {k: v[0] for k, v in parse_qs(urlparse(str(request.url)).query).items()}
        requests.append(params)
        if params["query"] in failing:
            return httpx.Response(503, text="overloaded")
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}})

    client = httpx.Client(base_url="http://prometheus.test", transport=httpx.MockTransport(answer))
    queries = [PromQuery(name, name, 30.0) for name in ("temp", "power", "util")]
    source = PromQLSource("http://prometheus.test", queries, FakeClock(), client=client)
    source.read(EPOCH - 3600, EPOCH)  # the warm-up
    source.resume({"temp": EPOCH - 600, "util": EPOCH - 600}, EPOCH - 900)
    failing.clear()
    requests.clear()
    source.read(EPOCH, EPOCH + 30)
    starts = {r["query"]: float(r["start"]) for r in requests}
    assert starts == {"temp": EPOCH - 570, "power": EPOCH - 870, "util": EPOCH + 30}
    source.close()
