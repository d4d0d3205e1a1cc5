"""A bounded load generator for the local inference server: a request rate, a cap on count and time.

It only talks to the local machine (127.0.0.1, ::1, localhost): it is a demo and benchmark tool, not a
way to load someone else's service. It reports latency percentiles (and time to first token when
streaming), as text or JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import httpx

from gpuwarden.clock import Clock, SystemClock
from gpuwarden.errors import InputError
from gpuwarden.urls import url_problem

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_REQUESTS = 1_000_000
MAX_DURATION_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to send: where, how fast, and when to stop (whichever bound is hit first)."""

    url: str
    requests: int = 100
    duration_seconds: float = 30.0
    rate: float = 10.0  # requests per second; 0 = as fast as the concurrency allows
    concurrency: int = 8
    route: Literal["chat", "completions"] = "chat"
    model: str = "gpuwarden-toy-1"
    max_tokens: int = 16
    stream: bool = False
    timeout_seconds: float = 30.0

    def validate(self) -> None:
        """Raise ``InputError`` naming the field when the plan is unsafe or meaningless."""
        problem = url_problem(self.url)
        if problem is not None:  # urlsplit raised ValueError for http://[::1 and dropped a newline
            raise InputError(f"not a valid URL ({problem})", field="url")
        host = httpx.URL(self.url).host
        if host not in LOCAL_HOSTS:
            raise InputError(
                f"loadgen only targets this machine (127.0.0.1, ::1, localhost), not {host!r}", field="url"
            )
        if not 1 <= self.requests <= MAX_REQUESTS:
            raise InputError(f"must be between 1 and {MAX_REQUESTS}", field="requests")
        if not 0 < self.duration_seconds <= MAX_DURATION_SECONDS:
            raise InputError(f"must be in (0, {MAX_DURATION_SECONDS:g}] seconds", field="duration")
        if self.rate < 0 or not math.isfinite(self.rate):
            raise InputError("must be a finite rate >= 0 (0 = unpaced)", field="rate")
        if not 1 <= self.concurrency <= 1024:
            raise InputError("must be between 1 and 1024", field="concurrency")
        if not 1 <= self.max_tokens <= 4096:
            raise InputError("must be between 1 and 4096", field="max_tokens")

    def endpoint(self) -> str:
        """Full URL of the route under test."""
        path = "/v1/chat/completions" if self.route == "chat" else "/v1/completions"
        return self.url.rstrip("/") + path

    def body(self, i: int) -> dict[str, object]:
        """The JSON body of request ``i`` (prompts vary so the toy model's output varies)."""
        prompt = f"request {i}: summarise the health of gpu {i % 8} on node {i % 4}"
        base: dict[str, object] = {"model": self.model, "max_tokens": self.max_tokens, "stream": self.stream}
        if self.route == "chat":
            return {**base, "messages": [{"role": "user", "content": prompt}]}
        return {**base, "prompt": prompt}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks; NaN when empty."""
    if not sorted_values:
        return math.nan
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass(slots=True)
class LoadReport:
    """What happened: counts by status, latency and TTFT percentiles in seconds."""

    sent: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed_seconds: float = 0.0
    achieved_rate: float = 0.0
    latency: dict[str, float] = field(default_factory=dict)
    ttft: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        """One JSON object (NaN, for no data, becomes null)."""

        def clean(d: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if math.isnan(v) else round(v, 6)) for k, v in d.items()}

        data = asdict(self)
        data["latency"] = clean(self.latency)
        data["ttft"] = clean(self.ttft)
        return json.dumps(data, sort_keys=True)

    def to_text(self) -> str:
        """Human-readable summary, milliseconds."""

        def ms(d: dict[str, float]) -> str:
            return "  ".join(f"{k.upper()} {v * 1000:.1f} ms" for k, v in d.items())

        lines = [
            f"requests {self.sent}  ok {self.ok}  statuses {dict(sorted(self.statuses.items()))}",
            f"elapsed {self.elapsed_seconds:.2f} s  rate {self.achieved_rate:.1f} req/s",
            f"latency  {ms(self.latency)}",
        ]
        if self.ttft:
            lines.append(f"ttft     {ms(self.ttft)}")
        return "\n".join(lines)


def _summary(values: list[float]) -> dict[str, float]:
    values.sort()
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99)}


async def run_load(
    plan: LoadPlan, *, transport: httpx.AsyncBaseTransport | None = None, clock: Clock | None = None
) -> LoadReport:
    """Send the plan's requests (open loop at ``rate``, at most ``concurrency`` at once) and report.

    Pacing waits with ``asyncio.sleep`` (the loop must keep serving responses meanwhile); durations are
    read from ``clock.monotonic()``.
    """
    plan.validate()
    now = (clock or SystemClock()).monotonic
    latencies: list[float] = []
    ttfts: list[float] = []
    statuses: Counter[str] = Counter()
    gate = asyncio.Semaphore(plan.concurrency)
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    start = now()
    deadline = start + plan.duration_seconds

    async def one(client: httpx.AsyncClient, i: int) -> None:
        try:
            t0 = now()
            first: float | None = None
            async with client.stream("POST", plan.endpoint(), json=plan.body(i)) as response:
                async for chunk in response.aiter_bytes():
                    if first is None and chunk:
                        first = now() - t0
            latencies.append(now() - t0)
            statuses[str(response.status_code)] += 1
            if plan.stream and first is not None and response.status_code == 200:
                ttfts.append(first)
        except httpx.HTTPError as exc:
            statuses[type(exc).__name__] += 1
        finally:
            gate.release()

    async with (
        httpx.AsyncClient(timeout=plan.timeout_seconds, limits=limits, transport=transport) as client,
        asyncio.TaskGroup() as tasks,
    ):
        for i in range(plan.requests):
            if plan.rate > 0:
                wait = start + i / plan.rate - now()
                if wait > 0:
                    await asyncio.sleep(wait)
            await gate.acquire()
            if now() >= deadline:
                gate.release()
                break
            tasks.create_task(one(client, i))
    elapsed = now() - start
    sent = sum(statuses.values())
    return LoadReport(
        sent=sent,
        ok=statuses.get("200", 0),
        statuses=dict(statuses),
        elapsed_seconds=elapsed,
        achieved_rate=sent / elapsed if elapsed > 0 else 0.0,
        latency=_summary(latencies),
        ttft=_summary(ttfts) if plan.stream else {},
    )
