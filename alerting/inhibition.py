"""Inhibition rules (Alertmanager's ``source_matchers``, ``target_matchers``, ``equal``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from alerting.matchers import Matcher, all_match


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """A firing source alert mutes target alerts that share the ``equal`` labels."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    name: str = ""


def _key(rule: InhibitRule, labels: Mapping[str, str]) -> tuple[str, ...]:
    # A missing label counts as the empty value, as in Alertmanager.
    return tuple(labels.get(name, "") for name in rule.equal)


@dataclass
class Inhibitor:
    """Keeps an index of firing source alerts per rule and answers whether a target is inhibited."""

    rules: Sequence[InhibitRule]
    _sources: list[dict[tuple[str, ...], set[str]]] = field(default_factory=list)
    _both_sides: list[dict[tuple[str, ...], set[str]]] = field(default_factory=list)
    # How often a firing source stopped firing: only that can free a target (``alerting.reminding``).
    released: int = 0

    def __post_init__(self) -> None:
        self._sources = [defaultdict(set) for _ in self.rules]
        self._both_sides = [defaultdict(set) for _ in self.rules]

    def update(self, fingerprint: str, labels: Mapping[str, str], firing: bool) -> None:
        """Record that an alert fires (or no longer fires)."""
        for i, rule in enumerate(self.rules):
            if not all_match(rule.source_matchers, labels):
                continue
            key = _key(rule, labels)
            both = all_match(rule.target_matchers, labels)
            if firing:
                self._sources[i][key].add(fingerprint)
                if both:
                    self._both_sides[i][key].add(fingerprint)
            elif fingerprint in self._sources[i].get(key, ()):
                self.released += 1
                self._sources[i][key].discard(fingerprint)
                self._both_sides[i][key].discard(fingerprint)

    def inhibited_by(self, fingerprint: str, labels: Mapping[str, str]) -> str | None:
        """The name (or index) of the rule that inhibits this alert, or None."""
        found = self._inhibition(fingerprint, labels)
        if found is None:
            return None
        i, _ = found
        return self.rules[i].name or f"inhibit_rule[{i}]"

    def inhibiting(self, fingerprint: str, labels: Mapping[str, str]) -> str | None:
        """The fingerprint of a source alert that inhibits this one (Alertmanager's ``inhibitedBy``)."""
        found = self._inhibition(fingerprint, labels)
        return None if found is None else min(found[1])

    def _inhibition(self, fingerprint: str, labels: Mapping[str, str]) -> tuple[int, set[str]] | None:
        """The first rule that inhibits this alert and the source alerts that do, or None."""
        for i, rule in enumerate(self.rules):
            if not all_match(rule.target_matchers, labels):
                continue
            key = _key(rule, labels)
            sources = self._sources[i].get(key, set()) - {fingerprint}
            if not sources:
                continue
            if all_match(rule.source_matchers, labels):
                # An alert on both sides is only inhibited by sources that are not themselves targets.
                sources = sources - self._both_sides[i].get(key, set())
                if not sources:
                    continue
            return i, sources
        return None
