"""The notifier seam: what a notification carries, the ``Notifier`` protocol and the notifier registry.

A ``Notification`` is a self-contained, JSON-serialisable snapshot of an incident taken when a change was
committed, so the outbox can store it and a notifier can render it later, after a restart or an outage,
exactly as it was. Per-incident delivery state (Slack's channel and message ``ts``) is a ``ThreadState``
that the outbox persists; a notifier reports progress through a ``ThreadSaver`` so that a crash between
two Slack calls never forgets a message that already exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from alerting.flapping import Folded
from alerting.postmortem import action_text, taken
from alerting.reminders import FIRST_TOLD, PRIORITY_MOVES, REMINDER, SILENCE_ENDED, held_reopening, rose
from alerting.subscriptions import REASSESSED, ChangeKind, IncidentChange
from gpuwarden.errors import ConfigError
from gpuwarden.model import (
    ActionResult,
    ClusterRef,
    FaultKind,
    GpuRef,
    Incident,
    IncidentState,
    NodeRef,
    RackRef,
    Target,
    TimelineEvent,
    WorkloadRef,
)


class ChartSeries(BaseModel):
    """One time series to draw: the anomalous metric, with an optional expected band."""

    model_config = ConfigDict(frozen=True)

    name: str
    times: tuple[datetime, ...]
    values: tuple[float, ...]
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    unit: str = ""


class Notification(BaseModel):
    """An incident as it was right after one committed change, ready to render for any channel."""

    model_config = ConfigDict(frozen=True)

    key: str
    change: ChangeKind
    incident_id: str
    title: str
    priority: str
    state: str
    root_cause_kind: str
    root_cause_target: str
    root_cause_fields: dict[str, str] = {}
    root_cause_cluster: str = ""  # named only in a fleet of more than one cluster (``IncidentChange``)
    impact_summary: str = ""
    impact_parts: tuple[str, ...] = ()  # the summary's items, whole (a name may hold ", ")
    affected_targets: tuple[str, ...] = ()
    gpus_affected: int = 0
    nodes_affected: int = 0
    # The requests its service(s) answer with errors, as a fraction, and its SLO burn rate: what an incident
    # that took no capacity (a service answering errors) says for its impact.
    error_ratio: float = 0.0
    slo_burn_rate: float = 0.0
    runbook_url: str = ""
    actions_taken: tuple[str, ...] = ()
    recommended_actions: tuple[str, ...] = ()
    opened_at: datetime
    reopened_at: datetime | None = None  # its latest reopening, if it ever reopened
    resolved_at: datetime | None = None
    event_at: datetime
    event_kind: str
    event_message: str
    event_by: str = ""  # who made the change, when a person did (its event's ``by``)
    # What the change's transaction did besides, that no change of its own tells (``IncidentChange.also``).
    also: tuple[str, ...] = ()
    series: tuple[ChartSeries, ...] = ()
    escalated: bool = False  # a priority change to a more urgent priority
    # Set while the incident is silenced: page nobody (no new message, reply, broadcast or POST for it).
    silenced_until: datetime | None = None
    flapping: tuple[str, ...] = ()  # the names of its flapping alerts (it is held open, no page per flap)
    # Every alert of the open incident ended: it waits for its quiet period (resolved then unless one fires
    # again). Read from its timeline as of the change, so told alike after a restart.
    quiet: bool = False
    # Told, but pages nobody: a reopening by the flap that made its alert flapping or that repeats the
    # incident's resolve / reopen cycle, the resolution of such an opening (nobody was paged for it, so
    # ``slack.broadcast_resolutions`` does not broadcast its end), a change made by the transaction that
    # merged the incident into another (``IncidentChange.merging``: that one pages), or the resolution that
    # merged it away (its fault goes on in the other incident: not broadcast as ended).
    held: bool = False
    # A reopening that would be held but pages as a reminder (``alerting.reminders``), or the tick's reminder
    # of an incident firing steadily (``alerting.reminding``): how many seconds ago the incident last paged;
    # None for any other change.
    reminder: float | None = None
    # A repeat of the incident's cycle (``IncidentChange.folded``): what shows the incident is edited in
    # place, saying how often it cycled; no new reply.
    folded: Folded | None = None
    # The end of a silence that held the incident's opening (set within the announce delay): the first the
    # channel hears of it, Slack's new message there (``reminders.FIRST_TOLD``).
    first_told: bool = False

    @property
    def root_cause_shown(self) -> str:
        """The root cause's target as people read it: ``rack/r07@b`` where the cluster is named, as a
        workload's target always says it."""
        cluster = self.root_cause_cluster
        if not cluster or self.root_cause_target.endswith(f"@{cluster}"):
            return self.root_cause_target
        return f"{self.root_cause_target}@{cluster}"

    @property
    def edit_only(self) -> bool:
        """Whether the change is shown by editing what shows the incident alone, with no reply: a change of
        what it shows that no other event tells (``subscriptions.REASSESSED``: what its alerts recommend,
        its impact), which may come at every scrape; the outbox sends only the latest of those waiting."""
        return self.event_kind == REASSESSED

    @property
    def is_resolution(self) -> bool:
        """Whether this change resolved the incident."""
        return self.change is ChangeKind.RESOLVED

    @property
    def needs_attention(self) -> bool:
        """Whether people must see this change arrive, not only the incident's message change in place: a
        reopening (that message may be far up the channel), an escalation or a reminder, unless it is
        ``held``."""
        reminds = self.reminder is not None
        return (self.change is ChangeKind.REOPENED or self.escalated or reminds) and not self.held

    @property
    def pages(self) -> bool:
        """Whether the change pages anyone: its ``needs_attention``, or an opening (Slack's new message in
        the channel) unless ``held`` (its own transaction merged it into another, which pages), or the end
        of a silence that held the opening (``first_told``: Slack's first message of it then)."""
        opening = self.change is ChangeKind.OPENED and not self.held
        return self.needs_attention or opening or self.first_told


