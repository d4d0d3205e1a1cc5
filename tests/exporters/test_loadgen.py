"""loadgen: local targets only, bounded by count and time, percentiles that describe what was sent."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from exporters.inference_server import ServedGpu, build_inference_app
from exporters.loadgen import LoadPlan, percentile, run_load
from gpuwarden.errors import InputError


class SteadyGpu:
    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed

    def gpu_speed_factor(self, node: str, index: int) -> float:
        return self.speed


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


def transport(speed: float = 1.0) -> httpx.ASGITransport:
    app = build_inference_app(
        ServedGpu(SteadyGpu(speed), "node-01", 0, 0.001), model="gpuwarden-toy-1", sleep=no_wait
    )
    return httpx.ASGITransport(app=app)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 99, 1.0),
        ([1.0, 2.0], 50, 1.5),
        ([float(i) for i in range(1, 101)], 50, 50.5),
        ([float(i) for i in range(1, 101)], 95, 95.05),
        ([float(i) for i in range(1, 101)], 100, 100.0),
        ([3.0, 7.0, 9.0], 0, 3.0),
    ],
    ids=["single", "two-midpoint", "p50-of-100", "p95-of-100", "max", "min"],
)
def test_percentile_interpolates_between_closest_ranks(
    values: list[float], q: float, expected: float
) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan_not_zero() -> None:
    assert percentile([], 50) != percentile([], 50)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:8000",
        "http://10.0.0.7:8000",
        "http://127.0.0.1.nip.io:80",
        "ftp://127.0.0.1/",
        "127.0.0.1:80",
        "http://[::1",
        "http://127.0.0.1:1\n",  # urlsplit dropped the newline, and httpx raised InvalidURL at run time
    ],
    ids=[
        "public-host",
        "private-ip",
        "lookalike-host",
        "ftp-scheme",
        "no-scheme",
        "ipv6-unclosed",
        "newline",
    ],
)
def test_non_local_targets_are_refused_with_the_url_named(url: str) -> None:
    with pytest.raises(InputError) as err:
        LoadPlan(url=url).validate()
    assert err.value.field == "url"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:9000"])
def test_local_targets_are_accepted(url: str) -> None:
    LoadPlan(url=url).validate()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"requests": 0}, "requests"),
        ({"duration_seconds": 0.0}, "duration"),
        ({"duration_seconds": 1e9}, "duration"),
        ({"rate": -1.0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
    ids=[
        "no-requests",
        "zero-duration",
        "unbounded-duration",
        "negative-rate",
        "infinite-rate",
        "no-concurrency",
        "no-tokens",
    ],
)
def test_unbounded_or_meaningless_plans_are_refused(changes: dict[str, float], field: str) -> None:
    plan = LoadPlan(url="http://127.0.0.1:1", **changes)  # type: ignore[arg-type]
    with pytest.raises(InputError) as err:
        plan.validate()
    assert err.value.field == field


def test_sends_exactly_the_requested_count_and_reports_ordered_percentiles() -> None:
    plan = LoadPlan(url="http://127.0.0.1:1", requests=24, rate=0, concurrency=4)
    report = asyncio.run(run_load(plan, transport=transport()))
    assert report.sent == 24
    assert report.ok == 24
    assert report.statuses == {"200": 24}
    assert 0 < report.latency["p50"] <= report.latency["p95"] <= report.latency["p99"]
    assert report.ttft == {}


def test_streaming_load_reports_time_to_first_token() -> None:
    plan = LoadPlan(
        url="http://127.0.0.1:1", requests=6, rate=0, concurrency=2, stream=True, route="completions"
    )
    report = asyncio.run(run_load(plan, transport=transport()))
    assert report.ok == 6
    assert 0 < report.ttft["p50"] <= report.latency["p99"]


def test_duration_bound_stops_a_paced_run_before_its_count() -> None:
    # At 2 req/s request i is due at i/2 s: within 0.75 s only requests 0 and 1 are due.
    plan = LoadPlan(url="http://127.0.0.1:1", requests=100, rate=2, duration_seconds=0.75)
    report = asyncio.run(run_load(plan, transport=transport()))
    assert report.sent == 2


def test_error_statuses_are_counted_not_hidden() -> None:
    plan = LoadPlan(url="http://127.0.0.1:1", requests=5, rate=0)
    report = asyncio.run(run_load(plan, transport=transport(speed=0.0)))
    assert report.statuses == {"503": 5}
    assert report.ok == 0


def test_connection_failures_are_counted_by_error_kind() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    plan = LoadPlan(url="http://127.0.0.1:1", requests=3, rate=0)
    report = asyncio.run(run_load(plan, transport=httpx.MockTransport(refuse)))
    assert report.statuses == {"ConnectError": 3}


def test_json_report_has_percentiles_and_null_for_missing_data() -> None:
    plan = LoadPlan(url="http://127.0.0.1:1", requests=3, rate=0)
    report = asyncio.run(run_load(plan, transport=transport(speed=0.0)))
    data = json.loads(report.to_json())
    assert set(data["latency"]) == {"p50", "p95", "p99"}
    assert data["sent"] == 3
    report.latency = {"p50": float("nan")}
    assert json.loads(report.to_json())["latency"] == {"p50": None}
    assert "P50" in report.to_text()
