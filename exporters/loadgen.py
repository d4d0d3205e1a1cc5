"""A bounded load generator for the local inference server: a request rate, a cap on count and time.

It only talks to the local machine (127.0.0.1, ::1, localhost): it is a demo and benchmark tool, not a
way to load someone else's service. Both bounds hold: it stops sending at the request count or at
``duration_seconds``, and at that deadline it cancels every request still running and reports it as
unfinished, so a hung server or a long generation cannot stretch a run.

Latency percentiles (and time to first token when streaming) cover successful requests only: a 2xx, and
when streaming no error event in the stream. Every other outcome is counted by kind: HTTP status
(``503``), an error event after the 200 (``stream_error:503``, its ``code``), a stream that ended without
its ``data: [DONE]`` (``stream_incomplete``), a plain 2xx answer that is no completion
(``not_a_completion``) or transport error
(``ReadTimeout``, ``ConnectError``). Latency is measured two ways: from the moment the request was sent,
and, in a paced run, from the moment it was scheduled to be sent. When the concurrency cap or a slow
client holds a request back, only the second counts that wait (the coordinated-omission problem: a closed
loop that waits for the server sends less exactly when the server is slow, and its own latencies look
better than what users arriving at the target rate would see).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import anyio
import httpx

from exporters.load_answers import (
    NO_ROUTE_STATUSES,
    ForeignAnswer,
    StreamEvents,
    answer_failure,
    foreign_answer,
    said,
)
from exporters.loadlimits import MAX_CONCURRENCY, MAX_DURATION_SECONDS, MAX_REQUESTS, MAX_TOKENS
from gpuwarden.clock import Clock, SystemClock
from gpuwarden.errors import InputError
from gpuwarden.urls import url_problem

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


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
    timeout_seconds: float = 30.0  # to connect, send a request or wait for a connection; reads have none

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
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise InputError(f"must be between 1 and {MAX_CONCURRENCY}", field="concurrency")
        if not 1 <= self.max_tokens <= MAX_TOKENS:
            raise InputError(f"must be between 1 and {MAX_TOKENS}", field="max_tokens")

    def endpoint(self) -> str:
        """Full URL of the route under test. A ``url`` that ends in ``/v1`` is taken as the OpenAI SDK's
        ``base_url`` is written (``http://127.0.0.1:8000/v1``, vLLM's documented one): ``/v1`` is not added
        again, where ``.../v1/v1/chat/completions`` failed every request with a 404."""
        path = "/chat/completions" if self.route == "chat" else "/completions"
        base = self.url.rstrip("/")
        return base + path if base.endswith("/v1") else f"{base}/v1{path}"

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
    """What happened: outcomes by kind, rates, and percentiles (seconds) of the successful requests."""

    sent: int = 0  # requests started
    ok: int = 0  # a 2xx completion (streamed: no error event, its [DONE] came)
    failed: int = 0  # another status, an error event in a stream, or a transport error (timeouts included)
    unfinished: int = 0  # still running at the duration deadline, cancelled
    statuses: dict[str, int] = field(default_factory=dict)  # every finished request, by status or error
    errors: dict[str, int] = field(default_factory=dict)  # the failed ones, by status or error
    elapsed_seconds: float = 0.0
    target_rate: float = 0.0  # requests per second asked for; 0 = unpaced
    # Requests per second actually sent, against target_rate; unpaced (target 0), where sending is only
    # bounded by the slots, requests finished per second of the run (throughput).
    achieved_rate: float = 0.0
    latency: dict[str, float] = field(default_factory=dict)  # from the send
    latency_from_schedule: dict[str, float] = field(default_factory=dict)  # from the scheduled send
    ttft: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Set when every finished request got a route-missing answer that is no OpenAI error: the first one.
    foreign: ForeignAnswer | None = field(default=None, metadata={"json": False})

    def exit_code(self, *, allow_errors: bool = False) -> int:
        """1 when no request succeeded, or when any failed unless ``allow_errors``; else 0.

        Requests cut by the duration bound are not failures: the run was asked to end there.
        """
        if self.ok == 0 or (self.failed and not allow_errors):
            return 1
        return 0

    def to_json(self) -> str:
        """One JSON object: a percentile without data (NaN) is null, and so is a summary the run did not
        measure (``ttft`` without ``stream``, ``latency_from_schedule`` without a rate)."""

        def clean(d: dict[str, float]) -> dict[str, float | None] | None:
            if not d:
                return None
            return {k: (None if math.isnan(v) else round(v, 6)) for k, v in d.items()}

        data = asdict(self)
        for f in fields(self):
            if f.metadata.get("json") is False:
                del data[f.name]
        for name in ("latency", "latency_from_schedule", "ttft"):
            data[name] = clean(getattr(self, name))
        return json.dumps(data, sort_keys=True)

    def to_text(self) -> str:
        """Human-readable summary, milliseconds."""

        def ms(d: dict[str, float]) -> str:
            if not d or all(math.isnan(v) for v in d.values()):
                return "no successful request"
            return "  ".join(f"{k.upper()} {v * 1000:.1f} ms" for k, v in d.items())

        errors = f" ({', '.join(f'{k} {n}' for k, n in sorted(self.errors.items()))})" if self.errors else ""
        target = f" (target {self.target_rate:g})" if self.target_rate else " finished (unpaced)"
        lines = [
            f"requests {self.sent}  ok {self.ok}  failed {self.failed}{errors}  unfinished {self.unfinished}",
            f"elapsed {self.elapsed_seconds:.2f} s  rate {self.achieved_rate:.1f} req/s{target}",
            f"latency (ok, from send)      {ms(self.latency)}",
        ]
        if self.latency_from_schedule:
            lines.append(f"latency (ok, from schedule)  {ms(self.latency_from_schedule)}")
        if self.ttft:
            lines.append(f"ttft (ok)                    {ms(self.ttft)}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)


def _summary(values: list[float]) -> dict[str, float]:
    values.sort()
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "p99": percentile(values, 99)}


@dataclass(slots=True)
class _Tally:
    """Outcomes collected while the run goes on."""

    ok: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    from_schedule: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    send_times: list[float] = field(default_factory=list)
    slot_waits: int = 0
    said: dict[str, str] = field(default_factory=dict)  # what the server said with the first of each kind
    foreign: ForeignAnswer | None = None  # the first answer from something that is no inference server

    def failed(self, kind: str, said: str | None = None) -> None:
        self.statuses[kind] += 1
        self.errors[kind] += 1
        if said and kind not in self.said:
            self.said[kind] = said


class _LoadRun:
    """One run of a plan: a sender that paces requests and the requests it started."""

    def __init__(
        self,
        plan: LoadPlan,
        client: httpx.AsyncClient,
        now: Callable[[], float],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.plan = plan
        self.client = client
        self.now = now
        self.progress = progress
        self.tally = _Tally()
        self.gate = asyncio.Semaphore(plan.concurrency)
        self.running: set[asyncio.Task[None]] = set()
        self.start = now()

    async def one(self, i: int, scheduled: float) -> None:
        """Send request ``i`` (due at ``scheduled``) and record how it ended."""
        plan, now, tally = self.plan, self.now, self.tally
        try:
            t0 = now()
            first: float | None = None
            events = StreamEvents() if plan.stream else None
            answer: list[bytes] = []
            async with self.client.stream("POST", plan.endpoint(), json=plan.body(i)) as response:
                if not response.is_success:
                    events = None  # an error answer is read whole, for what it says
                async for chunk in response.aiter_bytes():
                    if first is None and chunk:
                        first = now() - t0
                    if events is not None:
                        events.feed(chunk)
                    else:
                        answer.append(chunk)
            done = now()
            if not response.is_success:
                body = b"".join(answer)
                tally.failed(str(response.status_code), said(body))
                if tally.foreign is None:
                    tally.foreign = foreign_answer(response.status_code, response.headers.get("server"), body)
                return
            failure = events.failure() if events is not None else answer_failure(b"".join(answer))
            if failure is not None:  # a 200 whose stream ended in an error or early, or not a completion
                tally.failed(failure, events.said if events is not None else None)
                return
            tally.ok += 1
            tally.statuses[str(response.status_code)] += 1
            tally.latencies.append(done - t0)
            tally.from_schedule.append(done - scheduled)
            if plan.stream and first is not None:
                tally.ttfts.append(first)
        except (httpx.HTTPError, httpx.StreamError, OSError) as exc:  # ReadTimeout, ConnectError, ...
            tally.failed(type(exc).__name__)
        finally:
            self.gate.release()
            if self.progress is not None:  # finished so far; one cut by the duration bound adds none
                self.progress(tally.ok + sum(tally.errors.values()))

    async def send_all(self) -> None:
        """Start every request on its schedule, then wait for the last to end."""
        plan, now = self.plan, self.now
        for i in range(plan.requests):
            scheduled = self.start + i / plan.rate if plan.rate > 0 else now()
            wait = scheduled - now()
            if wait > 0:
                await asyncio.sleep(wait)
            if self.gate.locked():
                self.tally.slot_waits += 1
            await self.gate.acquire()
            self.tally.send_times.append(now())
            task = asyncio.create_task(self.one(i, scheduled))
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        while self.running:
            await asyncio.wait(set(self.running))

    async def cancel_unfinished(self) -> int:
        """Cancel what still runs (the duration bound passed); how many were cancelled."""
        # A task that ended in this loop turn is still in ``running`` (its discard callback runs next
        # turn): it was counted when it ended, and is no unfinished request.
        cut = [task for task in self.running if not task.done()]
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        return len(cut)


async def run_load(
    plan: LoadPlan,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    progress: Callable[[int], None] | None = None,
    stopped_by: Callable[[], str] = lambda: "Ctrl-C",
) -> LoadReport:
    """Send the plan's requests (open loop at ``rate``, at most ``concurrency`` at once) and report.
    ``progress`` is told how many requests have finished each time one does.

    Pacing waits with ``asyncio.sleep`` and the duration bound is an ``asyncio.timeout`` (the loop must
    keep serving responses meanwhile); durations are read from ``clock.monotonic()``. ``stop`` set (Ctrl-C,
    SIGTERM) ends the run as the duration bound does: what finished is reported, what still runs is
    unfinished; ``stopped_by`` names what set it in the report's warning.
    """
    plan.validate()
    now = (clock or SystemClock()).monotonic
    limits = httpx.Limits(max_connections=plan.concurrency, max_keepalive_connections=plan.concurrency)
    # Reads wait as long as the run may: a plain answer sends nothing until its last token (1,500 tokens
    # on a throttled GPU take 37 s), and the duration bound cuts what is still running at its deadline.
    timeout = httpx.Timeout(plan.timeout_seconds, read=None)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport) as client:
        await warm_client()
        run = _LoadRun(plan, client, now, progress)
        try:
            async with asyncio.timeout(plan.duration_seconds):
                stopped = await _unless_stopped(run.send_all(), stop)
        except TimeoutError:
            stopped = False  # the duration bound: what still runs is cancelled and reported as unfinished
        unfinished = await run.cancel_unfinished()
    elapsed = now() - run.start
    by = stopped_by() if stopped else None
    return _report(plan, run.tally, unfinished=unfinished, elapsed=elapsed, start=run.start, stopped=by)


async def warm_client() -> None:
    """Do before the first timed request what httpx's client does lazily at its first connection: import
    anyio's asyncio backend (about 30 modules). It cost the first request 0.2 to 0.7 s, all of it in the first
    latency measured (a 10 ms answer read 430 ms), and moved the schedule of the requests after it."""
    await anyio.sleep(0)


async def _unless_stopped(sending: Coroutine[Any, Any, None], stop: asyncio.Event | None) -> bool:
    """Await ``sending``, cancelling it if ``stop`` is set first; whether it was stopped."""
    sender = asyncio.ensure_future(sending)
    if stop is None:
        await sender
        return False
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sender, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # the duration bound cancels this await: cancel both, as it would have cancelled sending
        waiter.cancel()
        if not sender.done():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    if sender.cancelled():
        return True
    sender.result()
    return False


def _report(
    plan: LoadPlan,
    tally: _Tally,
    *,
    unfinished: int,
    elapsed: float,
    start: float,
    stopped: str | None = None,
) -> LoadReport:
    sent = len(tally.send_times)
    finished = tally.ok + sum(tally.errors.values())
    # Unpaced, every request waiting for a slot goes at once: a send rate says nothing (3 requests in 0.1
    # ms read as 6,000 req/s), what finished per second does.
    achieved = (
        _send_rate(tally.send_times, start, elapsed) if plan.rate > 0 else _per_second(finished, elapsed)
    )
    warnings: list[str] = []
    if stopped:
        warnings.append(
            f"interrupted after {elapsed:.1f} s ({stopped}):"
            f" {unfinished} requests still running were cancelled"
        )
    if plan.rate > 0 and sent > 1 and achieved < 0.95 * plan.rate:
        why = (
            f"{tally.slot_waits} requests waited for one of the {plan.concurrency} concurrency slots"
            if tally.slot_waits
            else "the client could not send faster"
        )
        warnings.append(
            f"sent {achieved:.1f} req/s, below the target {plan.rate:g} req/s: {why};"
            " latency from schedule includes that wait, latency from send does not"
        )
    for kind, text in sorted(tally.said.items()):
        warnings.append(f"{kind} ({tally.errors[kind]} requests): the server said: {text}")
    if unfinished and not stopped:
        warnings.append(
            f"{unfinished} requests were still running at the {plan.duration_seconds:g} s duration bound"
            " and were cancelled"
        )
    return LoadReport(
        sent=sent,
        ok=tally.ok,
        failed=sum(tally.errors.values()),
        unfinished=unfinished,
        statuses=dict(tally.statuses),
        errors=dict(tally.errors),
        elapsed_seconds=elapsed,
        target_rate=plan.rate,
        achieved_rate=achieved,
        latency=_summary(tally.latencies),
        latency_from_schedule=_summary(tally.from_schedule) if plan.rate > 0 else {},
        ttft=_summary(tally.ttfts) if plan.stream else {},
        warnings=warnings,
        foreign=tally.foreign if not tally.ok and set(tally.statuses) <= _NO_ROUTE_KINDS else None,
    )


_NO_ROUTE_KINDS = frozenset(map(str, NO_ROUTE_STATUSES))


def _send_rate(send_times: list[float], start: float, elapsed: float) -> float:
    """Requests per second while sending: n requests sent at rate r span (n - 1) / r seconds."""
    if len(send_times) > 1 and send_times[-1] > start:
        return (len(send_times) - 1) / (send_times[-1] - start)
    return _per_second(len(send_times), elapsed)


def _per_second(count: int, elapsed: float) -> float:
    return count / elapsed if elapsed > 0 else 0.0
