"""Who ``serve`` tells about incidents: Slack (``slack.bot_token``) and each of the ``webhooks``, through
one durable outbox. Without any of them there is no outbox, and the engine stores no change to tell."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from alerting.notifiers.base import Notifier
    from alerting.outbox import Outbox
    from gpuwarden.clock import Clock
    from gpuwarden.config import GpuwardenConfig

logger = logging.getLogger("gpuwarden.serve")


def build_notifiers(cfg: GpuwardenConfig, clock: Clock) -> list[Notifier]:
    """Slack's notifier when its bot token is set, then one per configured webhook, in the file's order."""
    notifiers: list[Notifier] = []
    if cfg.slack.bot_token is not None:
        # Imported only when Slack is configured: serve must start without slack-sdk work otherwise.
        from alerting.notifiers.slack import SlackNotifier  # noqa: PLC0415

        # A channel name, not an id: serve warned at start (alerting_checks.check_slack_channel).
        notifiers.append(SlackNotifier.from_config(cfg.slack))
    if cfg.webhooks:
        from alerting.notifiers.webhook import WebhookNotifier  # noqa: PLC0415

        notifiers.extend(WebhookNotifier.from_config(hook, clock=clock) for hook in cfg.webhooks)
    return notifiers


def build_outbox(cfg: GpuwardenConfig, sql: Engine, clock: Clock) -> Outbox | None:
    """The outbox with every configured notifier, or None when none is configured. Either way, messages
    left waiting for a notifier no longer configured are set aside, and those of one configured again are
    queued again (``alerting.outbox_orphans``)."""
    from alerting.outbox_orphans import reconcile_orphans  # noqa: PLC0415

    notifiers = build_notifiers(cfg, clock)
    reconcile_orphans(sql, [n.name for n in notifiers], clock.time())
    if not notifiers:
        return None
    from alerting.notifiers.base import runbook_linker  # noqa: PLC0415
    from alerting.outbox import Outbox  # noqa: PLC0415

    for notifier in notifiers:
        logger.info("notifier: %s", notifier.name)
    return Outbox(sql, notifiers, clock, runbook=runbook_linker(cfg.slack.runbook_base_url))


def stored_outbox(sql: Engine, clock: Clock) -> Outbox:
    """An outbox without a notifier, for the API alone: once every notifier is removed from the
    configuration, what they left (orphaned, failed) can still be listed and discarded. Nothing dispatches
    it and the engine does not hand it changes; ``outbox retry`` requeues nothing (no notifier would send)."""
    from alerting.outbox import Outbox  # noqa: PLC0415

    return Outbox(sql, [], clock)
