"""Block Kit rendering of incidents: the parent message (updated in place) and its thread replies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerting.notifiers.base import Notification
from alerting.silences import EXTENDABLE
from gpuwarden.clock import shown
from gpuwarden.model import fault_name, impact_text, percent, root_key

ACTION_ACKNOWLEDGE = "gpuwarden_acknowledge"
ACTION_APPROVE = "gpuwarden_approve_remediation"
ACTION_SILENCE_1H = "gpuwarden_silence_1h"
# The Approve button's value: the incident's id, then the root cause its dialog names (``root_key``).
ROOT_SEPARATOR = "|"

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

# Slack's documented limits, in characters.
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
CONFIRM_TEXT_MAX = 300
TEXT_MAX = 4000  # top-level ``text`` and ``fallback``: Slack truncates past 40,000 and recommends 4,000
MAX_LISTED_TARGETS = 10
TARGET_MAX = 250  # characters of one listed target: ten of them fit in a section

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """What ``chat.postMessage`` / ``chat.update`` receive: fallback text, blocks and attachments."""

    text: str
    blocks: list[Block] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)


def escape(text: str) -> str:
    """Escape the three characters Slack treats as control characters, in mrkdwn and in a message's ``text``
    and ``fallback`` alike: unescaped, a label value ``<!channel>`` notifies the whole channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_OPEN_ENTITY = re.compile(r"&[a-z]{0,3}$")


def _cut(text: str, limit: int) -> str:
    """Plain text cut to ``limit`` characters, the last one "…"."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def truncate(text: str, limit: int) -> str:
    """Escaped text (mrkdwn, ``text``) cut to ``limit`` characters with "…", never inside an escape
    (``&am``) nor leaving a ``<link|...>`` or ``<!date...>`` open (Slack would show it raw, or refuse it)."""
    if len(text) <= limit:
        return text
    cut = _OPEN_ENTITY.sub("", text[: limit - 1])
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut + "…"


def _mrkdwn(text: str, limit: int = SECTION_MAX) -> Block:
    return {"type": "mrkdwn", "text": truncate(text, limit)}


def _listed(items: Sequence[str], sep: str, budget: int, total: int | None = None) -> str:
    """Items joined while they fit in ``budget`` characters, then "…and N more" counting the rest of
    ``total`` (not a name cut in two; only a first item too long alone is cut)."""
    total = len(items) if total is None else total
    shown: list[str] = []
    used = 0
    for item in items:
        left = total - len(shown) - 1
        room = budget - used - (len(sep) if shown else 0) - (len(f"{sep}…and {left} more") if left else 0)
        if len(item) > room and shown:
            break
        shown.append(item if len(item) <= room else truncate(item, max(room, 1)))
        used += len(shown[-1]) + (len(sep) if len(shown) > 1 else 0)
    more = total - len(shown)
    return sep.join(shown) + (f"{sep}…and {more} more" if more else "")


def _plain(text: str, limit: int = HEADER_MAX) -> Block:
    return {"type": "plain_text", "text": _cut(text, limit), "emoji": True}


def _slack_date(at: datetime) -> str:
    """Slack renders this in each reader's time zone; the fallback (a notification's text, a client that
    cannot render it) is the time as gpuwarden's text writes every time (``shown``: ``...T16:00:05Z``)."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{shown(at)}>"


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
    """The impact line of an incident that took no capacity: what it touches degraded, else what its
    service's requests measure (which gave it its priority), or nothing known."""
    measured = [f"error ratio {percent(n.error_ratio)}"] if n.error_ratio > 0 else []
    measured += [f"SLO burn rate {n.slo_burn_rate:g}x"] if n.slo_burn_rate > 0 else []
    return impact_text("", n.gpus_affected) or ", ".join(measured) or "_unknown_"


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


def _code(value: str, budget: int) -> str:
    """``value`` escaped, in backticks, cut to fit ``budget`` characters with them."""
    return f"`{truncate(escape(value), max(budget - 2, 1))}`"


