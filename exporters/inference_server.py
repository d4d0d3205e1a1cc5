"""A small OpenAI-compatible inference server whose speed follows the health of its (simulated) GPU.

It serves a deterministic toy text generator (no model weights) on ``/v1/chat/completions`` and
``/v1/completions``, streamed (SSE) or not. Each output token takes ``token_seconds / speed_factor`` of
the GPU it runs on: a throttled GPU makes tokens slower, a lost one (factor 0) makes the server answer 503.
Requests are traced by ``TracingMiddleware`` and become metrics on its own ``/metrics``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from exporters.spanmetrics import SpanMetrics
from exporters.tracing import (
    ERROR_TYPE,
    GenerationSpan,
    TracingMiddleware,
    build_tracer_provider,
    current_generation,
    inference_endpoint,
)
from gpuwarden.clock import Clock, SystemClock
from gpuwarden.config import TracingConfig
from gpuwarden.sim import Fleet, fault_routes

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
MAX_OUTPUT_TOKENS = 4096
DEFAULT_MAX_TOKENS = 16
_VOCABULARY = tuple(
    [
        "the",
        "gpu",
        "runs",
        "warm",
        "while",
        "the",
        "cluster",
        "hums",
        "and",
        "every",
        "rank",
        "waits",
        "on",
        "the",
        "slowest",
        "link",
        "tokens",
        "flow",
        "from",
        "memory",
        "through",
        "tensor",
        "cores",
        "into",
        "a",
        "stream",
        "of",
        "quiet",
        "words",
        "about",
        "fleets",
        "power",
        "limits",
        "clocks",
        "errors",
        "drain",
        "reset",
        "recover",
        "serve",
        "train",
        "measure",
        "alert",
        "page",
        "fix",
    ]
)


class GpuHealth(Protocol):
    """What the server needs from a fleet: how fast one GPU runs now (1 healthy, 0 unusable)."""

    def gpu_speed_factor(self, node: str, index: int) -> float:
        """1.0 healthy; < 1 throttled; 0 lost, hung or node down."""
        ...


Sleep = Callable[[float], Awaitable[None]]
BodyT = TypeVar("BodyT", bound="_Body")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send many optional fields we ignore

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    stream: bool = False


class ChatMessage(BaseModel):
    """One chat message; only text content is understood by the toy model."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str


class ChatRequest(_Body):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)

    def prompt(self) -> str:
        """The conversation as one text."""
        return "\n".join(m.content for m in self.messages)

    def output_tokens(self) -> int:
        """Tokens to produce."""
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class CompletionRequest(_Body):
    """``POST /v1/completions``."""

    prompt: str | list[str]

    def text(self) -> str:
        """The prompt as one text."""
        return self.prompt if isinstance(self.prompt, str) else "\n".join(self.prompt)

    def output_tokens(self) -> int:
        """Tokens to produce."""
        return self.max_tokens or DEFAULT_MAX_TOKENS


def toy_tokens(prompt: str, count: int) -> list[str]:
    """A deterministic sequence of ``count`` word tokens for ``prompt``."""
    seed = int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "big")
    n = len(_VOCABULARY)
    return [(" " if i else "") + _VOCABULARY[(seed + i * 7 + (seed >> (i % 13))) % n] for i in range(count)]


def count_input_tokens(prompt: str) -> int:
    """The toy tokenizer: one token per whitespace-separated word."""
    return len(prompt.split())


def _error(status: int, message: str, *, kind: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status
    )


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


