"""Dense integer slots for keys, the index of a detector's per-key arrays.

A key met for the first time takes a freed slot before a new one past the end, so the arrays stay as long as
the most keys held at once, not as the keys ever met (series come and go with every pod rollout).
"""

from __future__ import annotations

from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K")


def grown(arr: np.ndarray, size: int, fill: float) -> np.ndarray:
    """``arr`` at least ``size`` long (doubled at least, so slots taken one by one grow it rarely), ``fill``
    past its old end; ``arr`` itself where it is long enough."""
    if size <= arr.size:
        return arr
    new = np.full(max(size, 2 * arr.size), fill, dtype=arr.dtype)
    new[: arr.size] = arr
    return new


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
        """Slots holding ``keys`` (None: free) with ``freed`` (``freed()``) to give out next; ``ValueError``
        unless ``freed`` lists each free slot once and no key holds two slots (a slot both free and held
        would be given to a second key, which would then share the first one's state)."""
        slots: Slots[K] = cls()
        slots.keys = list(keys)
        slots.index = {key: slot for slot, key in enumerate(keys) if key is not None}
        if sorted(freed) != [slot for slot, key in enumerate(keys) if key is None]:
            empty = len(keys) - len(slots.index)
            raise ValueError(f"the free slots listed ({len(freed)}) are not the {empty} empty ones")
        if len(slots.index) + len(freed) != len(keys):
            raise ValueError(f"{len(keys) - len(freed) - len(slots.index)} keys hold two slots each")
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
