"""Silences and maintenance windows: matchers over a time range, and silenced incidents."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from alerting.matchers import Matcher, all_match


class SilenceKind(enum.StrEnum):
    """A silence is ad hoc; a maintenance window is planned work on targets."""

    SILENCE = "silence"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes matching alerts between ``starts_at`` and ``ends_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str = ""
    kind: SilenceKind = SilenceKind.SILENCE
    incident_id: str | None = None

    def state(self, now: datetime) -> str:
        """Alertmanager's silence state: pending, active or expired."""
        if now < self.starts_at:
            return "pending"
        if now >= self.ends_at:
            return "expired"
        return "active"

    def mutes(self, labels: Mapping[str, str], now: datetime, incident_id: str | None = None) -> bool:
        """Whether this silence mutes an alert with these labels now."""
        if self.state(now) != "active":
            return False
        if self.incident_id is not None:
            return incident_id == self.incident_id
        return bool(self.matchers) and all_match(self.matchers, labels)


def muting_silence(
    silences: Sequence[Silence], labels: Mapping[str, str], now: datetime, incident_id: str | None = None
) -> Silence | None:
    """The first active silence or maintenance window muting the alert, if any."""
    for silence in silences:
        if silence.mutes(labels, now, incident_id):
            return silence
    return None