def target_fields(target: Target) -> dict[str, str]:
    """A target's non-empty identifying fields: ``node``, ``gpu``, ``uuid``, ``rack``, ``cluster``, ..."""
    fields: dict[str, str] = {}
    if isinstance(target, GpuRef):
        fields = {"node": target.node, "gpu": str(target.index), "uuid": target.uuid}
    elif isinstance(target, NodeRef):
        fields = {"node": target.name, "cluster": target.cluster, "rack": target.rack}
    elif isinstance(target, RackRef):
        fields = {"rack": target.name, "cluster": target.cluster}
    elif isinstance(target, ClusterRef):
        fields = {"cluster": target.name}
    elif isinstance(target, WorkloadRef):
        fields = {
            "namespace": target.namespace,
            "name": target.name,
            "kind": target.kind.value,
            "cluster": target.cluster,
        }
    return {k: v for k, v in fields.items() if v}


def idempotency_key(change: IncidentChange) -> str:
    """A stable key for one event of one incident: the same change enqueued twice gets the same key, and
    events alike in time, kind and message get one each (``IncidentChange.repeat``). The first of those
    keeps the key of the releases before it: a change they enqueued, told again after the upgrade, is
    stored once."""
    event = change.event
    parts = [change.incident.id, change.kind.value, event.at.isoformat(), event.kind, event.message]
    if change.repeat:
        parts.append(f"repeat {change.repeat}")
    raw = "\x1f".join(parts)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def describe_action(result: ActionResult) -> str:
    """One line per remediation action: what, where, how it ended."""
    line = f"{result.request.action} {result.request.target}: {result.outcome.value}"
    return f"{line} ({result.message})" if result.message else line


RunbookLinker = Callable[[Incident], str]


def runbook_linker(base_url: str | None) -> RunbookLinker:
    """Link each fault kind to ``<base_url>/<fault_kind>.yaml`` (``slack.runbook_base_url``); without a base
    URL there is no link: no runbook ships with gpuwarden yet, and a path to one would point at nothing. A
    fault of no known kind has none either: ``unknown.yaml`` is a runbook for no failure class."""

    def link(incident: Incident) -> str:
        if not base_url or incident.root_cause.kind is FaultKind.UNKNOWN:
            return ""
        return f"{base_url.rstrip('/')}/{incident.root_cause.kind.value}.yaml"

    return link


