"""An open incident's members, kept as a dict that tells the index of open incidents
(``alerting.incident_index``) of each change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from alerting.member import Member

if TYPE_CHECKING:
    from alerting.batch import OpenIncident


class Members(dict[str, Member]):
    """An incident's members, which tell the index of open incidents when they change."""

    __slots__ = ("owner",)

    def __init__(self, owner: OpenIncident, items: Mapping[str, Member] | None = None) -> None:
        super().__init__()
        self.owner = owner
        if items:
            self.update(items)

    def __setitem__(self, fingerprint: str, member: Member) -> None:
        old = self.get(fingerprint)
        super().__setitem__(fingerprint, member)
        index = self.owner.index
        if index is not None:
            index.member_changed(self.owner.id, old, member)

    def __delitem__(self, fingerprint: str) -> None:
        self.pop(fingerprint)

    def pop(self, fingerprint: str, *default: Member) -> Member:  # type: ignore[override]
        """Remove a member (and tell the index)."""
        if fingerprint not in self and default:
            return default[0]
        member = super().pop(fingerprint)
        index = self.owner.index
        if index is not None:
            index.member_changed(self.owner.id, member, None)
        return member

    def update(self, *args: object, **kwargs: Member) -> None:
        """Add or replace members one by one (each through ``__setitem__``)."""
        for fingerprint, member in dict(*args, **kwargs).items():
            self[fingerprint] = member

    def clear(self) -> None:
        """Remove every member."""
        for fingerprint in list(self):
            self.pop(fingerprint)

    def setdefault(self, fingerprint: str, default: Member) -> Member:
        """The member, added first when missing."""
        if fingerprint not in self:
            self[fingerprint] = default
        return self[fingerprint]

    def popitem(self) -> tuple[str, Member]:
        """Remove the last member."""
        fingerprint = next(reversed(self))
        return fingerprint, self.pop(fingerprint)
