"""Checks of ``serve``'s alerting and notification settings that the configuration model cannot make alone:
they need the time (a maintenance window already over) or say where a secret goes (a webhook's or Slack's
token over plain http to another machine, or in a webhook URL's query; a Slack channel named rather than
given by id). Each is a warning: serve starts, and logs the same line that ``config validate`` prints
(``preflight``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gpuwarden.clock import shown
from gpuwarden.errors import ConfigError
from gpuwarden.limits import DAY, MAX_WINDOW_SECONDS
from gpuwarden.redaction import credential_parameters
from gpuwarden.urls import plain_http_host

if TYPE_CHECKING:
    from gpuwarden.config import AlertingConfig, GpuwardenConfig
    from gpuwarden.config_notify import WebhookConfig


def check_slack_token(cfg: GpuwardenConfig) -> list[ConfigError]:
    """A warning when the file (or a variable) writes a ``slack`` section without ``bot_token``: Slack's
    notifier is made only with a token, so serve ran with Slack off and said nothing of it (no ``notifier:
    slack`` line, no warning), however the rest of the section was filled in."""
    if "slack" not in cfg.model_fields_set or cfg.slack.bot_token is not None:
        return []
    return [
        ConfigError(
            "no bot_token, so serve sends nothing to Slack; set bot_token: {env: SLACK_BOT_TOKEN}, or remove"
            " the slack section",
            field="slack",
        )
    ]


def check_slack_channel(cfg: GpuwardenConfig) -> list[ConfigError]:
    """A warning for each Slack channel given by name, not id (``slack.channel``, each of
    ``slack.channels_by_priority``): Slack answers a post with the channel's id, so the outbox cannot tell a
    posted message from one it never sent after a crash."""
    if cfg.slack.bot_token is None:
        return []
    channels = [("slack.channel", cfg.slack.channel)]
    channels += [(f"slack.channels_by_priority.{p}", c) for p, c in cfg.slack.channels_by_priority.items()]
    return [warning for field, channel in channels for warning in _channel_warnings(field, channel)]


def _channel_warnings(field: str, channel: str) -> list[ConfigError]:
    if _channel_id(channel):
        return []
    if _channel_id(channel.strip()):  # an id with blanks around it was called "a name"
        return [
            ConfigError(
                f"{channel!r} has blanks around a channel id, which no Slack channel id has; write"
                f" {channel.strip()}",
                field=field,
            )
        ]
    return [
        ConfigError(
            f"{channel!r} is a name, not an id (C...): after a crash between Slack's answer and the"
            " outbox's record, the incident's message can be posted twice; set the channel id",
            field=field,
        )
    ]


def _channel_id(channel: str) -> bool:
    """Whether ``channel`` is a Slack channel id (``C0123456789``; ``G...`` for an old private channel)."""
    return channel.startswith(("C", "G")) and channel[1:].isalnum()


def check_maintenance_windows(cfg: AlertingConfig, now: datetime) -> list[ConfigError]:
    """Configured maintenance windows against the time ``now``.

    One that ends more than ``MAX_WINDOW_SECONDS`` (a year) from now is refused: an end in year 9999 is a
    permanent mute written as planned work, and it would hide its targets' faults for good. One that already
    ended is returned as a warning, not refused: it mutes nothing, and a stale entry in a file must not stop
    ``serve`` from starting again (Alertmanager refuses an ended silence only when one is created through its
    API, which gpuwarden's API does too).
    """
    # Here, not at the top: every command imports this module, and config_rules brings pydantic.

    latest = now + timedelta(seconds=MAX_WINDOW_SECONDS)
    warnings = []
    for k, window in enumerate(cfg.maintenance_windows):
        field = f"alerting.maintenance_windows[{k}].ends_at"
        if window.ends_at > latest:
            raise ConfigError(
                f"{shown(window.ends_at)} is more than {MAX_WINDOW_SECONDS / DAY:g} days from now: a"
                " maintenance window is planned work with an end; give the work's end (at most a year ahead,"
                " as for a silence) and move it if the work moves, or mute for good in the alert rule",
                field=field,
            )
        if window.ends_at <= now:
            warnings.append(
                ConfigError(
                    f"the window ended at {shown(window.ends_at)}, so it mutes nothing; remove it, or give"
                    " the work's new starts_at and ends_at",
                    field=field,
                )
            )
    return warnings


def check_webhooks(webhooks: Sequence[WebhookConfig]) -> list[ConfigError]:
    """Warnings about the ``webhooks``: a bearer token sent over plain HTTP to another machine travels
    readable by anyone on the path (https, or a receiver on this machine, is meant)."""
    found = (
        over_plain_http(hook.url, "the bearer token", f"webhooks[{k}].url")
        for k, hook in enumerate(webhooks)
        if hook.bearer_token is not None
    )
    return [warning for warning in found if warning is not None]


def check_webhook_url_tokens(cfg: GpuwardenConfig) -> list[ConfigError]:
    """A warning per webhook whose ``url``, written into the file, holds a token in its query or fragment
    (``?api_key=...``): it is in the file, so in its backups and repositories, and in the access log of
    every proxy on the way. Not refused: such a file validated, and some receivers take a token only so (an
    Azure workflow's ``?sig=``): ``{env: NAME}`` (or a ``GPUWARDEN_WEBHOOKS`` variable) says nothing."""
    warnings = []
    for k, hook in enumerate(cfg.webhooks):
        field = f"webhooks[{k}].url"
        names = credential_parameters(hook.url)
        if not names or not cfg.written_in_file(field):
            continue
        env = re.sub(r"\W", "_", f"webhook_{hook.name}").upper()  # as literal_secrets names them
        warnings.append(
            ConfigError(
                f"a token in the URL's query ({', '.join(f'{name}=' for name in names)}) is written into the"
                " file and logged by proxies on the way; send it as bearer_token: {env:"
                f" {env}_BEARER_TOKEN}}, or in a header given as {{env: NAME}}, where the receiver takes one;"
                f" else write url: {{env: {env}_URL}}",
                field=field,
            )
        )
    return warnings


def check_slack_base_url(cfg: GpuwardenConfig) -> list[ConfigError]:
    """A warning when Slack's bot token would go over plain HTTP to another machine (``slack.base_url``)."""
    if cfg.slack.bot_token is None:
        return []
    warning = over_plain_http(cfg.slack.base_url, "the bot token", "slack.base_url")
    return [] if warning is None else [warning]


def over_plain_http(url: str, secret: str, field: str, instead: str = "") -> ConfigError | None:
    """The warning for ``secret`` sent to ``url`` when that is plain http to another machine, or None;
    ``instead``: what else silences it, after "use an https URL"."""
    host = plain_http_host(url)
    if host is None:
        return None
    return ConfigError(
        f"{secret} goes to {host} over plain http, readable on the way; use an https URL{instead}",
        field=field,
    )