def build_notification(
    change: IncidentChange,
    *,
    runbook: RunbookLinker | None = None,
    series: Iterable[ChartSeries] = (),
) -> Notification:
    """Snapshot an incident change into a ``Notification``."""
    incident = change.incident
    link = runbook or runbook_linker(None)
    impact = incident.impact
    affected = [str(incident.root_cause.target)]
    affected.extend(str(w) for w in impact.workloads if str(w) not in affected)
    return Notification(
        key=idempotency_key(change),
        change=change.kind,
        incident_id=incident.id,
        title=incident.title,
        priority=incident.priority.value,
        state=incident.state.value,
        root_cause_kind=incident.root_cause.kind.value,
        root_cause_target=str(incident.root_cause.target),
        root_cause_fields=target_fields(incident.root_cause.target),
        root_cause_cluster=change.root_cluster,
        impact_summary=impact.summary,
        impact_parts=impact.parts,
        affected_targets=tuple(affected),
        gpus_affected=impact.gpus_affected,
        nodes_affected=impact.nodes_affected,
        error_ratio=impact.error_ratio,
        slo_burn_rate=impact.slo_burn_rate,
        runbook_url=link(incident),
        actions_taken=(
            *(action_text(e) for e in taken(incident)),
            *(describe_action(a) for a in incident.actions),
        ),
        recommended_actions=change.recommended,
        opened_at=incident.opened_at,
        reopened_at=_reopened_at(incident),
        resolved_at=incident.resolved_at,
        event_at=change.event.at,
        event_kind=change.event.kind,
        event_message=change.event.message,
        event_by=_by(change.event.data.get("by")),
        also=change.also,
        series=tuple(series),
        escalated=_escalated(change),
        silenced_until=change.silenced_until,
        flapping=change.flapping,
        quiet=_quiet(incident),
        held=change.merging
        or (change.kind is ChangeKind.REOPENED and held_reopening(change.event.data))
        or (change.kind is ChangeKind.RESOLVED and _ends_held_opening(incident.timeline))
        or _merged_away(change),
        folded=change.folded,
        reminder=_reminder(change),
        first_told=change.event.kind == SILENCE_ENDED and bool(change.event.data.get(FIRST_TOLD)),
    )


def _merged_away(change: IncidentChange) -> bool:
    """Whether the change resolved the incident by merging it into another: its fault goes on, told in the
    other incident's thread, so this "resolved" is for its own thread only (never broadcast: the channel
    would hear the fault ended while it is still being handled)."""
    return (
        change.kind is ChangeKind.RESOLVED and change.event.kind == "merged" and "into" in change.event.data
    )


def _reminder(change: IncidentChange) -> float | None:
    """How long ago the incident last paged, when its reopening pages as a reminder, or the tick reminds of it
    (its event says so)."""
    reminds = change.kind is ChangeKind.REOPENED or change.event.kind == REMINDER
    value = change.event.data.get("reminder") if reminds else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ends_held_opening(timeline: Sequence[TimelineEvent]) -> bool:
    """Whether a resolution ends an opening that paged nobody: the incident's latest opening is a held
    reopening (``held_reopening``) and its priority has not risen since (an escalation pages). Read from
    its timeline as of the change, so told alike after a restart."""
    start = next((k for k in range(len(timeline) - 1, -1, -1) if timeline[k].kind in _OPENINGS), None)
    if start is None or timeline[start].kind != "reopened" or not held_reopening(timeline[start].data):
        return False
    return not any(rose(e.data) for e in timeline[start + 1 :] if e.kind in PRIORITY_MOVES)


_OPENINGS = frozenset({"opened", "reopened"})


def _by(value: object) -> str:
    """Who made a change, as its event's data names them; empty when no one (the engine) did."""
    return value if isinstance(value, str) else ""


# Timeline kinds after which the incident fires (or, for "quiet", no longer does): see ``_quiet``.
_QUIET_OR_FIRING = frozenset(
    {"quiet", "opened", "reopened", "alert_added", "alert_firing", "flapping_started"}
)


def _quiet(incident: Incident) -> bool:
    """Whether every alert of the open incident has ended since one last fired (its latest "quiet" event
    comes after its latest opening, alert joining or firing again)."""
    if incident.state is IncidentState.RESOLVED:
        return False
    last = next((e for e in reversed(incident.timeline) if e.kind in _QUIET_OR_FIRING), None)
    return last is not None and last.kind == "quiet"


def _reopened_at(incident: Incident) -> datetime | None:
    """When the incident last reopened; None when it never did."""
    last = incident.last_opened_at
    return last if last is not None and last > incident.opened_at else None


def _escalated(change: IncidentChange) -> bool:
    """A priority change whose timeline event says it went to a more urgent priority (P0 is the most)."""
    if change.kind is not ChangeKind.PRIORITY_CHANGED:
        return False
    return rose(change.event.data)


@dataclass(frozen=True, slots=True)
class ThreadState:
    """Where a notifier keeps an incident's conversation: Slack's channel id and parent message ``ts``."""

    channel: str | None = None
    ts: str | None = None
    chart_posted: bool = False
    # The idempotency key of the notification the parent message was posted for: the message shows that
    # change already, so delivering it edits nothing, after a restart too (Slack posts an incident's first
    # message alone, before the storm's replies, and delivers the rest of its notification later). None: not
    # known. Later edits leave it: the message then shows a later change, whose key is another. What the
    # message shows, not where the thread is: left out of equality.
    posted_for: str | None = field(default=None, compare=False)

    def with_message(self, channel: str, ts: str, posted_for: str | None = None) -> ThreadState:
        """The state after the parent message was posted (for notification ``posted_for``, when known)."""
        return replace(self, channel=channel, ts=ts, posted_for=posted_for)


