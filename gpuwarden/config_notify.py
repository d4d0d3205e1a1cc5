"""The ``webhooks`` list of the configuration: generic outgoing webhooks, one JSON POST per incident change.

Kept out of ``gpuwarden.config`` (the sections) for size. Like the Slack section, credentials are secret
references (``bearer_token: {env: ONCALL_WEBHOOK_TOKEN}``) and ``config show`` masks them; a URL may carry a
credential too (a token in its path or query), so ``config show`` prints only its scheme and host.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, PlainSerializer, field_validator

from gpuwarden.config_rules import CredentialUrl, Secret, Section, Token
from gpuwarden.errors import ConfigError
from gpuwarden.headers import header_value_problem
from gpuwarden.redaction import MASK

WebhookEvent = Literal[
    "opened", "updated", "priority_changed", "acknowledged", "mitigating", "resolved", "reopened"
]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = get_args(WebhookEvent)
"""What may happen to an incident (``alerting.subscriptions.ChangeKind``; the core imports no stage)."""
Priority = Literal["P0", "P1", "P2", "P3"]
MAX_WEBHOOK_TIMEOUT_SECONDS = 120.0
"""One POST waits at most this long: the outbox's one dispatcher waits with it (Slack's messages too)."""
NOTIFIER_PREFIX = "webhook:"
"""A webhook's name in the outbox and in metrics' ``notifier`` label: ``webhook:<name>``."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", re.ASCII)
_TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", re.ASCII)  # an HTTP header name (RFC 9110 token)
_HOP_BY_HOP = "the HTTP client manages the connection and the body's framing"
_RESERVED_HEADERS = {
    "authorization": "set bearer_token: {env: ...} instead",
    "content-type": "gpuwarden sends application/json",
    "content-length": "the HTTP client sets it",
    "host": "the URL sets it",
    "idempotency-key": "gpuwarden sets it to the message's key",
    "user-agent": "gpuwarden sends gpuwarden-webhook",
    # A body framed two ways (Transfer-Encoding: chunked beside the client's Content-Length) is what request
    # smuggling is made of; receivers and proxies refuse it or read it differently.
    "transfer-encoding": _HOP_BY_HOP,
    "connection": _HOP_BY_HOP,
    "keep-alive": _HOP_BY_HOP,
    "te": _HOP_BY_HOP,
    "trailer": _HOP_BY_HOP,
    "upgrade": _HOP_BY_HOP,
}

# A header that carries a credential by its name: a proxy's or a cookie's, or one named for a key, token,
# secret, password, signature or session (``X-Api-Key``, ``X-Auth-Token``).
_CREDENTIAL_HEADER = re.compile(
    r"proxy-authorization|cookie|auth|token|key|secret|passw|pwd|signature|session|credential", re.IGNORECASE
)


def _shown_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers as ``config show`` prints them: a credential's value masked, written into the file or not
    (one read from ``{env: NAME}`` is masked whatever its name)."""
    return {name: MASK if _CREDENTIAL_HEADER.search(name) else text for name, text in headers.items()}


class WebhookConfig(Section):
    """One receiver of incident changes: each is POSTed there as JSON, retried until it answers 2xx."""

    name: str = Field(
        ...,
        min_length=1,
        max_length=64 - len(NOTIFIER_PREFIX),
        description="unique; the outbox and metrics call it webhook:<name>",
    )
    url: CredentialUrl = Field(
        ..., description="where the JSON is POSTed; {env: NAME} when it holds a credential"
    )
    bearer_token: Token = Field(None, description="sent as Authorization: Bearer <token>")
    signing_secret: Secret = Field(
        None, description="signs each body: X-Gpuwarden-Signature, an HMAC-SHA256 like Slack's"
    )
    headers: Annotated[dict[str, str], PlainSerializer(_shown_headers, when_used="json")] = Field(
        default_factory=dict,
        description="extra request headers; a key (X-Api-Key) as {env: NAME}, which config show masks",
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=MAX_WEBHOOK_TIMEOUT_SECONDS,
        description="each step of a POST: connect, send, each read",
    )
    call_deadline_seconds: float = Field(
        30.0,
        gt=0,
        le=MAX_WEBHOOK_TIMEOUT_SECONDS,
        description="a whole POST, its answer's status line and headers included; then it is retried",
    )
    events: list[WebhookEvent] = Field(
        list(WEBHOOK_EVENTS), min_length=1, description="which changes are sent (default: all)"
    )
    edit_interval_seconds: float = Field(
        300.0,
        ge=0,
        le=3600,
        description="a reassessed update waits this long, the latest waiting is sent; 0: each at once",
    )
    priorities: list[Priority] = Field(
        ["P0", "P1", "P2", "P3"],
        min_length=1,
        description="incidents at these priorities are sent; once one was, all its later changes are",
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_word(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"{value!r}: use letters, digits, '_', '-' and '.' (it labels metrics)")
        return value

    @field_validator("headers")
    @classmethod
    def _headers_can_be_sent(cls, value: dict[str, str]) -> dict[str, str]:
        for header, text in value.items():
            if not _TOKEN_RE.match(header):
                raise ValueError(f"{header!r} is not an HTTP header name")
            reserved = _RESERVED_HEADERS.get(header.lower())
            if reserved is not None or header.lower().startswith("x-gpuwarden-"):
                raise ValueError(f"{header} cannot be set here: {reserved or 'gpuwarden sets it'}")
            problem = header_value_problem(text)  # httpx raised UnicodeEncodeError at every delivery
            if problem is not None:
                raise ValueError(f"{header}: {problem}")
        return value

    @property
    def notifier_name(self) -> str:
        """The name in the outbox and in metrics."""
        return f"{NOTIFIER_PREFIX}{self.name}"


def check_webhook_names(webhooks: Sequence[WebhookConfig]) -> list[ConfigError]:
    """A problem per webhook named as an earlier one (the outbox keeps each one's messages by name)."""
    first: dict[str, int] = {}
    problems = []
    for k, hook in enumerate(webhooks):
        if hook.name in first:
            problems.append(
                ConfigError(
                    f"{hook.name!r} is also the name of webhooks[{first[hook.name]}]; give each webhook its"
                    " own",
                    field=f"webhooks[{k}].name",
                )
            )
            continue
        first[hook.name] = k
    return problems


def literal_url_credential(raw: object) -> str | None:
    """Why a ``url`` written into the file holds a credential (a password before its host), or None."""
    if not isinstance(raw, str):
        return None
    try:
        password = urlsplit(raw).password
    except ValueError:  # not a URL: validation names it
        return None
    return "a password written into the file" if password else None
