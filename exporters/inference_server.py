"""A small OpenAI-compatible inference server whose speed follows the health of its (simulated) GPU.

It serves a deterministic toy text generator (no model weights) on ``/v1/chat/completions`` and
``/v1/completions``, streamed (SSE) or not. Each output token takes ``token_seconds / speed_factor`` of
the GPU it runs on: a throttled GPU makes tokens slower, a lost one (factor 0) makes the server answer 503.
Requests are traced by ``TracingMiddleware`` and become metrics on its own ``/metrics``. Every error,
404 and 405 included, answers in OpenAI's JSON shape. A client that leaves stops the generation: a
stream is cancelled by the server, a plain answer checks between tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from exporters.openai_schema import (
    MAX_BODY_BYTES,
    BodyT,
    ChatRequest,
    CompletionRequest,
    OpenAIBody,
    openai_error,
    parse_body,
)
from exporters.server import loopback_only
from exporters.spanmetrics import SpanMetrics
from exporters.tracing import (
    ERROR_TYPE,
    GenerationSpan,
    TracingMiddleware,
    build_tracer_provider,
    current_generation,
    inference_endpoint,
)
from gpuwarden.api_errors import slash_redirect
from gpuwarden.clock import Clock, SystemClock
from gpuwarden.config import TracingConfig
from gpuwarden.sim import Fleet, fault_routes

__all__ = ["MAX_BODY_BYTES", "InferenceServer", "ServedGpu", "build_inference_app", "toy_tokens"]

logger = logging.getLogger(__name__)

PROVIDER_NAME = "gpuwarden"  # gen_ai.provider.name of the toy model (no well-known value applies)
# The generation routes, whose request and error counters /metrics shows from 0 before their first request.
INFERENCE_ROUTES = ("/v1/chat/completions", "/v1/completions")
PREFILL_STEP_SECONDS = 0.1  # how soon a plain answer's prefill notices that its client has gone
_WORDS = (  # one string keeps the 44 words on three lines
    "the gpu runs warm while the cluster hums and every rank waits on the slowest link tokens flow from"
    " memory through tensor cores into a stream of quiet words about fleets power limits clocks errors"
    " drain reset recover serve train measure alert page fix"
)
_VOCABULARY = tuple(_WORDS.split())

# A stream's tokens must reach the client as they come: nginx buffers a proxied answer (proxy_buffering on,
# its default) unless the upstream says ``X-Accel-Buffering: no``, and a cache in between must not keep one.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class GpuHealth(Protocol):
    """What the server needs from a fleet: how fast one GPU runs now (1 healthy, 0 unusable)."""

    def gpu_speed_factor(self, node: str, index: int) -> float:
        """1.0 healthy; < 1 throttled; 0 lost, hung or node down."""
        ...


Sleep = Callable[[float], Awaitable[None]]


def toy_tokens(prompt: str, count: int) -> list[str]:
    """A deterministic sequence of ``count`` word tokens for ``prompt``."""
    digest = hashlib.blake2b(prompt.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    seed = int.from_bytes(digest, "big")
    n = len(_VOCABULARY)
    return [(" " if i else "") + _VOCABULARY[(seed + i * 7 + (seed >> (i % 13))) % n] for i in range(count)]


def count_input_tokens(prompt: str) -> int:
    """The toy tokenizer: one token per whitespace-separated word."""
    return len(prompt.split())


class GpuUnavailable(Exception):
    """The GPU's speed factor is 0: lost, hung, node down or drained."""


@dataclass(slots=True)
class ServedGpu:
    """The GPU one server runs on, and how long a token takes there."""

    fleet: GpuHealth
    node: str
    index: int
    token_seconds: float

    def token_delay(self) -> float:
        """Seconds for the next token; raises ``GpuUnavailable`` when the GPU cannot compute."""
        speed = self.fleet.gpu_speed_factor(self.node, self.index)
        if speed <= 0:
            raise GpuUnavailable(f"GPU {self.node}/{self.index} is unavailable")
        return self.token_seconds / speed