class InferenceHandlers:
    """The OpenAI-compatible endpoints of the toy server."""

    def __init__(self, gpu: ServedGpu, *, model: str, clock: Clock, sleep: Sleep) -> None:
        self.gpu = gpu
        self.model = model
        self.clock = clock
        self.sleep = sleep
        self._ids = itertools.count(1)

    async def _parse(self, request: Request, kind: type[BodyT]) -> BodyT | JSONResponse:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", kind="invalid_request_error")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"body larger than {MAX_BODY_BYTES} bytes", kind="invalid_request_error")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body is not valid JSON", kind="invalid_request_error")
        try:
            parsed = kind.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, f"{field}: {first['msg']}", kind="invalid_request_error", param=field)
        if parsed.model != self.model:
            return _error(
                404,
                f"model {parsed.model!r} is not served here; use {self.model!r}",
                kind="not_found_error",
                param="model",
            )
        return parsed

    async def chat(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        body = await self._parse(request, ChatRequest)
        if isinstance(body, JSONResponse):
            return body
        return await self._generate("chat", body.prompt(), body.output_tokens(), body.stream)

    async def complete(self, request: Request) -> Response:
        """``POST /v1/completions``."""
        body = await self._parse(request, CompletionRequest)
        if isinstance(body, JSONResponse):
            return body
        return await self._generate("text_completion", body.text(), body.output_tokens(), body.stream)

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        return JSONResponse(
            {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "gpuwarden"}]}
        )

    async def health(self, request: Request) -> Response:
        """``GET /healthz``: 200 while the GPU can compute, 503 otherwise."""
        speed = self.gpu.fleet.gpu_speed_factor(self.gpu.node, self.gpu.index)
        return JSONResponse({"speed_factor": speed}, status_code=200 if speed > 0 else 503)

    async def _generate(self, operation: str, prompt: str, count: int, stream: bool) -> Response:
        gen = current_generation()
        if gen is not None:
            gen.set_request(
                operation=operation,
                model=self.model,
                input_tokens=count_input_tokens(prompt),
                max_tokens=count,
                stream=stream,
            )
        try:
            first_delay = self.gpu.token_delay()
        except GpuUnavailable as exc:
            return _error(503, str(exc), kind="service_unavailable")
        prefill = first_delay * (1 + count_input_tokens(prompt) / 100)
        tokens = toy_tokens(prompt, count)
        ident = f"{'chatcmpl' if operation == 'chat' else 'cmpl'}-{next(self._ids):08d}"
        if stream:
            return StreamingResponse(
                self._stream(operation=operation, ident=ident, tokens=tokens, prefill=prefill, gen=gen),
                media_type="text/event-stream",
            )
        try:
            await self.sleep(prefill)
            for i in range(len(tokens)):
                if i:
                    await self.sleep(self.gpu.token_delay())
                if gen is not None:
                    gen.token()
        except GpuUnavailable as exc:
            return _error(503, str(exc), kind="service_unavailable")
        if gen is not None:
            gen.finish(response_model=self.model)
        text = "".join(tokens)
        usage = {
            "prompt_tokens": count_input_tokens(prompt),
            "completion_tokens": count,
            "total_tokens": count_input_tokens(prompt) + count,
        }
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
            if operation == "chat"
            else {"index": 0, "text": text, "finish_reason": "length"}
        )
        return JSONResponse(
            {
                "id": ident,
                "object": "chat.completion" if operation == "chat" else "text_completion",
                "created": int(self.clock.time()),
                "model": self.model,
                "choices": [choice],
                "usage": usage,
            }
        )

    async def _stream(
        self,
        *,
        operation: str,
        ident: str,
        tokens: Sequence[str],
        prefill: float,
        gen: GenerationSpan | None,
    ) -> AsyncIterator[bytes]:
        created = int(self.clock.time())
        obj = "chat.completion.chunk" if operation == "chat" else "text_completion"

        def chunk(piece: str | None, first: bool) -> bytes:
            if operation == "chat":
                delta: dict[str, str] = {"role": "assistant"} if first else {}
                if piece is not None:
                    delta["content"] = piece
                choice: dict[str, Any] = {
                    "index": 0,
                    "delta": delta,
                    "finish_reason": None if piece else "length",
                }
            else:
                choice = {"index": 0, "text": piece or "", "finish_reason": None if piece else "length"}
            payload = {
                "id": ident,
                "object": obj,
                "created": created,
                "model": self.model,
                "choices": [choice],
            }
            return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()

        try:
            await self.sleep(prefill)
            for i, piece in enumerate(tokens):
                if i:
                    await self.sleep(self.gpu.token_delay())
                if gen is not None:
                    gen.token()
                yield chunk(piece, i == 0)
        except GpuUnavailable as exc:
            # The status line is already sent; tell the client in-band, as OpenAI does.
            error = {"error": {"message": str(exc), "type": "service_unavailable", "code": 503}}
            yield f"data: {json.dumps(error)}\n\n".encode()
            if gen is not None:
                gen.set_attribute(ERROR_TYPE, "gpu_unavailable")
            return
        if gen is not None:
            gen.finish(response_model=self.model)
        yield chunk(None, False)
        yield b"data: [DONE]\n\n"


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
    """The server as an ASGI app; ``tracer_provider=None`` serves the same endpoints untraced."""
    the_clock = clock or SystemClock()
    handlers = InferenceHandlers(gpu, model=model, clock=the_clock, sleep=sleep)
    chat = inference_endpoint("chat")(handlers.chat)
    complete = inference_endpoint("text_completion")(handlers.complete)
    routes: list[BaseRoute] = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", complete, methods=["POST"]),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/healthz", handlers.health, methods=["GET"]),
        *extra_routes,
    ]
    if span_metrics is not None:
        routes.append(Route("/metrics", span_metrics.asgi_app()))
    middleware = (
        [Middleware(TracingMiddleware, tracer_provider=tracer_provider, clock=the_clock)]
        if tracer_provider is not None
        else []
    )
    return Starlette(routes=routes, middleware=middleware)


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
) -> InferenceServer:
    """Serve the toy model on one GPU of ``fleet``, with its fault routes mounted at ``/sim/faults``.

    ``config.enabled=False`` gives the same server with no tracing and no span metrics (the benchmark's
    baseline). Raises ``InputError`` when the node or GPU does not exist in the fleet.
    """
    sim_gpu = fleet.gpu(node, gpu)
    served = ServedGpu(fleet, node, gpu, config.token_seconds)
    provider: TracerProvider | None = None
    metrics: SpanMetrics | None = None
    if config.enabled:
        metrics = SpanMetrics()
        provider = build_tracer_provider(
            config, gpu_uuids=[sim_gpu.uuid], span_exporter=span_exporter, processors=[metrics]
        )
    app = build_inference_app(
        served,
        model=config.model_name,
        tracer_provider=provider,
        span_metrics=metrics,
        clock=clock,
        sleep=sleep,
        extra_routes=fault_routes(fleet),
    )
    return InferenceServer(app, served, provider, metrics)
