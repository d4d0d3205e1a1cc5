"""An index over one version of the engine's silences: which few of them can mute a given alert.

Matching every firing alert against every silence costs alerts x silences regular-expression matches
(2,000 alerts and 300 silences: 600,000, twelve seconds). Each silence is filed under one matcher that an
alert must satisfy for it to mute: an equality with a non-empty value (looked up by label and value), else
a regular expression that does not match the empty string (run once per distinct value of its label, the
answer remembered), else it is checked for every alert. Maintenance windows match the inventory's topology
too, not only the alert's labels, so they are always checked; an incident's silence is filed by incident.
Candidates are then checked in full with ``Silence.mutes``, so the answer is exactly the unindexed one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from alerting.matchers import Matcher, MatchOp
from alerting.silences import Silence, SilenceKind

MAX_REMEMBERED_VALUES = 100_000
"""Label values whose regular-expression candidates are remembered; past it the memory starts over."""


class SilenceIndex:
    """The silences of one list (the engine replaces its list on every change), indexed."""

    def __init__(self, silences: Sequence[Silence]) -> None:
        self.silences = silences
        self._equal: dict[tuple[str, str], list[int]] = {}
        self._regex: dict[str, list[tuple[int, Matcher]]] = {}
        self._regex_hits: dict[tuple[str, str], tuple[int, ...]] = {}
        self._incident: dict[str, list[int]] = {}
        self._always: list[int] = []
        for i, silence in enumerate(silences):
            if silence.incident_id is not None:
                self._incident.setdefault(silence.incident_id, []).append(i)
            elif not silence.matchers:
                continue  # mutes nothing (see ``Silence.mutes``)
            elif silence.kind is SilenceKind.MAINTENANCE:
                self._always.append(i)
            else:
                self._file(i, silence.matchers)

    def _file(self, i: int, matchers: Sequence[Matcher]) -> None:
        for m in matchers:
            if m.op is MatchOp.EQ and m.value:
                self._equal.setdefault((m.name, m.value), []).append(i)
                return
        regexes = [m for m in matchers if m.op is MatchOp.RE and not m.matches_empty]
        if not regexes:
            self._always.append(i)
            return
        # alertname first: it has few distinct values, so its answers are remembered best
        anchor = next((m for m in regexes if m.name == "alertname"), regexes[0])
        self._regex.setdefault(anchor.name, []).append((i, anchor))

    def muting(
        self,
        labels: Mapping[str, str],
        now: datetime,
        incident_id: str | None = None,
        placed: Callable[[], Mapping[str, str]] | None = None,
    ) -> list[Silence]:
        """The silences that mute the alert now, in the list's order (as ``Silence.mutes`` says)."""
        found = set(self._always)
        if incident_id is not None:
            found.update(self._incident.get(incident_id, ()))
        if self._equal or self._regex:  # else no silence is filed by label: none to look up (the usual case)
            for name, value in labels.items():
                found.update(self._equal.get((name, value), ()))
                if name in self._regex:
                    found.update(self._regex_candidates(name, value))
        out = []
        for i in sorted(found):
            silence = self.silences[i]
            if silence.mutes(labels, now, incident_id, placed):
                out.append(silence)
        return out

    def holds_incident(self, incident_id: str, now: datetime) -> bool:
        """Whether an active silence of the incident (``incidents silence``) holds it now."""
        return bool(self.holding_incident(incident_id, now))

    def holding_incident(self, incident_id: str, now: datetime) -> list[Silence]:
        """The incident's silences (``incidents silence``) active now."""
        held = (self.silences[i] for i in self._incident.get(incident_id, ()))
        return [s for s in held if s.state(now) == "active"]

    def _regex_candidates(self, name: str, value: str) -> tuple[int, ...]:
        key = (name, value)
        hits = self._regex_hits.get(key)
        if hits is None:
            labels = {name: value}
            hits = tuple(i for i, m in self._regex[name] if m.matches(labels))
            if len(self._regex_hits) >= MAX_REMEMBERED_VALUES:
                self._regex_hits.clear()
            self._regex_hits[key] = hits
        return hits
