"""Block Kit rendering of incidents: the parent message (updated in place) and its thread replies."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerting.notifiers.base import Notification

ACTION_ACKNOWLEDGE = "gpuwarden_acknowledge"
ACTION_APPROVE = "gpuwarden_approve_remediation"
ACTION_SILENCE_1H = "gpuwarden_silence_1h"

PRIORITY_COLOURS = {"P0": "#d50200", "P1": "#ff7b00", "P2": "#f2c744", "P3": "#439fe0"}
PRIORITY_EMOJI = {
    "P0": ":rotating_light:",
    "P1": ":red_circle:",
    "P2": ":large_orange_circle:",
    "P3": ":information_source:",
}
PRIORITY_MEANING = {"P0": "urgent", "P1": "severe", "P2": "warning", "P3": "info"}
RESOLVED_COLOUR = "#2eb886"
RESOLVED_EMOJI = ":white_check_mark:"
MERGED_COLOUR = "#808080"
MERGED_EMOJI = ":twisted_rightwards_arrows:"

HEADER_MAX = 150
SECTION_MAX = 3000
MAX_LISTED_TARGETS = 10

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """What ``chat.postMessage`` / ``chat.update`` receive: fallback text, blocks and attachments."""

    text: str
    blocks: list[Block] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> Block:
    return {"type": "mrkdwn", "text": _truncate(text, SECTION_MAX)}


def _plain(text: str, limit: int = HEADER_MAX) -> Block:
    return {"type": "plain_text", "text": _truncate(text, limit), "emoji": True}


def _slack_date(at: datetime) -> str:
    """Slack renders this in each reader's time zone; the fallback is ISO 8601 UTC."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at.isoformat()}>"


def merged(n: Notification) -> bool:
    """Whether the change folded this incident into another (its fault goes on there: not resolved)."""
    return n.is_resolution and n.event_kind == "merged"


def colour(n: Notification) -> str:
    """Attachment colour: the priority's, green once resolved, grey once merged into another."""
    if merged(n):
        return MERGED_COLOUR
    return RESOLVED_COLOUR if n.state == "resolved" else PRIORITY_COLOURS.get(n.priority, "#808080")


def emoji(n: Notification) -> str:
    """Leading emoji: the priority's, a check mark once resolved, arrows once merged into another."""
    if merged(n):
        return MERGED_EMOJI
    return RESOLVED_EMOJI if n.state == "resolved" else PRIORITY_EMOJI.get(n.priority, ":grey_question:")


def _no_loss(n: Notification) -> str:
    """The impact line of an incident that took no capacity: what it touches degraded, or nothing known."""
    if n.gpus_affected:
        return f"no capacity lost; {n.gpus_affected} GPU(s) degraded"
    return "_unknown_"


def _runbook(url: str) -> list[Block]:
    """The Runbook field, when ``slack.runbook_base_url`` gives the incident a runbook to link."""
    if not url:
        return []
    shown = (
        f"<{url}|{escape(url.rsplit('/', 1)[-1])}>"
        if url.startswith(("https://", "http://"))
        else f"`{escape(url)}`"
    )
    return [{"type": "section", "block_id": "runbook", "text": _mrkdwn(f"*Runbook*\n{shown}")}]


def _targets(n: Notification) -> str:
    lines = [f"• `{escape(t)}`" for t in n.affected_targets[:MAX_LISTED_TARGETS]]
    more = len(n.affected_targets) - MAX_LISTED_TARGETS
    if more > 0:
        lines.append(f"…and {more} more")
    counts = f"{n.nodes_affected} node(s), {n.gpus_affected} GPU(s)"
    return "\n".join([*lines, counts])


def _buttons(n: Notification) -> Block:
    elements: list[Block] = []
    if n.state == "triggered":
        elements.append(
            {
                "type": "button",
                "action_id": ACTION_ACKNOWLEDGE,
                "text": _plain("Acknowledge", 75),
                "value": n.incident_id,
            }
        )
    elements.append(
        {
            "type": "button",
            "action_id": ACTION_APPROVE,
            "text": _plain("Approve remediation", 75),
            "value": n.incident_id,
            "style": "primary",
            "confirm": {
                "title": _plain("Approve remediation?", 100),
                "text": _mrkdwn(
                    f"Approve remediating *{escape(n.root_cause_kind)}* on `{escape(n.root_cause_target)}`:"
                    " gpuwarden records your approval and marks the incident mitigating; it runs nothing"
                    " itself yet (automatic remediation is not built), so act on the runbook."
                ),
                "confirm": _plain("Approve", 30),
                "deny": _plain("Cancel", 30),
            },
        }
    )
    elements.append(
        {
            "type": "button",
            "action_id": ACTION_SILENCE_1H,
            "text": _plain("Silence 1 h", 75),
            "value": n.incident_id,
        }
    )
    return {"type": "actions", "block_id": "incident_actions", "elements": elements}