@dataclass(slots=True)
class _Generation:
    """One request's generation: what to produce and how to report it."""

    operation: str
    ident: str
    prompt_tokens: int  # the prompt's, counted once: a 1 MB prompt was split three times per request
    tokens: list[str]
    prefill: float
    body: OpenAIBody
    gen: GenerationSpan | None

    def usage(self, produced: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": produced,
            "total_tokens": self.prompt_tokens + produced,
        }


class InferenceHandlers:
    """The OpenAI-compatible endpoints of the toy server."""

    def __init__(self, gpu: ServedGpu, *, model: str, clock: Clock, sleep: Sleep) -> None:
        self.gpu = gpu
        self.model = model
        self.clock = clock
        self.sleep = sleep
        self._ids = itertools.count(1)

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        body = await self._accepted(request, ChatRequest)
        if isinstance(body, JSONResponse):
            return body
        return await self._generate(request, "chat", body.prompt(), body.output_tokens(), body)

    async def complete(self, request: Request) -> Response:
        """``POST /v1/completions``."""
        body = await self._accepted(request, CompletionRequest)
        if isinstance(body, JSONResponse):
            return body
        return await self._generate(request, "text_completion", body.text(), body.output_tokens(), body)

    async def _accepted(self, request: Request, kind: type[BodyT]) -> BodyT | JSONResponse:
        """The request's body as ``kind``, or the 4xx answer: a body OpenAI would refuse (``parse_body``),
        or a model this server does not serve."""
        body = await parse_body(request, kind)
        if isinstance(body, JSONResponse) or body.model == self.model:
            return body
        return unknown_model(body.model, self.model, param="model")

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.model, "object": "model", "created": 0, "owned_by": "gpuwarden"}

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def model_card(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: the model served here, or a 404 naming it."""
        name = request.path_params["model"]
        if name != self.model:
            return unknown_model(name, self.model)
        return JSONResponse(self._model_card())

    async def health(self, request: Request) -> Response:
        """``GET /healthz``: 200 while the GPU can compute, 503 otherwise."""
        speed = self.gpu.fleet.gpu_speed_factor(self.gpu.node, self.gpu.index)
        return JSONResponse({"speed_factor": speed}, status_code=200 if speed > 0 else 503)

    async def _generate(
        self, request: Request, operation: str, prompt: str, count: int, body: OpenAIBody
    ) -> Response:
        gen = current_generation()
        prompt_tokens = count_input_tokens(prompt)
        if gen is not None:
            gen.set_request(
                operation=operation,
                model=self.model,
                input_tokens=prompt_tokens,
                max_tokens=count,
                stream=body.stream,
                temperature=body.temperature,
                top_p=body.top_p,
                provider=PROVIDER_NAME,
            )
        try:
            first_delay = self.gpu.token_delay()
        except GpuUnavailable as exc:
            return openai_error(503, str(exc), kind="service_unavailable")
        ident = f"{'chatcmpl' if operation == 'chat' else 'cmpl'}-{next(self._ids):08d}"
        job = _Generation(
            operation=operation,
            ident=ident,
            prompt_tokens=prompt_tokens,
            tokens=toy_tokens(prompt, count),
            prefill=first_delay * (1 + prompt_tokens / 100),
            body=body,
            gen=gen,
        )
        if body.stream:
            return StreamingResponse(self._stream(job), media_type="text/event-stream", headers=SSE_HEADERS)
        return await self._answer(request, job)

    async def _answer(self, request: Request, job: _Generation) -> Response:
        gen = job.gen
        try:
            if not await self._prefill(request, job.prefill):
                return _client_gone()
            for i in range(len(job.tokens)):
                if await request.is_disconnected():  # nobody to answer: stop spending the GPU on it
                    return _client_gone()
                if i:
                    await self.sleep(self.gpu.token_delay())
                if gen is not None:
                    gen.token()
        except GpuUnavailable as exc:
            return openai_error(503, str(exc), kind="service_unavailable")
        if gen is not None:
            gen.finish(response_model=self.model, finish_reasons=["length"], response_id=job.ident)
        text = "".join(job.tokens)
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            if job.operation == "chat"
            else {"index": 0, "text": text, "finish_reason": "length"}
        )
        return JSONResponse(
            {
                "id": job.ident,
                "object": "chat.completion" if job.operation == "chat" else "text_completion",
                "created": int(self.clock.time()),
                "model": self.model,
                "choices": [choice],
                "usage": job.usage(len(job.tokens)),
            }
        )

    async def _prefill(self, request: Request, seconds: float) -> bool:
        """Wait out a plain answer's prefill in steps of ``PREFILL_STEP_SECONDS``, checking between them
        that the client is still there; False once it has gone. (A stream needs no such check: Starlette
        cancels it when its client leaves.) A 500,000-word prompt's prefill takes 25 s: slept in one go, it
        held a gone client's request, its 1 MiB body included, that long."""
        left = seconds
        while left > 0:
            if await request.is_disconnected():
                return False
            step = min(left, PREFILL_STEP_SECONDS)
            await self.sleep(step)
            left -= step
        return True

    async def _stream(self, job: _Generation) -> AsyncIterator[bytes]:
        created = int(self.clock.time())
        chat = job.operation == "chat"
        gen = job.gen

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            payload = {
                "id": job.ident,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": self.model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

        def chunk(piece: str | None, first: bool) -> bytes:
            if chat:
                delta: dict[str, str] = {"role": "assistant"} if first else {}
                if piece is not None:
                    delta["content"] = piece
                return event([{"index": 0, "delta": delta, "finish_reason": None if piece else "length"}])
            return event([{"index": 0, "text": piece or "", "finish_reason": None if piece else "length"}])

        try:
            await self.sleep(job.prefill)
            for i, piece in enumerate(job.tokens):
                if i:
                    await self.sleep(self.gpu.token_delay())
                yield chunk(piece, i == 0)
                if gen is not None:  # counted once the server took the chunk: tokens sent, not made
                    gen.token()
        except GpuUnavailable as exc:
            if gen is not None:  # a failed generation: its span keeps the tokens the client already got
                gen.finish(response_model=self.model, response_id=job.ident)
                gen.set_attribute(ERROR_TYPE, "gpu_unavailable")
            # The status line is already sent; tell the client in-band, as OpenAI does.
            error = {"error": {"message": str(exc), "type": "service_unavailable", "code": 503}}
            yield f"data: {json.dumps(error)}\n\n".encode()
            return
        if gen is not None:
            gen.finish(response_model=self.model, finish_reasons=["length"], response_id=job.ident)
        yield chunk(None, False)
        if job.body.include_usage():
            yield event([], usage=job.usage(len(job.tokens)))
        yield b"data: [DONE]\n\n"


def unknown_model(name: str, served: str, param: str | None = None) -> JSONResponse:
    """A 404 for a model not served here, as OpenAI answers one (``invalid_request_error``, code
    ``model_not_found``): clients that tell a wrong model from a missing route read that code, and the
    ``not_found_error`` it had is no type OpenAI sends."""
    return openai_error(
        404,
        f"model {name!r} is not served here; use {served!r}",
        kind="invalid_request_error",
        param=param,
        code="model_not_found",
    )


def _client_gone() -> JSONResponse:
    """The answer to a request whose client left (nginx's 499): nobody reads it, the span records it."""
    return openai_error(499, "the client closed the request", kind="client_closed_request")


async def _http_error(request: Request, exc: Exception) -> Response:
    """404, 405 and other HTTP errors in OpenAI's shape (405 keeps its ``Allow`` header)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and (redirect := slash_redirect(request)) is not None:
        return redirect  # relative: Starlette's absolute one left a proxy's prefix and its https behind
    kind = {404: "not_found_error", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
    return openai_error(exc.status_code, str(exc.detail), kind=kind, headers=dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    """An unhandled exception: 500 in OpenAI's shape (the exception is logged by Starlette)."""
    return openai_error(500, "internal server error", kind="server_error")


def build_inference_app(
    gpu: ServedGpu,
    *,
    model: str,
    tracer_provider: TracerProvider | None = None,
    span_metrics: SpanMetrics | None = None,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The server as an ASGI app; ``tracer_provider=None`` serves the same endpoints untraced.

    ``/sim/*`` routes among ``extra_routes`` are not traced: fault injection is not inference traffic
    and stays out of the request metrics.
    """
    the_clock = clock or SystemClock()
    handlers = InferenceHandlers(gpu, model=model, clock=the_clock, sleep=sleep)
    chat = inference_endpoint("chat")(handlers.chat)
    complete = inference_endpoint("text_completion")(handlers.complete)
    routes: list[BaseRoute] = [
        Route(INFERENCE_ROUTES[0], chat, methods=["POST"]),
        Route(INFERENCE_ROUTES[1], complete, methods=["POST"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/v1/models/{model:path}", handlers.model_card, methods=["GET"]),
        Route("/healthz", handlers.health, methods=["GET"]),
        *extra_routes,
    ]
    if span_metrics is not None:
        routes.append(Route("/metrics", span_metrics.asgi_app()))
    middleware = (
        [
            Middleware(
                TracingMiddleware,
                tracer_provider=tracer_provider,
                clock=the_clock,
                excluded_prefixes=("/sim/",),
                provider_name=PROVIDER_NAME,
            )
        ]
        if tracer_provider is not None
        else []
    )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.router.redirect_slashes = False  # ``_http_error`` redirects, to a relative reference
    return app


@dataclass(slots=True)
class InferenceServer:
    """The composed server: its ASGI app and the telemetry objects to flush on exit."""

    app: Starlette
    gpu: ServedGpu
    tracer_provider: TracerProvider | None
    span_metrics: SpanMetrics | None

    def shutdown(self) -> None:
        """Flush and stop the span pipeline."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()


def create_inference_server(
    config: TracingConfig,
    fleet: Fleet,
    *,
    node: str,
    gpu: int,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
    span_exporter: SpanExporter | None = None,
    allow_remote_faults: bool = False,
) -> InferenceServer:
    """Serve the toy model on one GPU of ``fleet``, with its fault routes mounted at ``/sim/faults``.

    Faults are injected or cleared only by clients on this machine unless ``allow_remote_faults``: a
    server started with ``--host 0.0.0.0`` must not let anyone on the network slow or kill its GPU.
    ``config.enabled=False`` gives the same server with no tracing and no span metrics (the benchmark's
    baseline). Raises ``InputError`` when the node or GPU does not exist in the fleet.
    """
    sim_gpu = fleet.gpu(node, gpu)
    served = ServedGpu(fleet, node, gpu, config.token_seconds)
    provider: TracerProvider | None = None
    metrics: SpanMetrics | None = None
    if config.enabled:
        metrics = SpanMetrics(routes=INFERENCE_ROUTES)
        provider = build_tracer_provider(
            config,
            gpu_uuids=[sim_gpu.uuid],
            span_exporter=span_exporter,
            processors=[metrics],
            export_counts=metrics.export_counts,
        )
    app = build_inference_app(
        served,
        model=config.model_name,
        tracer_provider=provider,
        span_metrics=metrics,
        clock=clock,
        sleep=sleep,
        extra_routes=loopback_only(fault_routes(fleet), allow_remote=allow_remote_faults),
    )
    return InferenceServer(app, served, provider, metrics)
