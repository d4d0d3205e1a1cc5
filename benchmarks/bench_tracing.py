"""Cost of request tracing: added latency per request, and inference-server throughput with and without it.

Prints one JSON line. Everything runs in-process through ASGI calls (no network noise; a real uvicorn
server adds HTTP parsing and socket writes per request and per chunk, so its relative loss is smaller):

- ``added_latency_us_p50``: P50 latency of a trivial handler under ``TracingMiddleware`` (span, span
  metrics, batch processor to a null exporter) minus the same handler bare. Target <= 50 us.
- ``unannotated_stream_added_us_p50``: the same for a vLLM-like handler that reports nothing to its span
  and streams 16 OpenAI chunks plus a usage chunk: the middleware's fallback parses every SSE event.
- ``throughput_loss_pct``: requests/s of the toy inference server (16 streamed tokens at its configured
  pace, 5 ms per token, 32 concurrent requests) traced vs untraced. Target <= 5 %.
- ``fast_tokens_0_5ms_loss_pct`` and ``cpu_bound_throughput_loss_pct``: the same at 0.5 ms per token and
  at zero token time, where the server is pure Python CPU work (parse, route, generate, encode) and the
  tracing cost per request (``cpu_bound_added_us_per_request``: span, attributes, span metrics, 16 token
  marks, 20 wrapped sends) becomes a visible share.

Each throughput figure is the median of ``repeats`` runs of a fresh server after a warm-up pass, traced and
untraced alternating in ABBA order so drift from other processes hits both alike; every run is printed.
``cpu_time_us_per_request`` / ``cpu_time_loss_pct`` give the same comparison from process CPU time (all
threads), which also shows the cost when the server is not saturated. On a shared machine both views move
by 10-20 % between runs: read the printed runs, and compare figures from a quiet machine.

Usage: ``.venv/bin/python benchmarks/bench_tracing.py [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below (OpenTelemetry, starlette, the exporters):
    ``--help`` and an unknown option answer at once rather than after a second of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats (about a minute)")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from opentelemetry.sdk.trace import ReadableSpan  # noqa: E402 - imported after the command line is read
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, Response, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from exporters.inference_server import create_inference_server  # noqa: E402
from exporters.spanmetrics import SpanMetrics  # noqa: E402
from exporters.tracing import TracingMiddleware, build_tracer_provider  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import TracingConfig  # noqa: E402
from gpuwarden.sim import build_fleet  # noqa: E402


class NullExporter(SpanExporter):
    """Accepts spans and drops them: the export cost is the collector's, not the request's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def trivial(request: Request) -> Response:
    return PlainTextResponse("ok")


def http_scope(path: str, method: str = "GET", body_len: int = 0) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(body_len).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, scope: dict[str, Any], body: bytes = b"") -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


_CHUNK = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama-3-8b",'
    b'"choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'
)
_USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":16,"total_tokens":23}}\n\n'


async def vllm_like(request: Request) -> Response:
    """Streams 16 content chunks, a usage chunk and [DONE], reporting nothing to its span."""

    async def events() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield _CHUNK
        yield _USAGE
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def latencies(app: Any, n: int, path: str = "/ping") -> list[int]:
    body = b'{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}],"stream":true}'
    scope = http_scope(path, "POST", len(body)) if path != "/ping" else http_scope(path)
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await call(app, scope, body if path != "/ping" else b"")
        out.append(time.perf_counter_ns() - t0)
    return out


