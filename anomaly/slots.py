"""Dense integer slots for keys, the index of a detector's per-key arrays.

A key met for the first time takes a freed slot before a new one past the end, so the arrays stay as long as
the most keys held at once, not as the keys ever met (series come and go with every pod rollout).
"""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")


class Slots(Generic[K]):
    """Each key's slot (``index``) and each slot's key (``keys``: None for a free one)."""

    def __init__(self) -> None:
        self.index: dict[K, int] = {}
        self.keys: list[K | None] = []
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.index)

    def take(self, key: K) -> int:
        """The slot of a new ``key``: the last one freed, else the next past the end (``keys`` grows by
        one, and so must the caller's arrays)."""
        if self._free:
            slot = self._free.pop()
            self.keys[slot] = key
        else:
            slot = len(self.keys)
            self.keys.append(key)
        self.index[key] = slot
        return slot

    def freed(self) -> list[int]:
        """The free slots, in the order ``take`` gives them back from the end (kept in a snapshot)."""
        return list(self._free)

    @classmethod
    def restored(cls, keys: list[K | None], freed: list[int]) -> Slots[K]:
        """Slots holding ``keys`` (None: free) with ``freed`` (``freed()``) to give out next."""
        slots: Slots[K] = cls()
        slots.keys = list(keys)
        slots.index = {key: slot for slot, key in enumerate(keys) if key is not None}
        slots._free = list(freed)
        return slots

    def free(self, slot: int) -> K | None:
        """Give ``slot`` up for a later key; the key it held (None: it was free already)."""
        key = self.keys[slot]
        if key is not None:
            del self.index[key]
            self.keys[slot] = None
            self._free.append(slot)
        return key