ThreadSaver = Callable[[ThreadState], None]
"""Persists a notifier's progress at once (its own transaction), before the next remote call."""


class Notifier(Protocol):
    """Delivers notifications to one destination. Raises ``BackendError`` (with ``retryable``) on failure.

    A notification with ``silenced_until`` set belongs to a silenced incident: like a silenced alert in
    Alertmanager it must reach nobody; at most it refreshes in place what already shows the incident.
    """

    @property
    def name(self) -> str:
        """Unique name of this destination, e.g. ``slack`` or ``webhook:oncall``."""
        ...

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool | None:
        """Deliver; ``retry`` is true when an earlier attempt may have reached the far end. False when the
        notifier chose to send nothing for this change (a silenced incident's, held back); True or None:
        delivered."""
        ...


@runtime_checkable
class SelectiveNotifier(Notifier, Protocol):
    """A notifier that is sent only the changes it wants (a webhook's ``events`` and ``priorities``)."""

    def wants(self, notification: Notification, *, known: bool) -> bool:
        """Whether to queue this change for it; ``known``: a change of the incident was queued for it
        before (it then hears of the incident to the end)."""
        ...


@runtime_checkable
class EditHoldingNotifier(Notifier, Protocol):
    """A notifier to which an ``edit_only`` change is a message of its own (a webhook's POST), not an edit of
    the one that shows the incident (Slack's): the outbox holds such a change ``edit_interval_seconds``
    and sends the latest of those held by then (``Outbox.enqueue``)."""

    @property
    def edit_interval_seconds(self) -> float:
        """How long an edit waits for the next; 0: each is sent at once."""
        ...


@runtime_checkable
class ThreadOpeningNotifier(Notifier, Protocol):
    """A notifier that shows an incident as one message with its timeline as replies under it (Slack's
    thread): the outbox has it post every waiting incident's first message (``open_thread``) before the
    other messages, so on a rate-limited channel a new incident is not paged after the timelines of all
    those before it (``alerting.outbox_plan``)."""

    def open_thread(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        """Post only the incident's message where delivering ``notification`` would post it, saved by
        ``save``; ``deliver`` is called for the rest after. False when it has none to post (``deliver``
        does all); ``retry`` as for ``deliver``."""
        ...


NotifierFactory = Callable[..., Notifier]


class NotifierRegistry:
    """Notifier kinds by name: the built-ins listed explicitly, third parties via entry points."""

    ENTRY_POINT_GROUP = "gpuwarden.notifiers"

    def __init__(self, factories: Mapping[str, NotifierFactory] | None = None) -> None:
        self._factories: dict[str, NotifierFactory] = {}
        for kind, factory in (factories or {}).items():
            self.register(kind, factory)

    def register(self, kind: str, factory: NotifierFactory) -> None:
        """Add a notifier kind; a duplicate name is an error."""
        if kind in self._factories:
            raise ConfigError(f"notifier kind {kind!r} is registered twice", field="notifiers")
        self._factories[kind] = factory

    def load_entry_points(self) -> None:
        """Register third-party notifier kinds from the ``gpuwarden.notifiers`` entry-point group."""
        for ep in entry_points(group=self.ENTRY_POINT_GROUP):
            self.register(ep.name, ep.load())

    def create(self, kind: str, **params: Any) -> Notifier:
        """Build a notifier of a registered kind."""
        try:
            factory = self._factories[kind]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise ConfigError(f"unknown notifier kind {kind!r}; known: {known}", field="notifiers") from None
        return factory(**params)

    def kinds(self) -> list[str]:
        """Registered kinds, sorted."""
        return sorted(self._factories)


def builtin_registry() -> NotifierRegistry:
    """A registry with the built-in notifiers, listed here in one visible place."""
    # Imported here: both modules import this one, and the types need neither slack-sdk nor httpx.
    from alerting.notifiers.slack import SlackNotifier  # noqa: PLC0415
    from alerting.notifiers.webhook import WebhookNotifier  # noqa: PLC0415

    return NotifierRegistry({"slack": SlackNotifier.from_config, "webhook": WebhookNotifier.from_config})
