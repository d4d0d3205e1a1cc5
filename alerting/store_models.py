"""Tables of the incident store: alerts, incidents, their timelines and silences (SQLAlchemy 2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from alerting.db import Base
from alerting.root_places import root_key


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Store UTC; refuse naive values so a local time never sneaks in."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Read back as an aware UTC datetime."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class AlertRow(Base):
    """The latest state of one alert, keyed by its Alertmanager fingerprint."""

    __tablename__ = "alerts"
    # The firing ones are read by status (Alertmanager's list, the rebuild), and by end (the tick): 0022.
    __table_args__ = (Index("ix_alerts_status_ends_at", "status", "ends_at"),)

    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    source: Mapped[str] = mapped_column(String(16))
    generator_url: Mapped[str] = mapped_column(Text, default="")
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    recommended_action: Mapped[str] = mapped_column(String(32), default="none")
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    receive_count: Mapped[int] = mapped_column(Integer, default=1)
    incident_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("incidents.id"), nullable=True, index=True
    )
    muted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    flapping: Mapped[bool] = mapped_column(Boolean, default=False)
    transitions: Mapped[list[float]] = mapped_column(JSON, default=list)
    # Its endsAt is the resolve timeout (last posted without one, ``Alert.timeout``): a later post's own
    # endsAt replaces it even when earlier (``spans.merged_ends``). Migration 0017.
    ends_by_timeout: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Never read (``raise``): declared so that a flush inserts an incident before the alerts that point to it.
    # The unit of work orders tables by relationships, otherwise by class name (AlertRow before IncidentRow,
    # IncidentRow before TimelineRow), and ingest flushes an incident it opens with them (``ingest_session``).
    incident: Mapped[IncidentRow | None] = relationship(lazy="raise")


class IncidentRow(Base):
    """One incident: root cause, priority, lifecycle state and impact."""

    __tablename__ = "incidents"
    # Retention and recurrence read resolved incidents by when they resolved (migration 0007); recurrence
    # those of a new fault's places by their root's place too (migration 0020). The list of one state reads
    # its newest first (``IncidentStore.list_rows``' order) by ``(state, last_opened_at, opened_at)`` (0021).
    __table_args__ = (
        Index("ix_incidents_state_resolved_at", "state", "resolved_at"),
        Index("ix_incidents_state_last_opened_at", "state", "last_opened_at", "opened_at"),
        Index(
            "ix_incidents_root_key_state_merged_into_resolved_at",
            "root_key",
            "state",
            "merged_into",
            "resolved_at",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(2))
    state: Mapped[str] = mapped_column(String(16), index=True)
    root_kind: Mapped[str] = mapped_column(String(32))
    root_target: Mapped[dict[str, Any]] = mapped_column(JSON)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_alert_at: Mapped[datetime] = mapped_column(UtcDateTime)
    first_onset_at: Mapped[datetime] = mapped_column(UtcDateTime)
    quiet_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    merged_into: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    impact: Mapped[dict[str, Any]] = mapped_column(JSON)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # When it last opened or reopened, which listings sort by: set on every incident (migration 0004 filled
    # it in for those stored before), nullable only because adding a NOT NULL column rewrites SQLite's table.
    last_opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    # What inventory refreshes left pending of its current opening (``OpenIncident.reassessment``), so that a
    # restart carries on with it; NULL: nothing (migration 0011).
    reassessment: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # When its opening was first handed to the listeners (the outbox), after the announce delay: its page,
    # which the reminders count from (``reminding.stored_pages``). NULL: not announced yet, or announced with
    # no listener; its ``opened_at``: stored before migration 0019. Both read as told at the end of its delay
    # (``reminders.announced_at``), as before; the latter is stored so once offered to the listeners again
    # (``announcing._settle_upgraded``).
    announced_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The digest of its root's place (``alerting.root_places``), set with ``root_target`` (``_keyed``): the
    # recurrence of resolved incidents looks a new fault's node up by it. NULL: a root with no place (a
    # workload). Migration 0020 computed it for the rows stored before.
    root_key: Mapped[str | None] = mapped_column(String(32), nullable=True)

    @validates("root_target")
    def _keyed(self, _name: str, target: dict[str, Any]) -> dict[str, Any]:
        """Every root set through the ORM (the row made, a root moved) sets its key with it."""
        self.root_key = root_key(target)
        return target


class TimelineRow(Base):
    """One event on an incident's timeline, in insertion order."""

    __tablename__ = "timeline"
    __table_args__ = (Index("ix_timeline_incident_seq", "incident_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(40), ForeignKey("incidents.id"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class SilenceRow(Base):
    """A silence or maintenance window: matchers plus a time range (or a silenced incident)."""

    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="silence")
    matchers: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    starts_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ends_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text, default="")
    # Indexed (migration 0018): the reminders read the silences of the incidents due by it.
    incident_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    # The order silences were created or last updated in: of those matching an alert, the first set mutes it
    # (``muted_by``). NULL on rows stored before migration 0012.
    seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When it was set, last updated in place or expired (Alertmanager's ``updatedAt``). NULL on rows stored
    # before migration 0014, which report their ``starts_at``.
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class JournalOffsetRow(Base):
    """How far the store has applied one accept journal (committed with the alerts it applied)."""

    __tablename__ = "ingest_journal"

    journal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    applied_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)


