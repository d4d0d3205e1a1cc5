"""Answers of a mock Prometheus, a source reading them and a GPU's labels, for the ``PromQLSource`` tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from anomaly.promql import PromQLSource, PromQuery
from gpuwarden.clock import FakeClock

GPU0 = {"Hostname": "n1", "gpu": "0", "UUID": "GPU-0"}
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


def _read_well_then_failing(prom: PromQLSource, clock: FakeClock, failing: list[bool], reads: int) -> float:
    """One good read now, then ``reads`` reads 30 s apart with ``failing`` set; the time of the good read."""
    prom.read(clock.time() - 30, clock.time())
    good = clock.time()
    failing[0] = True
    for _ in range(reads):
        clock.advance(30)
        prom.read(clock.time() - 30, clock.time())
    return good


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