def counted(count: int, unit: str) -> str:
    """``1 GPU``, ``8 GPUs``: a count with its unit, singular for one."""
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _targets(n: Notification) -> str:
    # Only what there is, singular for one (a message said "0 node(s), 1 GPU(s)").
    counts = ", ".join(
        counted(count, unit)
        for count, unit in ((n.nodes_affected, "node"), (n.gpus_affected, "GPU"))
        if count
    )
    budget = SECTION_MAX - len(f"*Affected targets*\n\n{counts}")
    lines = [f"• {_code(t, TARGET_MAX)}" for t in n.affected_targets[:MAX_LISTED_TARGETS]]
    listed = _listed(lines, chr(10), budget, len(n.affected_targets))
    return f"{listed}\n{counts}" if counts else listed


def _impact(n: Notification) -> str:
    """The impact summary, bounded by naming the first workloads and counting the rest (the summary lists
    every one: 1,000 services are 71,000 characters)."""
    if not n.impact_summary:
        return _no_loss(n)
    # A message queued before the parts were kept has the summary alone: shown as one part, never split
    # again (a name may hold ", ").
    parts = [escape(p) for p in n.impact_parts or (n.impact_summary,)]
    return _listed(parts, ", ", SECTION_MAX - len("*Impact*\n"))


_APPROVE_SAYS = (
    ": gpuwarden records your approval and marks the incident mitigating; it runs nothing itself yet"
    " (automatic remediation is not built), so act on the runbook."
)


def _confirm_text(n: Notification) -> str:
    """What the Approve dialog asks, within its 300 characters: a long target (a node's FQDN) is cut."""
    kind = f"Approve remediating *{truncate(escape(fault_name(n.root_cause_kind)), 40)}* on "
    return kind + _code(n.root_cause_shown, CONFIRM_TEXT_MAX - len(kind) - len(_APPROVE_SAYS)) + _APPROVE_SAYS


def approve_value(n: Notification) -> str:
    """The Approve button's value: the incident and the root cause the dialog asks to approve remediating."""
    return f"{n.incident_id}{ROOT_SEPARATOR}{root_key(n.root_cause_kind, n.root_cause_target)}"


def _buttons(n: Notification, *, approve: bool = True) -> list[Block]:
    """The actions block (none when no button applies: Slack refuses an empty one). While a silence holds
    the incident the message says until when, and the silence button is left out while a press would only
    answer "already silenced" (``lifecycle.silence_incident_outcome``); in the silence's last half hour
    (``EXTENDABLE``), when a press makes a new hour's silence, it is back as "Extend silence 1 h" (the tick
    edits the message then: ``MuteTracking._tell_silences_ending``)."""
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
    if approve:
        elements.append(
            {
                "type": "button",
                "action_id": ACTION_APPROVE,
                "text": _plain("Approve remediation", 75),
                "value": approve_value(n),
                "style": "primary",
                "confirm": {
                    "title": _plain("Approve remediation?", 100),
                    "text": _mrkdwn(_confirm_text(n), CONFIRM_TEXT_MAX),
                    "confirm": _plain("Approve", 30),
                    "deny": _plain("Cancel", 30),
                },
            }
        )
    if n.silenced_until is None or n.silenced_until - n.event_at < EXTENDABLE:
        label = "Silence 1 h" if n.silenced_until is None else "Extend silence 1 h"
        elements.append(
            {
                "type": "button",
                "action_id": ACTION_SILENCE_1H,
                "text": _plain(label, 75),
                "value": n.incident_id,
            }
        )
    return [{"type": "actions", "block_id": "incident_actions", "elements": elements}] if elements else []


RECOMMENDED = {
    "ignore": "nothing: informational",
    "restart_app": "restart the workload",
    "reset_gpu": "reset the GPU",
    "drain_and_reset": "drain the GPU's workloads, then reset it",
    "restart_node": "cordon and drain the node, then reboot it",
    "cordon_and_drain": "cordon and drain the node",
    "scale_out": "scale the service out",
    "investigate": "investigate (no automatic remedy: the alerts say what to check)",
    "contact_support": "contact NVIDIA support",
}


def _recommended(n: Notification) -> list[Block]:
    """What the firing alerts recommend (the XID catalog's action, the anomaly service's), when anything."""
    if not n.recommended_actions:
        return []
    lines = [f"• {escape(RECOMMENDED.get(a, a))}" for a in n.recommended_actions]
    listed = _listed(lines, "\n", SECTION_MAX - len("*Recommended*\n"))
    return [{"type": "section", "block_id": "recommended", "text": _mrkdwn(f"*Recommended*\n{listed}")}]


