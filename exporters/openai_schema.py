"""The OpenAI-compatible request bodies the toy inference server accepts, and OpenAI's error shape.

Bodies are parsed with orjson: a nesting deeper than 1024 levels, invalid UTF-8 and lone surrogates in
``\\u`` escapes are all "not valid JSON" (400), where the standard library's parser raised
``RecursionError`` or let a surrogate through to crash the tokenizer later. Fields the toy model cannot
honour (``n`` > 1, several prompts, token-id prompts, non-text content parts, tool calls, ``best_of``,
``echo``, ``logprobs``, ``suffix``) are refused with a 400 naming the field rather than silently ignored.
Types are strict, as OpenAI's are: ``"NaN"`` is not a temperature, ``"yes"`` not a boolean, ``true`` not a
token count; ``null`` is a field not given (``stream``, ``n`` included), as OpenAI's API and vLLM take it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any, Literal, TypeVar, get_args

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from starlette.requests import Request
from starlette.responses import JSONResponse

from gpuwarden.httpbody import BodyRefused, read_limited
from gpuwarden.yamlfile import field_path

MAX_BODY_BYTES = 1_048_576
BODY_TIMEOUT_SECONDS = 30.0
MAX_OUTPUT_TOKENS = 4096
DEFAULT_MAX_TOKENS = 16

BodyT = TypeVar("BodyT", bound="OpenAIBody")
ValueT = TypeVar("ValueT")


def openai_error(
    status: int,
    message: str,
    *,
    kind: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    """An error answer in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": param, "code": code}},
        status_code=status,
        headers=headers,
    )


class StreamOptions(BaseModel):
    """``stream_options``: with ``include_usage`` a last chunk carries the usage and no choice."""

    model_config = ConfigDict(extra="ignore")

    include_usage: StrictBool = False


class OpenAIBody(BaseModel):
    """Fields common to both routes; OpenAI clients send many optional ones that are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    max_tokens: StrictInt | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = Field(1, ge=1)
    temperature: StrictFloat | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: StrictFloat | None = Field(None, ge=0, le=1, allow_inf_nan=False)

    @field_validator("stream", "n", mode="before")
    @classmethod
    def _null_is_the_default(cls, value: object, info: ValidationInfo) -> object:
        # OpenAI's API and vLLM take null for "not given": stream false, one choice.
        if value is None:
            return cls.model_fields[info.field_name or ""].default
        return value

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("this server generates one choice per request (n=1); send n requests instead")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream"):
            raise ValueError("only allowed when stream is true")
        return value

    def include_usage(self) -> bool:
        """Whether a streamed answer ends with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage


class ChatMessage(BaseModel):
    """One chat message: text, or a list of text content parts (the toy model reads text only)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    # Before content: an assistant turn that called tools has content null, and its refusal should say why.
    tool_calls: list[Any] | None = None
    function_call: dict[str, Any] | None = None
    content: str | list[dict[str, Any]]

    @field_validator("tool_calls", "function_call")
    @classmethod
    def _no_tool_calls(cls, value: list[Any] | dict[str, Any] | None) -> list[Any] | dict[str, Any] | None:
        if value:
            raise ValueError("tool calls are not supported: the toy model reads and writes text only")
        return value

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, str):
            return value
        for part in value:
            kind = part.get("type")
            if kind != "text":
                raise ValueError(f"content part of type {kind!r}: this model reads text parts only")
            if not isinstance(part.get("text"), str):
                raise ValueError("a text content part needs a string 'text'")
        return value

    def text(self) -> str:
        """The message's text (parts joined)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part["text"]) for part in self.content)


class ChatRequest(OpenAIBody):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1, le=MAX_OUTPUT_TOKENS)
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> bool | int | None:
        return _cannot_honour(value, "log probabilities")

    def prompt(self) -> str:
        """The conversation as one text."""
        return "\n".join(m.text() for m in self.messages)

    def output_tokens(self) -> int:
        """Tokens to produce."""
        return self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS


class CompletionRequest(OpenAIBody):
    """``POST /v1/completions``: one prompt (a string, or a list holding one string)."""

    prompt: str | list[Any]
    best_of: StrictInt | None = Field(None, ge=1)
    echo: StrictBool | None = None
    logprobs: StrictInt | None = None
    suffix: StrictStr | None = None

    @field_validator("best_of")
    @classmethod
    def _one_candidate(cls, value: int | None) -> int | None:
        return None if value == 1 else _cannot_honour(value, "several candidates to pick the best of")

    @field_validator("echo", "logprobs", "suffix")
    @classmethod
    def _no_extras(cls, value: bool | int | str | None) -> bool | int | str | None:
        return _cannot_honour(value, "echoed prompts, log probabilities or suffixes")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[Any]) -> str | list[Any]:
        if isinstance(value, str):
            return value
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError("token-id prompts are not understood by the toy model; send text")
        if len(value) != 1:
            raise ValueError(
                f"{len(value)} prompts: this server completes one prompt per request; send one each"
            )
        if not isinstance(value[0], str):
            raise ValueError("token-id prompts are not understood by the toy model; send text")
        return value

    def text(self) -> str:
        """The prompt."""
        return self.prompt if isinstance(self.prompt, str) else str(self.prompt[0])

    def output_tokens(self) -> int:
        """Tokens to produce."""
        return self.max_tokens or DEFAULT_MAX_TOKENS


def _cannot_honour(value: ValueT, what: str) -> ValueT:
    """``value`` when it asks for nothing (unset, false, empty), else a refusal: the model has no ``what``."""
    if value is None or value is False or value == "":
        return value
    raise ValueError(f"the toy model has no {what}; leave it out")


async def parse_body(request: Request, kind: type[BodyT]) -> BodyT | JSONResponse:
    """The request's body as ``kind``, or the 4xx answer (OpenAI's shape) saying what is wrong."""
    # Read as serve reads its bodies: a chunked body was read whole before its size was checked, and a
    # client gone mid-body left ClientDisconnect to uvicorn, which logged a traceback.
    try:
        raw = await read_limited(request, MAX_BODY_BYTES, BODY_TIMEOUT_SECONDS)
    except BodyRefused as exc:
        return openai_error(exc.status, str(exc), kind="invalid_request_error")
    request._body = raw  # cached as request.body() caches it: the tracing wrapper reads it afterwards
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return openai_error(400, f"body is not valid JSON: {exc}", kind="invalid_request_error")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = openai_param(kind, first["loc"]) or "body"
        message = first["msg"].removeprefix("Value error, ")
        return openai_error(400, f"{field}: {message}", kind="invalid_request_error", param=field)


def openai_param(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """OpenAI's ``param`` for where pydantic found an error: ``messages[0].content``, as OpenAI writes it and
    as gpuwarden writes every setting's path (``field_path``). The member of a union pydantic also names
    (``content.str``, ``content.list[dict[str,any]]``) is no field of the body and is left out."""
    names = _field_names(model)
    kept: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and part not in names:
            break
        kept.append(part)
    return field_path(kept)


@cache
def _field_names(model: type[BaseModel]) -> frozenset[str]:
    """The names of ``model``'s fields and of the fields of the models inside them, as a body spells them."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for inner in _models_in(info.annotation):
            names |= _field_names(inner)
    return frozenset(names)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models an annotation holds (``list[ChatMessage]``, ``StreamOptions | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from _models_in(arg)
