"""A postmortem draft in Markdown: summary, impact, root cause, timeline, actions, MTTD and MTTR."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from alerting.reminders import TAKEN_UP, held_reopening
from alerting.topology import target_label
from gpuwarden.clock import shown
from gpuwarden.model import (
    Impact,
    Incident,
    Priority,
    TimelineEvent,
    WorkloadRef,
    fault_name,
    impact_text,
    percent,
)
from gpuwarden.printable import escape_controls

_COLLAPSE = frozenset({"alert_added", "alert_firing", "alert_resolved"})
RECOVERED_FROM_ENDS_AT = "last alert's endsAt"
RECOVERED_FROM_QUIET = "all its alerts seen resolved"


def _duration(delta: timedelta | None) -> str:
    if delta is None:
        return "n/a (not resolved)"
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _between(start: datetime, end: datetime) -> timedelta:
    """From ``start`` to ``end`` as the draft shows both, to the second (``shown``): a figure is the
    difference of the two times it prints, not a second less where their fractions say so (a first onset
    at 16:00:00.9 and an opening at 16:00:31.2 are 31 s apart as shown, not 30)."""
    return end.replace(microsecond=0) - start.replace(microsecond=0)


# Markdown's inline syntax (emphasis, code, links, images, strikethrough, tables, a heading's closing #s) is
# escaped with a backslash; HTML's three characters become entities, so no tag or entity of a label is live.
_MARKDOWN = str.maketrans({**{c: f"\\{c}" for c in "\\`*_[]!|~#"}, "<": "&lt;", ">": "&gt;", "&": "&amp;"})


def _md(text: object) -> str:
    """Text from labels, names or people as literal Markdown on one line: its control characters escaped
    (a newline cannot start a heading or a list), then Markdown's and HTML's special characters."""
    return escape_controls(str(text)).translate(_MARKDOWN)


def _timeline(events: Sequence[TimelineEvent]) -> list[str]:
    """One line per event; runs of alert events in the same second collapse into one line."""
    lines: list[str] = []
    i = 0
    while i < len(events):
        event = events[i]
        j = i + 1
        if event.kind in _COLLAPSE:
            while j < len(events) and events[j].kind == event.kind and events[j].at == event.at:
                j += 1
        if j - i > 1:
            lines.append(
                f"- {shown(event.at)} — {j - i} alerts {event.kind.removeprefix('alert_')} "
                f"(first: {_md(event.message)})"
            )
        else:
            lines.extend(_item(f"{shown(event.at)} — ", event.message))
        i = j
    return lines


def _item(prefix: str, message: str) -> list[str]:
    """A timeline bullet; a message of several lines (a person's note) goes into a code block inside the
    item, fenced longer than any run of backticks in it, so its Markdown cannot end the list, open a fence
    that swallows the rest of the document, or add headings."""
    first, _, rest = message.partition("\n")
    if not rest:
        return [f"- {prefix}{_md(message)}"]
    longest = max((len(run) for run in re.findall(r"`+", rest)), default=0)
    fence = "`" * max(3, longest + 1)
    return [
        f"- {prefix}{_md(first)}",
        f"  {fence}text",
        *(f"  {line}" for line in rest.split("\n")),
        f"  {fence}",
    ]


def peak_priority(incident: Incident) -> tuple[Priority, str]:
    """The most urgent priority the incident ever had, and why (priority falls as an incident recovers)."""
    peak, reason = incident.priority, ""
    for event in incident.timeline:
        raw = str(event.data.get("to")) if event.kind == "priority" else ""
        if raw in Priority.__members__ and Priority(raw).rank < peak.rank:
            peak, reason = Priority(raw), str(event.data.get("reason", ""))
    return peak, reason


TAKEN = frozenset({"remediation_approved", "mitigating", "action"})
"""Timeline kinds of the actions taken on an incident's fault: an approved remediation, a mitigation, an
action's outcome (``incidents mitigate --action``, Approve remediation, the runbook executor)."""

_HANDLED = TAKEN | {"acknowledged", "silenced"}


def taken(incident: Incident) -> list[TimelineEvent]:
    """The actions taken on the incident's fault, oldest first (Slack's and webhooks' "Actions taken")."""
    return [e for e in incident.timeline if e.kind in TAKEN]


def action_text(event: TimelineEvent) -> str:
    """How an action reads in a list: its message and who took it, when the message does not say."""
    by = str(event.data.get("by", ""))
    return f"{event.message} (by {by})" if by and by not in event.message else event.message


def fault_events(
    first_onset: datetime, recovered_at: datetime | None, recovered_from: str = RECOVERED_FROM_ENDS_AT
) -> list[TimelineEvent]:
    """The fault's own times as timeline entries: when it began and, once known, when it ended (the times
    the Metrics section measures from; the alert entries of the timeline are when gpuwarden received them)."""
    events = [TimelineEvent(first_onset, "fault_began", "fault began (first alert's onset)")]
    if recovered_at is not None:
        events.append(TimelineEvent(recovered_at, "fault_ended", f"fault ended ({recovered_from})"))
    return events


def with_fault_events(events: Sequence[TimelineEvent], fault: Sequence[TimelineEvent]) -> list[TimelineEvent]:
    """``events`` with the fault's entries in time order; at the same time the fault's come first (a fault
    began before the alert about it arrived, and ended before its resolve arrived)."""
    return sorted([*fault, *events], key=lambda e: e.at)


ONSET_ANNOTATION = "onset"
"""An alert's annotation that says when its fault began, where the source knows it before ``startsAt``
(the anomaly presence detector's ``NodeDown``: the node's last sample, 90 s before it could raise it)."""


def alert_onset(starts: datetime, annotations: Mapping[str, str]) -> datetime:
    """When the fault of an alert that started at ``starts`` began: its ``onset`` annotation where that is
    an RFC 3339 time with a timezone no later than ``starts``, else ``starts``. Annotations are free text:
    any other value of ``onset`` (a rule's own use of the name) is not a time of ours and changes nothing."""
    try:
        onset = datetime.fromisoformat(annotations.get(ONSET_ANNOTATION, ""))
    except ValueError:
        return starts
    if onset.tzinfo is None or onset > starts:
        return starts
    return onset


def render_postmortem(
    incident: Incident,
    first_onset: datetime,
    alert_names: Sequence[str],
    recovered_at: datetime | None,
    recovered_from: str = RECOVERED_FROM_ENDS_AT,
    *,
    peak_impact: tuple[Priority, Impact] | None = None,
    cluster: str = "",
    absorbed: Sequence[TimelineEvent] = (),
) -> str:
    """Markdown postmortem draft of one incident.

    ``first_onset``: the earliest onset the incident ever saw (``alert_onset``; reopens included);
    ``recovered_at``: when the fault ended (its last alert resolved), None while the incident is open or
    once it was merged into another; ``recovered_from``: where that time comes from. MTTR runs to
    ``recovered_at``, not to the incident's resolve a quiet period later. The timeline shows both times
    too, among the events.
    ``peak_impact``: the worst impact it had and its priority (``store.peak_impact``), shown beside the final
    one when they differ. ``cluster``: the root cause's, named in a fleet of more than one
    (``titles.root_cluster``). ``absorbed``: what people did on incidents merged into this one, before they
    merged (``ABSORBED_KINDS``, ``data["incident"]`` naming each one's): their acks count as its own, and they
    are its actions."""
    peak, peak_reason = peak_priority(incident)
    priority = f"**{incident.priority.value}**"
    if peak != incident.priority:
        priority = f"**{peak.value}** at its worst ({_md(peak_reason)}); {incident.priority.value} at the end"
    # Marked mitigating (or a remediation approved) is taken up as an ack is: serve refuses an ack after it
    # ("already mitigating"), so counting "acknowledged" alone said "not acknowledged" of a handled incident.
    # What was done on incidents merged into this one counts as its own (``absorbed``).
    handled = sorted([*incident.timeline, *absorbed], key=lambda e: e.at)
    acks = _acknowledgements(incident, handled)
    mttd = _between(first_onset, incident.opened_at)
    if recovered_at is not None:
        recovered = (
            f"{shown(recovered_at)} (its last alert resolved; the quiet period after it is not counted)"
        )
        mttr = _duration(_between(first_onset, recovered_at))
    elif incident.resolved_at is None:
        recovered, mttr = "not yet", _duration(None)
    else:
        recovered = mttr = "n/a (merged into another incident)"
    # An alert posted without an alertname (or an empty one) is "alert", as its incident's title calls it: the
    # evidence read "(, GpuLost)" and "1 alert (none)".
    names = sorted({name or "alert" for name in alert_names})
    moved = f", moved into {incident.merged_into}" if incident.merged_into else ""  # its fault goes on there
    root = incident.root_cause.target
    seen = incident.impact.namespaced | (peak_impact[1].namespaced if peak_impact else frozenset())
    out = [
        f"# Postmortem draft: {_md(incident.title)}",
        "",
        f"- Incident: `{incident.id}`",
        f"- Priority: {priority}",
        f"- State: {incident.state.value}",
        f"- Opened: {shown(incident.opened_at)}",
        f"- Resolved: {shown(incident.resolved_at) if incident.resolved_at else 'not yet'}",
        "",
        "## Impact",
        "",
        *_impact(incident.impact, incident.priority, peak_impact),
    ]
    out += [
        "",
        "## Root cause",
        "",
        f"- {_md(fault_name(incident.root_cause.kind))}"
        f" on {_md(target_label(root, namespaced=root in seen, cluster=cluster))}",
        f"- Evidence: {_alerts(len(incident.alert_fingerprints))}{moved}"
        f" ({', '.join(map(_md, names)) or 'none'})",
        "",
        "## Metrics",
        "",
        f"- First onset: {shown(first_onset)} (the earliest startsAt of its alerts, or the"
        " earlier onset one gave, reopens included)",
        f"- Recovered: {recovered}",
        f"- MTTD (first onset to incident opened): {_duration(mttd)}",
        *acks,
        f"- MTTR (first onset to recovery): {mttr}",
        "",
        "## Actions",
        "",
    ]
    actions = [
        e
        for e in handled
        # An ack a merge carried over (``merging._carry_take_up``) is listed as the one on the incident merged
        # in; it takes up a reopening of this one that came between the two.
        if (e.kind in _HANDLED and "carried_from" not in e.data) or (e.kind == "resolved" and "by" in e.data)
    ]
    out += [f"- {shown(e.at)} — {_md(action_text(e))}{_on_absorbed(e)}" for e in actions] or [
        "- none recorded"
    ]
    out += [
        f"- {_md(r.request.action)} on {_md(r.request.target)}: {r.outcome.value} {_md(r.message)}"
        for r in incident.actions
    ]
    timeline = with_fault_events(incident.timeline, fault_events(first_onset, recovered_at, recovered_from))
    out += [
        "",
        "## Timeline",
        "",
        "Alert entries are when gpuwarden received them; the fault's own times come from the alerts' startsAt"
        " and endsAt.",
        "",
        *_timeline(timeline),
        "",
        "## Follow-ups",
        "",
        "None recorded yet: add each as `- [ ] what, who`.",
        "",
    ]
    return "\n".join(out)


def _acknowledgements(incident: Incident, handled: Sequence[TimelineEvent]) -> list[str]:
    """The Metrics lines of time to acknowledge: one for the opening and one for each reopening that paged
    (not one held as cycling or a flap's, which paged nobody): each page needs its own ack, as a
    re-triggered PagerDuty incident does, so an ack of an earlier opening does not count for a later one.
    Each runs to the first take-up (``handled``, oldest first) after its page and before the next."""
    pages = [incident.opened_at] + [
        e.at for e in incident.timeline if e.kind == "reopened" and not held_reopening(e.data)
    ]
    lines = []
    for i, page in enumerate(pages):
        until = pages[i + 1] if i + 1 < len(pages) else None
        ack = next(
            (
                e
                for e in handled
                if e.kind in TAKEN_UP and (i == 0 or e.at >= page) and (until is None or e.at < until)
            ),
            None,
        )
        label = "Time to acknowledge" if i == 0 else f"Time to acknowledge, reopened {shown(page)}"
        lines.append(f"- {label}: {_acknowledged(ack, page)}")
    return lines


def _acknowledged(first: TimelineEvent | None, opened_at: datetime) -> str:
    """Time to acknowledge: to the first event that took the incident up, named where it was no ack. One on an
    incident merged into this one may precede this one's opening: the fault was taken up before it opened."""
    if first is None:
        return "not acknowledged"
    taken_by = "" if first.kind == "acknowledged" else f", when {_md(action_text(first))}"
    return f"{_duration(max(_between(opened_at, first.at), timedelta(0)))}{taken_by}"


ABSORBED_KINDS = TAKEN | {"acknowledged"}
"""Timeline kinds of an incident merged into another that the other's postmortem counts as its own actions."""


def _on_absorbed(event: TimelineEvent) -> str:
    """Where an action taken on an incident merged into this one was taken; empty for this one's own."""
    absorbed_from = event.data.get("incident")
    return f" (on {_md(absorbed_from)}, merged in since)" if absorbed_from else ""


def _impact(final: Impact, priority: Priority, peak: tuple[Priority, Impact] | None) -> list[str]:
    """The Impact section's lines: the worst impact, with the final one beside it where it differs."""
    worst = peak[1] if peak is not None else final

    def both(text: Callable[[Impact], str]) -> str:
        return (
            text(worst)
            if text(worst) == text(final)
            else f"{text(worst)} at its worst, {text(final)} at the end"
        )

    def summary(impact: Impact) -> str:
        return _md(impact_text(impact.summary, impact.gpus_affected) or "no workload impact known")

    if peak is None or summary(worst) == summary(final):
        lines = [f"- {summary(final)}"]
    else:
        lines = [
            f"- At its worst ({peak[0].value}): {summary(worst)}",
            f"- At the end ({priority.value}): {summary(final)}",
        ]
    workloads = dict.fromkeys([*worst.workloads, *final.workloads])
    lines += [
        f"- GPUs affected: {both(lambda i: str(i.gpus_affected))}; "
        f"nodes affected: {both(lambda i: str(i.nodes_affected))}",
        f"- Workloads: {', '.join(_md(_workload(w, worst, final)) for w in workloads) or 'none known'}",
        f"- Largest share of a workload affected: {both(lambda i: percent(i.affected_share))}",
        f"- Spare capacity available: {both(lambda i: 'yes' if i.spare_capacity else 'no')}",
    ]
    if worst.slo_burn_rate or final.slo_burn_rate:
        lines.append(f"- SLO burn rate: {both(lambda i: f'{i.slo_burn_rate:g}x')}")
    if worst.error_ratio or final.error_ratio:
        lines.append(f"- Error ratio: {both(lambda i: percent(i.error_ratio))}")
    return lines


def _workload(ref: WorkloadRef, worst: Impact, final: Impact) -> str:
    """A workload as the title names it: ``namespace/name`` where another namespace shares its name."""
    return target_label(ref, namespaced=ref in worst.namespaced or ref in final.namespaced)


def _alerts(count: int) -> str:
    return "1 alert" if count == 1 else f"{count} alerts"