def _opened(n: Notification) -> str:
    """When it opened, and when it last reopened: since when it is open this time."""
    if n.reopened_at is None:
        return _slack_date(n.opened_at)
    return f"{_slack_date(n.opened_at)} · reopened {_slack_date(n.reopened_at)}"


def _ack_hint(n: Notification) -> str:
    """How to acknowledge when the message has no buttons (no interactivity: nothing would hear them)."""
    if n.state != "triggered":
        return ""
    return f" · acknowledge: `gpuwarden incidents ack {truncate(escape(n.incident_id), 100)}`"


def incident_message(n: Notification, *, interactive: bool = True) -> SlackMessage:
    """The incident message: priority colour, emoji, title, impact, root cause, targets, runbook, actions;
    buttons while it is open when ``interactive`` (``slack.signing_secret`` set: serve hears the presses),
    else the command that acknowledges it."""
    header = f"{emoji(n)} {n.priority} {n.title}"  # plain text: shown as it is, nothing to escape
    budget = SECTION_MAX - len("*Actions taken*\n")
    actions = _listed([f"• {escape(a)}" for a in n.actions_taken], "\n", budget) or "_none yet_"
    cause = f"{truncate(escape(fault_name(n.root_cause_kind)), 100)} on "
    cause += _code(n.root_cause_shown, FIELD_MAX - len(f"*Root cause*\n{cause}"))
    blocks: list[Block] = [
        {"type": "header", "block_id": "title", "text": _plain(header)},
        {
            "type": "section",
            "block_id": "summary",
            "fields": [
                _mrkdwn(f"*Priority*\n{n.priority} {PRIORITY_MEANING.get(n.priority, '')}", FIELD_MAX),
                _mrkdwn(f"*State*\n{escape(_state(n))}", FIELD_MAX),
                _mrkdwn(f"*Root cause*\n{cause}", FIELD_MAX),
                _mrkdwn(f"*Opened*\n{_opened(n)}", FIELD_MAX),
            ],
        },
        {"type": "section", "block_id": "impact", "text": _mrkdwn(f"*Impact*\n{_impact(n)}")},
        {"type": "section", "block_id": "targets", "text": _mrkdwn(f"*Affected targets*\n{_targets(n)}")},
        *_recommended(n),
        *_runbook(n.runbook_url),
        {"type": "section", "block_id": "actions_taken", "text": _mrkdwn(f"*Actions taken*\n{actions}")},
    ]
    if n.state != "resolved" and interactive:
        blocks.extend(_buttons(n))
    context = f"incident `{escape(n.incident_id)}` · last change {_slack_date(n.event_at)}"
    if not interactive:
        context += _ack_hint(n)
    if n.resolved_at is not None:
        context += f" · resolved {_slack_date(n.resolved_at)}"
    elif n.silenced_until is not None:
        context += f" · :no_bell: silenced until {_slack_date(n.silenced_until)}"
    blocks.append({"type": "context", "block_id": "meta", "elements": [_mrkdwn(context)]})
    fallback = _fallback(n)
    return SlackMessage(
        text=fallback, attachments=[{"color": colour(n), "fallback": fallback, "blocks": blocks}]
    )


def _fallback(n: Notification) -> str:
    """The message's ``text`` (notifications, search) and its attachment's ``fallback``: escaped, as Slack
    reads mentions and links there as in mrkdwn."""
    return truncate(escape(f"{n.priority} {n.title} ({_state(n)})"), TEXT_MAX)


def minimal_message(n: Notification, *, interactive: bool = True) -> SlackMessage:
    """The incident in a message Slack cannot refuse, for when it refused the full one (``invalid_blocks``,
    ``msg_too_long``): priority, title, state, runbook link, and Acknowledge / Silence while open (or, not
    ``interactive``, the command that acknowledges it)."""
    lines = [
        f"{emoji(n)} *{n.priority} {PRIORITY_MEANING.get(n.priority, '')}* {truncate(escape(n.title), 300)}",
        f"{truncate(escape(_state(n)), 200)} · incident {_code(n.incident_id, 100)}"
        + ("" if interactive else _ack_hint(n)),
    ]
    if n.runbook_url.startswith(("https://", "http://")) and len(n.runbook_url) <= 2000:
        lines.append(f"<{n.runbook_url}|runbook>")
    blocks: list[Block] = [{"type": "section", "block_id": "minimal", "text": _mrkdwn("\n".join(lines))}]
    if n.state != "resolved" and len(n.incident_id) <= 2000 and interactive:
        blocks.extend(_buttons(n, approve=False))
    fallback = _fallback(n)
    return SlackMessage(
        text=fallback, attachments=[{"color": colour(n), "fallback": fallback, "blocks": blocks}]
    )


