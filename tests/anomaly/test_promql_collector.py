"""A PromQL answer decoded and made a frame with the cyclic garbage collector paused: a label set per series
(100,000 of them) set off full collections that took a third of the read (benchmarks/bench_promql_read.py)."""

from __future__ import annotations

import codecs
import gc
import json

import httpx
import pytest

import anomaly.promhttp
from anomaly.promql import PromQLSource, PromQuery
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError

STEP = 30.0


def _answer(end: float) -> bytes:
    result = [{"metric": {"gpu": str(i)}, "values": [[end, f"{60 + i}"]]} for i in range(3)]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


def _source(content: bytes, status: int = 200) -> tuple[PromQLSource, PromQuery, float]:
    clock = FakeClock()
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=content))
    client = httpx.Client(base_url="http://prom:9090", transport=transport)
    query = PromQuery("temp", "DCGM_FI_DEV_GPU_TEMP", STEP)
    return PromQLSource("http://prom:9090", [query], clock, client=client), query, clock.time() // STEP * STEP


def test_the_answer_is_decoded_and_framed_with_the_collector_paused(monkeypatch):
    seen: dict[str, list[bool]] = {"decode": [], "frame": []}
    real_loads, real_frame = json.loads, anomaly.promhttp._matrix_to_frame

    def loads(*args, **kwargs):
        seen["decode"].append(gc.isenabled())
        return real_loads(*args, **kwargs)

    def frame(*args, **kwargs):
        seen["frame"].append(gc.isenabled())
        return real_frame(*args, **kwargs)

    monkeypatch.setattr(json, "loads", loads)
    monkeypatch.setattr(anomaly.promhttp, "_matrix_to_frame", frame)
    clock = FakeClock()
    source, query, end = _source(_answer(clock.time() // STEP * STEP))
    try:
        got = source.query_range(query, end - STEP, end)
    finally:
        source.close()
    assert got.values[:, 0].tolist() == [60.0, 61.0, 62.0]
    assert seen == {"decode": [False], "frame": [False]}
    assert gc.isenabled()


def test_an_answer_with_a_byte_order_mark_is_still_read():
    clock = FakeClock()
    source, query, end = _source(codecs.BOM_UTF8 + _answer(clock.time() // STEP * STEP))
    try:
        got = source.query_range(query, end - STEP, end)
    finally:
        source.close()
    assert got.labels == [{"gpu": "0"}, {"gpu": "1"}, {"gpu": "2"}]


@pytest.mark.parametrize(
    ("content", "status"),
    [(b"<html>504 Gateway Time-out</html>", 504), (b'{"status": "success", "data": {"resultType"', 200)],
    ids=["gateway-page", "cut-short"],
)
def test_an_answer_that_is_no_json_fails_the_read_and_leaves_the_collector_on(content, status):
    source, query, end = _source(content, status)
    try:
        with pytest.raises(SourceError, match="not JSON"):
            source.query_range(query, end - STEP, end)
    finally:
        source.close()
    assert gc.isenabled()