RECOMMENDED = {
    "ignore": "nothing: informational",
    "restart_app": "restart the workload",
    "reset_gpu": "reset the GPU",
    "drain_and_reset": "drain the GPU's workloads, then reset it",
    "restart_node": "cordon and drain the node, then reboot it",
    "cordon_and_drain": "cordon and drain the node",
    "scale_out": "scale the service out",
    "investigate": "investigate (no known remedy)",
    "contact_support": "contact NVIDIA support",
}


def _recommended(n: Notification) -> list[Block]:
    """What the firing alerts recommend (the XID catalog's action, the anomaly service's), when anything."""
    if not n.recommended_actions:
        return []
    lines = "\n".join(f"• {escape(RECOMMENDED.get(a, a))}" for a in n.recommended_actions)
    return [{"type": "section", "block_id": "recommended", "text": _mrkdwn(f"*Recommended*\n{lines}")}]


def incident_message(n: Notification) -> SlackMessage:
    """The incident message: priority colour, emoji, title, impact, root cause, targets, runbook, actions."""
    header = f"{emoji(n)} {n.priority} {n.title}"
    actions = "\n".join(f"• {escape(a)}" for a in n.actions_taken) or "_none yet_"
    blocks: list[Block] = [
        {"type": "header", "block_id": "title", "text": _plain(header)},
        {
            "type": "section",
            "block_id": "summary",
            "fields": [
                _mrkdwn(f"*Priority*\n{n.priority} {PRIORITY_MEANING.get(n.priority, '')}"),
                _mrkdwn(f"*State*\n{escape(_state(n))}"),
                _mrkdwn(f"*Root cause*\n{escape(n.root_cause_kind)} on `{escape(n.root_cause_target)}`"),
                _mrkdwn(f"*Opened*\n{_slack_date(n.opened_at)}"),
            ],
        },
        {
            "type": "section",
            "block_id": "impact",
            "text": _mrkdwn(f"*Impact*\n{escape(n.impact_summary) or _no_loss(n)}"),
        },
        {"type": "section", "block_id": "targets", "text": _mrkdwn(f"*Affected targets*\n{_targets(n)}")},
        *_recommended(n),
        *_runbook(n.runbook_url),
        {"type": "section", "block_id": "actions_taken", "text": _mrkdwn(f"*Actions taken*\n{actions}")},
    ]
    if n.state != "resolved":
        blocks.append(_buttons(n))
    context = f"incident `{escape(n.incident_id)}` · last change {_slack_date(n.event_at)}"
    if n.resolved_at is not None:
        context += f" · resolved {_slack_date(n.resolved_at)}"
    elif n.silenced_until is not None:
        context += f" · :no_bell: silenced until {_slack_date(n.silenced_until)}"
    blocks.append({"type": "context", "block_id": "meta", "elements": [_mrkdwn(context)]})
    fallback = f"{n.priority} {n.title} ({_state(n)})"
    return SlackMessage(
        text=fallback, attachments=[{"color": colour(n), "fallback": fallback, "blocks": blocks}]
    )


def _state(n: Notification) -> str:
    """The state as people read it: a merged incident is not resolved, it goes on in another."""
    return n.event_message if merged(n) else n.state


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def timeline_reply(n: Notification) -> SlackMessage:
    """One timeline event as a thread reply; the resolution says how long the incident lasted. The event's
    kind is said once: not "priority: priority P2: ..." nor "opened: incident opened"."""
    message = n.event_message.removeprefix(f"{n.event_kind}: ")  # not "resolved: resolved: ..."
    kind = n.event_kind.replace("_", " ")  # "root_cause_changed" is read as "root cause changed"
    # A message that names what happened ("incident opened", "silence ended: ...") needs no kind before it.
    said = message.startswith(n.event_kind) or not set(kind.split()).isdisjoint(
        _WORD.findall(message.lower())
    )
    if merged(n):
        text = f"{MERGED_EMOJI} {escape(message)}: it goes on there, with these alerts"
    elif n.is_resolution:
        took = ""
        if n.resolved_at is not None:
            took = f" after {_duration((n.resolved_at - n.opened_at).total_seconds())}"
        by = message.removeprefix("resolved ") if message.startswith("resolved by ") else ""
        text = f"{RESOLVED_EMOJI} *Resolved*{took}{f' {escape(by)}' if by else f': {escape(message)}'}"
    elif message.startswith(n.event_kind):  # "acknowledged by alice", "note by bob: ..."
        text = f"*{escape(n.event_kind)}*{escape(message.removeprefix(n.event_kind))}"
    elif said:
        text = escape(message)
    else:
        text = f"*{escape(kind)}*: {escape(message)}"
    blocks: list[Block] = [
        {"type": "section", "text": _mrkdwn(text)},
        {
            "type": "context",
            "elements": [_mrkdwn(f"{_slack_date(n.event_at)} · {n.priority} · {escape(n.state)}")],
        },
    ]
    plain = message if said else f"{kind}: {message}"
    return SlackMessage(text=_truncate(plain, SECTION_MAX), blocks=blocks)


_WORD = re.compile(r"[a-z]+")