def _state(n: Notification) -> str:
    """The state as people read it: a merged incident is not resolved, it goes on in another; a flapping
    one is held open without a page per flap; a quiet one's alerts all ended; one that repeats its cycle
    says how often (``_cycling``)."""
    if merged(n):
        return n.event_message
    if n.flapping and n.state != "resolved":
        return f"{n.state}, flapping ({', '.join(n.flapping)}): held, no page per flap"
    if n.quiet and n.state != "resolved":
        return (
            f"{n.state}, quiet: all its alerts ended; resolved after the quiet period unless one fires again"
            + _cycling(n)
        )
    return n.state + _cycling(n)


def _cycling(n: Notification) -> str:
    """How often a folded change's incident cycled ("; cycling: fired again 7 times, quiet 7 times in the
    last hour, repeats shown here, no reply each"); empty for any other change."""
    fold = n.folded
    if fold is None:
        return ""
    counts = [
        f"{verb} {counted(count, 'time')}"
        for verb, count in (("fired again", fold.fired_again), ("quiet", fold.went_quiet))
        if count
    ]
    within = "hour" if fold.within_seconds == 3600 else _duration(fold.within_seconds)
    said = ", ".join(counts) or "repeating"
    return f"; cycling: {said} in the last {within}, repeats shown here, no reply each"


def _duration(seconds: float) -> str:
    """``40 s`` under a minute (not "0 min"), else ``4 min`` or ``1 h 35 min``, whole units cut down."""
    if seconds < 60:
        return f"{max(int(seconds), 0)} s"
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
        if n.resolved_at is not None:  # this opening's length: a reopened incident was resolved between
            took = f" after {_duration((n.resolved_at - (n.reopened_at or n.opened_at)).total_seconds())}"
        by = message.removeprefix("resolved ") if message.startswith("resolved by ") else ""
        text = f"{RESOLVED_EMOJI} *Resolved*{took}{f' {escape(by)}' if by else f': {escape(message)}'}"
    elif message.startswith(n.event_kind):  # "acknowledged by alice", "note by bob: ..."
        text = f"*{escape(n.event_kind)}*{escape(message.removeprefix(n.event_kind))}"
    elif said:
        text = escape(message)
    else:
        text = f"*{escape(kind)}*: {escape(message)}"
    by = _by(n, message)
    text += f" ({escape(by)})" if by else ""
    if n.also:
        lines = [f"• also: {escape(a)}" for a in n.also]
        text += "\n" + _listed(lines, "\n", SECTION_MAX - len(text) - 1)
    blocks: list[Block] = [
        {"type": "section", "text": _mrkdwn(text)},
        {
            "type": "context",
            "elements": [_mrkdwn(f"{_slack_date(n.event_at)} · {n.priority} · {escape(n.state)}")],
        },
    ]
    plain = message if said else f"{kind}: {message}"
    plain += f" ({by})" if by else ""
    plain += "".join(f"; also: {a}" for a in n.also)
    return SlackMessage(text=truncate(escape(plain), TEXT_MAX), blocks=blocks)


def _by(n: Notification, message: str) -> str:
    """``by <who>`` for a person's change whose message does not name them ("mitigating: draining node
    r07-n03"); empty when it does ("acknowledged by slack:alice") or no person made it."""
    if not n.event_by or f"by {n.event_by}" in message:
        return ""
    return f"by {n.event_by}"


def minimal_reply(n: Notification) -> SlackMessage:
    """A timeline event as plain escaped text, for when Slack refused its blocks."""
    text = truncate(escape(n.event_message), TEXT_MAX)
    return SlackMessage(text=text, blocks=[{"type": "section", "text": _mrkdwn(text)}])


_WORD = re.compile(r"[a-z]+")