def added_latency(n: int, path: str = "/ping") -> dict[str, float]:
    provider = build_tracer_provider(
        TracingConfig(span_exporter="none"), span_exporter=NullExporter(), processors=[SpanMetrics()]
    )
    routes = [Route("/ping", trivial), Route("/v1/chat/completions", vllm_like, methods=["POST"])]
    bare = Starlette(routes=routes)
    traced = Starlette(routes=routes, middleware=[Middleware(TracingMiddleware, tracer_provider=provider)])

    async def run() -> tuple[list[int], list[int]]:
        await latencies(bare, 500, path)
        await latencies(traced, 500, path)  # warm both
        b: list[int] = []
        t: list[int] = []
        for _ in range(10):  # interleave blocks so drift hits both alike
            b += await latencies(bare, n // 10, path)
            t += await latencies(traced, n // 10, path)
        return b, t

    b, t = asyncio.run(run())
    provider.shutdown()
    bare_p50 = statistics.median(b) / 1000
    traced_p50 = statistics.median(t) / 1000
    return {
        "bare_p50_us": bare_p50,
        "traced_p50_us": traced_p50,
        "added_latency_us_p50": traced_p50 - bare_p50,
    }


def throughput(
    enabled: bool, token_seconds: float, requests: int, concurrency: int = 32
) -> tuple[float, float]:
    """Requests/s and process CPU us per request of one fresh server (traced or not) after a warm-up pass.

    CPU time counts every thread (the batch exporter's too), so it shows what tracing costs even when the
    server is not saturated and requests/s cannot move.
    """
    fleet = build_fleet(1, 1, seed=0, clock=FakeClock())
    cfg = TracingConfig(enabled=enabled, token_seconds=max(token_seconds, 1e-9), span_exporter="none")

    async def pace(seconds: float) -> None:
        await asyncio.sleep(seconds if token_seconds > 0 else 0)

    server = create_inference_server(
        cfg, fleet, node="node-01", gpu=0, sleep=pace, span_exporter=NullExporter() if enabled else None
    )
    body = json.dumps(
        {
            "model": cfg.model_name,
            "messages": [{"role": "user", "content": "how hot is gpu 0"}],
            "max_tokens": 16,
            "stream": True,
        }
    ).encode()
    scope = http_scope("/v1/chat/completions", "POST", len(body))

    async def run() -> tuple[float, float]:
        queue = iter(range(min(requests, 300)))

        async def worker() -> None:
            for _ in queue:
                assert await call(server.app, scope, body) == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up pass
        queue = iter(range(requests))
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return requests / wall, cpu / requests * 1e6

    rate = asyncio.run(run())
    server.shutdown()
    return rate


def loss(token_seconds: float, requests: int, repeats: int) -> dict[str, Any]:
    """Median requests/s traced and untraced over ``repeats`` pairs run in ABBA order (drift hits both)."""
    off: list[float] = []
    on: list[float] = []
    cpu_off: list[float] = []
    cpu_on: list[float] = []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for enabled in order:
            rps, cpu_us = throughput(enabled, token_seconds, requests)
            (on if enabled else off).append(rps)
            (cpu_on if enabled else cpu_off).append(cpu_us)
    med_off, med_on = statistics.median(off), statistics.median(on)
    med_cpu_off, med_cpu_on = statistics.median(cpu_off), statistics.median(cpu_on)
    return {
        "cpu_us_per_request_untraced": med_cpu_off,
        "cpu_us_per_request_traced": med_cpu_on,
        # Throughput a saturated core loses to tracing, from CPU time: 1 - untraced cost / traced cost.
        "cpu_loss_pct": 100 * (1 - med_cpu_off / med_cpu_on),
        "untraced_rps": med_off,
        "traced_rps": med_on,
        "loss_pct": 100 * (1 - med_on / med_off),
        # CPU time tracing adds per request when the loop is saturated (concurrency 32, one core).
        "added_us_per_request": 1e6 / med_on - 1e6 / med_off,
        "untraced_runs": [round(x, 1) for x in off],
        "traced_runs": [round(x, 1) for x in on],
    }


def main(quick: bool) -> None:
    repeats = 3 if quick else 7
    lat = added_latency(4000 if quick else 20000)
    stream = added_latency(2000 if quick else 10000, "/v1/chat/completions")
    default_pace = TracingConfig().token_seconds
    paced = loss(default_pace, 400 if quick else 1000, repeats)
    fast = loss(0.0005, 1000 if quick else 3000, repeats)
    cpu = loss(0.0, 1000 if quick else 3000, repeats)
    result = {
        "benchmark": "tracing",
        "added_latency_us_p50": round(lat["added_latency_us_p50"], 1),
        "bare_p50_us": round(lat["bare_p50_us"], 1),
        "traced_p50_us": round(lat["traced_p50_us"], 1),
        "latency_target_us": 50,
        "unannotated_stream_added_us_p50": round(stream["added_latency_us_p50"], 1),
        "token_seconds": default_pace,
        "throughput_untraced_rps": round(paced["untraced_rps"], 1),
        "throughput_traced_rps": round(paced["traced_rps"], 1),
        "throughput_loss_pct": round(paced["loss_pct"], 2),
        "throughput_target_loss_pct": 5,
        "fast_tokens_0_5ms_untraced_rps": round(fast["untraced_rps"], 1),
        "fast_tokens_0_5ms_traced_rps": round(fast["traced_rps"], 1),
        "fast_tokens_0_5ms_loss_pct": round(fast["loss_pct"], 2),
        "cpu_bound_untraced_rps": round(cpu["untraced_rps"], 1),
        "cpu_bound_traced_rps": round(cpu["traced_rps"], 1),
        "cpu_bound_throughput_loss_pct": round(cpu["loss_pct"], 2),
        "cpu_bound_added_us_per_request": round(cpu["added_us_per_request"], 1),
        "cpu_time_us_per_request": {
            name: [round(r["cpu_us_per_request_untraced"], 1), round(r["cpu_us_per_request_traced"], 1)]
            for name, r in (("paced", paced), ("fast", fast), ("cpu", cpu))
        },
        "cpu_time_loss_pct": {
            name: round(r["cpu_loss_pct"], 2) for name, r in (("paced", paced), ("fast", fast), ("cpu", cpu))
        },
        "runs": {
            "paced": [paced["untraced_runs"], paced["traced_runs"]],
            "fast": [fast["untraced_runs"], fast["traced_runs"]],
            "cpu": [cpu["untraced_runs"], cpu["traced_runs"]],
        },
        "repeats": repeats,
        "concurrency": 32,
        "tokens_per_request": 16,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS.quick)
