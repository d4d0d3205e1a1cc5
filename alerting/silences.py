"""Silences and maintenance windows: matchers over a time range, and silenced incidents."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerting.inhibition import InhibitRule
from alerting.matchers import Matcher, all_match, mutes_everything, parse_matcher
from gpuwarden.config import AlertingConfig
from gpuwarden.durations import UNIT_SECONDS
from gpuwarden.errors import ConfigError, InputError

# Prometheus' duration syntax (amtool's): ASCII digits, each unit at most once, largest first ("1h1h" and
# "30m1h" are not durations; \d took other scripts' digits). Its "y" is 365 days, the largest unit; a silence
# lasts at most 366 days (a year, a leap day included), as a maintenance window may.
_UNITS = ("y", "w", "d", "h", "m", "s", "ms")  # Prometheus' order
_DURATION = re.compile("".join(f"(?:([0-9]+){unit})?" for unit in _UNITS))
MAX_DURATION_SECONDS = 366 * 86400.0
BUTTON_SILENCE_SECONDS = 3600.0  # the Slack button's silence: "Silence 1 h", "Extend silence 1 h"
EXTENDABLE = timedelta(seconds=BUTTON_SILENCE_SECONDS / 2)
"""Left of an incident's silence below which the button's press extends it (with at least half of the asked
hour left, a press is a repeat: ``lifecycle._holding``), so the message offers "Extend silence 1 h" then."""


def parse_duration(text: str, field: str = "duration") -> float:
    """Seconds in a Prometheus/amtool duration: ``90m``, ``1h30m``, ``2d``, ``1w``; positive."""
    parsed = _DURATION.fullmatch(text)
    if parsed is None or not text:
        raise InputError(f"{text!r} is not a duration like 30m, 1h or 1h30m", field=field)
    # float, not int: int() refuses more than 4300 digits (a ValueError), float() reads them as inf.
    seconds = sum(float(n) * UNIT_SECONDS[unit] for n, unit in zip(parsed.groups(), _UNITS, strict=True) if n)
    if seconds <= 0:
        raise InputError(f"{text!r} is not a positive duration", field=field)
    if seconds > MAX_DURATION_SECONDS:
        raise InputError(
            f"{text!r} is longer than 366 days (1y1d); expire and renew long silences", field=field
        )
    return seconds


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
    # A maintenance window of the configuration file: it lives in the config, not in the store. Not read
    # from ``created_by``: a window posted through the API may say "config" too.
    configured: bool = False
    # When it was set, last updated in place or expired; None where unknown (a window of the configuration
    # file, a silence stored before migration 0014): its start stands for it.
    updated_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """Alertmanager's silence state: pending, active or expired. One that had begun (or ended) when it was
        last set stays begun (or ended) though ``now`` is before that: the wall clock was set back since (an
        NTP correction, a VM restored), and a silence set a minute before a step back of ten was pending for
        those ten, its incident paged; an expired one muted again."""
        set_at = self.updated_at
        if now < self.starts_at and (set_at is None or self.starts_at > set_at):
            return "pending"
        if now >= self.ends_at or (set_at is not None and self.ends_at <= set_at):
            return "expired"
        return "active"

    def mutes(
        self,
        labels: Mapping[str, str],
        now: datetime,
        incident_id: str | None = None,
        placed: Callable[[], Mapping[str, str]] | None = None,
    ) -> bool:
        """Whether this silence mutes an alert with these labels now. A maintenance window matches the
        labels ``placed`` gives (the alert's, plus the cluster, rack and node the inventory places it in
        where it has none of its own): planned work on a rack mutes its nodes' alerts, which carry no
        ``rack`` label. A silence matches the labels alone, as Alertmanager's do."""
        if self.state(now) != "active":
            return False
        if self.incident_id is not None:
            return incident_id == self.incident_id
        if self.kind is SilenceKind.MAINTENANCE and placed is not None:
            labels = placed()
        return bool(self.matchers) and all_match(self.matchers, labels)


def muting_silence(
    silences: Sequence[Silence],
    labels: Mapping[str, str],
    now: datetime,
    incident_id: str | None = None,
    placed: Callable[[], Mapping[str, str]] | None = None,
) -> Silence | None:
    """The first active silence or maintenance window muting the alert, if any."""
    for silence in silences:
        if silence.mutes(labels, now, incident_id, placed):
            return silence
    return None


def incident_silenced_until(silences: Sequence[Silence], incident_id: str, now: datetime) -> datetime | None:
    """When the silences of this incident that are active now end (the last of them), or None if none is."""
    ends = [s.ends_at for s in silences if s.incident_id == incident_id and s.state(now) == "active"]
    return max(ends, default=None)


def configured_mutes(cfg: AlertingConfig) -> tuple[list[InhibitRule], list[Silence]]:
    """The inhibition rules and maintenance windows of the config, every matcher parsed.

    Raises ``ConfigError`` naming the field (``alerting.inhibit_rules[0].source_matchers[1]``), the other bad
    matchers in its ``more``, so bad matchers stop ``serve`` and ``config validate`` with each place to fix,
    not a traceback. Like a silence of the API, a maintenance window must have a matcher that does not match
    the empty string (one that matches every alert mutes the fleet), and so must an inhibition rule's
    sources (any alert would be a source); targets may match every alert ("while the node is down, mute
    everything on it").
    """

    problems: list[ConfigError] = []  # each bad matcher at its index, as a list's other problems are

    def parsed(texts: Sequence[str], where: str, what: str = "") -> tuple[Matcher, ...]:
        out = []
        for i, text in enumerate(texts):
            try:
                out.append(parse_matcher(text))
            except InputError as exc:
                problems.append(ConfigError(exc.message, field=f"alerting.{where}[{i}]"))
        # `rack="${RACK}"` with RACK unset: every alert matches (said once the list's matchers all parse)
        if what and len(out) == len(texts) and mutes_everything(out):
            problems.append(
                ConfigError(
                    "at least one matcher must not match the empty string: these match every alert, so"
                    f" {what}",
                    field=f"alerting.{where}",
                )
            )
        return tuple(out)

    rules = [
        InhibitRule(
            parsed(
                r.source_matchers,
                f"inhibit_rules[{k}].source_matchers",
                "any alert would inhibit the rule's targets",
            ),
            parsed(r.target_matchers, f"inhibit_rules[{k}].target_matchers"),
            tuple(r.equal),
            r.name,
        )
        for k, r in enumerate(cfg.inhibit_rules)
    ]
    windows = [
        Silence(
            id=f"maintenance-{k}",
            matchers=parsed(
                w.matchers, f"maintenance_windows[{k}].matchers", "the window would mute the whole fleet"
            ),
            starts_at=w.starts_at,
            ends_at=w.ends_at,
            created_by="config",
            comment=w.comment,
            kind=SilenceKind.MAINTENANCE,
            configured=True,
        )
        for k, w in enumerate(cfg.maintenance_windows)
    ]
    if problems:
        raise ConfigError.first_of(problems)
    return rules, windows
