"""The ``slack`` section of the configuration: the Slack notifier's token, channels and calls.

Kept out of ``gpuwarden.config`` (the sections) for size; imported from there as before. The token is a
secret reference, never a literal.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from gpuwarden.config_notify import Priority
from gpuwarden.config_rules import HttpUrl, PrometheusUrl, Secret, Section, Token
from gpuwarden.limits import MAX_INTERVAL_SECONDS, MAX_WINDOW_SECONDS


def _named(channel: str) -> str:
    """``channel``, when it names one: Slack refuses a post to no channel (``channel_not_found``)."""
    if not channel.strip():
        raise ValueError(
            f"{channel!r} names no channel, so Slack would refuse every post (channel_not_found); set the"
            " channel's id (C0123456789: Slack's channel details, at the bottom)"
        )
    return channel


ChannelName = Annotated[str, AfterValidator(_named)]
"""A channel to post to: a name or an id, not blank."""


class SlackConfig(Section):
    """Slack notifications; the token is a secret reference, never a literal."""

    bot_token: Token = None
    signing_secret: Secret = None
    channel: str = Field("#gpu-incidents", description="a channel id (C...) makes crash recovery exact")
    channels_by_priority: dict[Priority, ChannelName] = Field(
        default_factory=dict,
        description="the channel an incident's message goes to by its priority when posted ({P0: C..., P1:"
        " C...}; a priority not listed: channel); its thread stays there when the priority changes later",
    )
    base_url: HttpUrl = "https://slack.com/api/"
    timeout_seconds: int = Field(
        10, ge=1, le=MAX_INTERVAL_SECONDS, description="each step of a call: connect, send, each read"
    )
    call_deadline_seconds: float = Field(
        30.0,
        gt=0,
        le=MAX_INTERVAL_SECONDS,
        description="a whole call, all its reads (and short rate-limit waits) together; then it is retried",
    )
    rate_limit_retries: int = Field(
        3, ge=0, le=100, description="429s retried inside slack-sdk after Retry-After"
    )
    charts: bool = True
    chart_prometheus_url: PrometheusUrl | None = Field(
        None, description="Prometheus read for incident charts"
    )
    chart_window_seconds: float = Field(3600.0, gt=0, le=MAX_WINDOW_SECONDS)
    chart_latency_offset_seconds: float = Field(
        0.0,
        ge=0,
        le=MAX_WINDOW_SECONDS,
        description="charts end this long before now: VictoriaMetrics' -search.latencyOffset (30)",
    )
    runbook_base_url: HttpUrl | None = Field(None, description="runbook links: <base>/<fault_kind>.yaml")
    broadcast_resolutions: bool = Field(
        False,
        description="also post each resolution to the channel (it always edits the incident's message in "
        "place and replies in its thread), but that of a reopening that paged nobody (a flap's or a "
        "cycle's) and an incident's merge into another (its fault goes on there); like Alertmanager's "
        "send_resolved, off by default for Slack",
    )

    @field_validator("channel")
    @classmethod
    def _channel_named(cls, value: str) -> str:
        # Slack refuses a post to no channel (channel_not_found): every message would fail. serve warned only
        # that '' was "a name, not an id", and config validate passed it.
        return _named(value)
