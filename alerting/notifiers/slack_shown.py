"""What the Slack notifier last showed in each thread's message (a digest), so that a change that leaves it
looking the same sends no ``chat.update``."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

from alerting.notifiers.blocks import SlackMessage

SHOWN_THREADS = 10_000
"""How many threads' last message ``Shown`` keeps: an older thread's same-content edit goes again."""


def _digest(message: SlackMessage) -> str:
    """What ``chat.update`` would change, the message's text and attachments (blocks go in attachments)."""
    sent = json.dumps([message.text, message.blocks, message.attachments], sort_keys=True, default=str)
    return hashlib.sha256(sent.encode()).hexdigest()


class Shown:
    """Each thread's message as this process last posted or edited it (a digest), so that a change that
    leaves it looking the same sends no ``chat.update`` with the content of the one before."""

    def __init__(self, size: int = SHOWN_THREADS) -> None:
        self._size = size
        self._digests: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()  # one outbox thread per notifier; a drain at shutdown may be another

    def same(self, channel: str, ts: str, message: SlackMessage) -> bool:
        """Whether the thread's message shows ``message`` already."""
        digest = _digest(message)
        with self._lock:
            return self._digests.get((channel, ts)) == digest

    def shows(self, channel: str, ts: str, message: SlackMessage) -> None:
        """Note that the thread's message now shows ``message``."""
        digest = _digest(message)
        with self._lock:
            self._digests[(channel, ts)] = digest
            self._digests.move_to_end((channel, ts))
            while len(self._digests) > self._size:
                self._digests.popitem(last=False)

    def forget(self, channel: str, ts: str) -> None:
        """Unknown what the message shows (an edit that failed may have reached Slack, or it is gone)."""
        with self._lock:
            self._digests.pop((channel, ts), None)
