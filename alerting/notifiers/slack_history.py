"""Where the Slack notifier looks for a message an earlier attempt may have posted: the time windows of the
channel history it reads (``history_windows``), how many calls that lookup may make, and how it knows the
message (``has_key``: the idempotency key in its metadata, ``metadata_for``), and that metadata until Slack
refuses it (``MessageMetadata``)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from gpuwarden.errors import BackendError

logger = logging.getLogger(__name__)

METADATA_EVENT_TYPE = "gpuwarden_notification"
# Slack refusing a message's metadata, not the message: the app's manifest declares a schema for the event
# type that the payload does not meet, a workspace or token that takes none. Each failed every message.
METADATA_REFUSED = frozenset(
    {
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "metadata_must_be_sent_from_app",
    }
)
HISTORY_PAGE = 200
# The parent lookup makes at most this many calls (5,000 messages read where every call is a full page): a
# channel busier than that around the post gets the message again, at-least-once.
HISTORY_PAGES = 25
# The lookup reads time windows from the event on (``history_windows``): the first from this long before
# the event to as long after it, each next one twice as long, then what is left up to this hour's end...
NEAR_SECONDS = 300
# ... and last the hour before the first window: Slack's clock may be behind this machine's.
CLOCK_SKEW_SECONDS = 3600


def history_windows(since: float, now: float) -> Iterator[tuple[float, float | None]]:
    """The ``(oldest, latest)`` windows the parent lookup reads, in order: from ``NEAR_SECONDS`` before the
    event, each twice as long as the one before, the last open (up to whatever Slack holds, its clock maybe
    ahead of ours); then the hour before, for a Slack clock behind ours. Each is read newest first, so the
    messages read before the one looked for are those of its window, not all of them since."""
    oldest, width = since - NEAR_SECONDS, 2.0 * NEAR_SECONDS
    while oldest + width < now:
        yield oldest, oldest + width
        oldest, width = oldest + width, 2 * width
    yield oldest, None
    yield since - NEAR_SECONDS - CLOCK_SKEW_SECONDS, since - NEAR_SECONDS


def has_key(message: Any, key: str) -> bool:
    """Whether a message Slack returned carries the idempotency key ``key`` in its metadata."""
    metadata = message.get("metadata") if isinstance(message, dict) else None
    payload = metadata.get("event_payload") if isinstance(metadata, dict) else None
    return isinstance(payload, dict) and payload.get("key") == key


def metadata_for(incident_id: str, key: str, event: str = "", *, posted_for: str = "") -> dict[str, Any]:
    """A message's Slack metadata: its idempotency key (and, on a reply, the timeline event's kind, for apps
    reading the thread; on an incident's message, the key of the notification it was posted for)."""
    payload = {
        "incident_id": incident_id,
        "key": key,
        **({"event": event} if event else {}),
        **({"posted_for": posted_for} if posted_for else {}),
    }
    return {"event_type": METADATA_EVENT_TYPE, "event_payload": payload}


def posted_for(message: Any) -> str | None:
    """The key of the notification an incident's message was posted for, as its metadata says (None: a
    message posted by a release before that was said)."""
    metadata = message.get("metadata") if isinstance(message, dict) else None
    payload = metadata.get("event_payload") if isinstance(metadata, dict) else None
    found = payload.get("posted_for") if isinstance(payload, dict) else None
    return found if isinstance(found, str) and found else None


class MessageMetadata:
    """The metadata the notifier's posts carry (``metadata_for``), until Slack refuses it: from then on, until
    a restart, they go without, warned of once. Every message had failed for good, Slack refusing the
    metadata of each; without it a retry's lookup cannot find what an earlier attempt posted
    (at-least-once)."""

    def __init__(self) -> None:
        self.refused: str | None = None  # the error Slack refused it with

    def of(
        self, incident_id: str, key: str, event: str = "", *, posted_for: str = ""
    ) -> dict[str, Any] | None:
        """``metadata_for``'s metadata, or None once Slack refused it."""
        return None if self.refused else metadata_for(incident_id, key, event, posted_for=posted_for)

    def refuse(self, exc: BackendError) -> bool:
        """Whether ``exc`` is Slack's first refusal of the metadata: the call goes again without it."""
        if exc.code not in METADATA_REFUSED or self.refused is not None:
            return False
        self.refused = exc.code
        logger.warning(
            "slack refuses the messages' metadata (%s): they go without it until serve restarts; a retry"
            " after a crash cannot find what an earlier attempt posted, so a message may show twice; to fix:"
            " remove the app manifest's metadata schema for event type %s (or make it accept the idempotency"
            " key gpuwarden sends), and restart serve",
            exc,
            METADATA_EVENT_TYPE,
        )
        return True
