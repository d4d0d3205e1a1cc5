"""The outbox's counters: what it enqueued, and what each notifier sent, retried, failed or left out.

``alerting.outbox_metrics`` turns them into ``gpuwarden_notifications_*`` metrics.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class OutboxStats:
    """Counters for ``/metrics`` and logs; deliveries are counted by notifier name only (``by_notifier_*``):
    the metrics carry the ``notifier`` label, and their sum is the total."""

    enqueued: int = 0
    duplicates: int = 0
    errors: int = 0
    by_notifier_sent: dict[str, int] = field(default_factory=dict)
    by_notifier_retried: dict[str, int] = field(default_factory=dict)
    by_notifier_failed: dict[str, int] = field(default_factory=dict)
    by_notifier_filtered: dict[str, int] = field(default_factory=dict)  # left out by its events/priorities
    by_notifier_held: dict[str, int] = field(default_factory=dict)  # queued, then not sent (a silence)
    # Queued edits not sent: a later message of their incident shows it as it is (``Outbox._superseded``).
    by_notifier_superseded: dict[str, int] = field(default_factory=dict)
    # Each notifier's dispatcher thread counts beside the others (and the engine's enqueue).
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, counter: dict[str, int], notifier: str) -> None:
        """Add one to ``notifier``'s entry of one of the ``by_notifier_*`` counters."""
        with self._lock:
            counter[notifier] = counter.get(notifier, 0) + 1

    def error(self) -> None:
        """Count one unexpected error (a notifier's bug, a dispatch round that failed)."""
        with self._lock:
            self.errors += 1