class UntoldChangeRow(Base):
    """A committed incident change not told to listeners (the outbox) yet; see ``alerting.handoff``."""

    __tablename__ = "untold_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(40))
    change: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # its timeline event's time and kind
    event_kind: Mapped[str] = mapped_column(String(32))
    # Its timeline row (``TimelineRow.seq``): one transaction may write several events of one kind at one
    # time. NULL on rows stored before migration 0010.
    event_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # What its transaction decided listeners are told with it (``handoff.Telling``), stored so that it is
    # told alike after a restart: it merged the incident away (its page is held), and what else it did to
    # the incident that no change tells. NULL on rows stored before migration 0015: nothing.
    merging: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    also: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # A repeat of its incident's cycle (``flapping.Folded`` as a dict): told in place, replied to nobody.
    # NULL when it is not one, and on rows stored before migration 0016.
    folded: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)


class SlackRequestRow(Base):
    """A signed Slack request already handled (its signature), kept while a replay of it could verify."""

    __tablename__ = "slack_requests"

    signature: Mapped[str] = mapped_column(String(80), primary_key=True)  # "v0=" and 64 hex digits
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)  # X-Slack-Request-Timestamp
    handled_at: Mapped[datetime] = mapped_column(UtcDateTime)


class KeptJobRow(Base):
    """A Slurm job that stopped abnormally and is kept a while with the GPUs it last held (see
    ``alerting.kept_jobs``): Slurm no longer says where a requeued job ran."""

    __tablename__ = "kept_jobs"

    cluster: Mapped[str] = mapped_column(String(200), primary_key=True)  # Slurm's ClusterName
    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    since: Mapped[float] = mapped_column(Float)  # when it stopped (Unix time): kept keep_ended_seconds on
    workload: Mapped[dict[str, Any]] = mapped_column(JSON)  # as an inventory file lists it


class KeptInventoryRow(Base):
    """What an inventory reader keeps of its source past that source's own view (see
    ``alerting.kept_inventory``): the place of a node gone from it while work it stopped is kept, a
    Kubernetes pod lost with its node."""

    __tablename__ = "kept_inventory"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)  # slurm, kubernetes
    cluster: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # node, pod, listed, ran (a Slurm job)
    name: Mapped[str] = mapped_column(String(600), primary_key=True)  # a node's; a pod's namespace/name/uid
    since: Mapped[float] = mapped_column(Float)  # when it was kept (Unix time)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
