"""The Slack workspace the recorder pretends to be: channels, messages, threads, uploaded files.

Only the Web API methods gpuwarden uses are implemented, with Slack's documented answers and errors. Not
thread-safe on its own: ``SlackRecorder`` serialises calls.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from alerting.notifiers.blockkit import validate_attachments, validate_blocks
from gpuwarden.clock import Clock, SystemClock

JsonDict = dict[str, Any]

MAX_TEXT = 40_000  # Slack answers msg_too_long past this many characters of ``text``
# Slack's special mentions and their ``<!channel|label>`` forms: each notifies someone.
_MENTION = re.compile(
    r"<(!channel|!here|!everyone|!subteam\^[A-Z0-9]+|@[UW][A-Z0-9]+|#C[A-Z0-9]+)(\|[^>]*)?>"
)
# A channel id as Slack writes them: public (C) or private (G), upper-case letters and digits.
_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{8,}")


def mentions_in(p: JsonDict) -> list[str]:
    """The special mentions Slack would act on in a message: in ``text``, in attachments' ``fallback``,
    ``text`` and ``pretext``, and in mrkdwn text objects (plain_text notifies nobody)."""
    found: list[str] = []

    def scan(where: str, text: Any) -> None:
        if isinstance(text, str):
            found.extend(f"{where}: {m.group(0)}" for m in _MENTION.finditer(text))

    def walk(where: str, node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                scan(where, node.get("text"))
            for key, value in node.items():
                walk(f"{where}.{key}", value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(f"{where}[{i}]", value)

    scan("text", p.get("text"))
    walk("blocks", p.get("blocks"))
    for i, att in enumerate(p.get("attachments") or []):
        if isinstance(att, dict):
            for key in ("fallback", "text", "pretext"):
                scan(f"attachments[{i}].{key}", att.get(key))
            walk(f"attachments[{i}].blocks", att.get("blocks"))
    return found


@dataclass
class RecordedMessage:
    """A message as Slack would store it; ``edits`` counts ``chat.update`` calls."""

    channel: str
    ts: str
    text: str
    blocks: list[Any] = field(default_factory=list)
    attachments: list[Any] = field(default_factory=list)
    thread_ts: str | None = None
    reply_broadcast: bool = False
    metadata: JsonDict | None = None
    files: list[str] = field(default_factory=list)
    edits: int = 0

    @property
    def event(self) -> str:
        """The timeline event a reply of gpuwarden's tells (from its metadata); empty for other messages."""
        payload = (self.metadata or {}).get("event_payload")
        return str(payload.get("event", "")) if isinstance(payload, dict) else ""


@dataclass
class RecordedFile:
    """A file uploaded through ``files_upload_v2``."""

    id: str
    filename: str
    length: int
    data: bytes = b""
    title: str = ""
    alt_txt: str = ""
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


# The scope each method needs of a bot token (Slack's answer without it: missing_scope, naming it in needed).
SCOPES = {
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}


class SlackWorkspace:
    """Slack's side of the conversation, answering Web API methods."""

    def __init__(
        self, upload_base: Callable[[], str], channels: Iterable[str] = (), clock: Clock | None = None
    ) -> None:
        """``channels``: channel ids (``C0123456789``) or names that exist from the start; ``clock``: Slack's
        (the time messages are posted at)."""
        self._upload_base = upload_base
        self._clock = clock or SystemClock()
        self._ids = itertools.count(1)
        self._last_ts_us = 0
        self.channels: dict[str, str] = {}
        self.messages: list[RecordedMessage] = []
        self.files: dict[str, RecordedFile] = {}
        self.mentions: list[str] = []
        # Channels the app was removed from, and channels archived (ids): Slack refuses the app's calls there.
        self.left: set[str] = set()
        self.archived: set[str] = set()
        # Channels where threads are not allowed: a reply there answers
        # restricted_action_non_threadable_channel.
        self.unthreaded: set[str] = set()
        # Channels that take thread replies only: a top-level message there answers
        # restricted_action_thread_only_channel.
        self.thread_only: set[str] = set()
        # The scopes the app's token has (None: every scope a method here needs).
        self.scopes: frozenset[str] | None = None
        # The workspace's message edit window (an admin's setting), in seconds; None: messages stay editable.
        self.edit_window: float | None = None
        # The error Slack refuses every message's metadata with (a schema in the app's manifest the payload
        # does not meet: invalid_metadata_schema); None: metadata taken.
        self.metadata_refused: str | None = None
        for channel in channels:
            self.channel_id(channel)

    def channel_id(self, channel: str) -> str:
        """The id of a channel given by id or name. An id (``C0123456789``, the form the README recommends
        for ``slack.channel``) is the channel with that id, as in the workspace it was copied from; a new
        name gets a new channel with a new id."""
        if channel in self.channels.values():
            return channel
        if _CHANNEL_ID.fullmatch(channel):
            self.channels[channel] = channel
            return channel
        if channel not in self.channels:
            self.channels[channel] = f"C{next(self._ids):08d}"
        return self.channels[channel]

    def _known(self, channel: object) -> TypeGuard[str]:
        """Whether ``channel`` is the id of a channel (methods other than chat.postMessage take ids only)."""
        if not isinstance(channel, str):
            return False
        if channel in self.channels.values():
            return True
        return _CHANNEL_ID.fullmatch(channel) is not None and self.channel_id(channel) == channel

    def new_ts(self) -> str:
        """A fresh, increasing message timestamp like Slack's ``1767225600.000001``: the time it was posted
        (a lookup by ``oldest`` finds it as in Slack), one microsecond past the last when they would tie."""
        self._last_ts_us = max(round(self._clock.time() * 1_000_000), self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def find(self, channel: str, ts: str) -> RecordedMessage | None:
        """The message with this ``ts`` in this channel."""
        return next((m for m in self.messages if m.channel == channel and m.ts == ts), None)

    def call(self, method: str, p: JsonDict) -> JsonDict:
        """Answer one Web API method with Slack's JSON."""
        handlers: dict[str, Callable[[], JsonDict]] = {
            "auth.test": lambda: {
                "ok": True,
                "user_id": "U0GPUWARDEN",
                "team": "gpuwarden",
                "bot_id": "B0GPUWARDEN",
            },
            "chat.postMessage": lambda: self._post_message(p),
            "chat.update": lambda: self._update(p),
            "conversations.history": lambda: self._history(p),
            "conversations.replies": lambda: self._replies(p),
            "files.getUploadURLExternal": lambda: self._get_upload_url(p),
            "files.completeUploadExternal": lambda: self._complete_upload(p),
        }
        handler = handlers.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        needed = SCOPES.get(method)
        if self.scopes is not None and needed is not None and needed not in self.scopes:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": needed,
                "provided": ",".join(self.scopes),
            }
        return handler()

    def _check_payload(self, p: JsonDict) -> JsonDict | None:
        if not (p.get("text") or p.get("blocks") or p.get("attachments")):
            return {"ok": False, "error": "no_text"}
        text = p.get("text")
        if isinstance(text, str) and len(text) > MAX_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        problems = validate_blocks(p["blocks"], "blocks") if "blocks" in p else []
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        problems = validate_attachments(p["attachments"]) if "attachments" in p else []
        if problems:
            return {"ok": False, "error": "invalid_attachments", "errors": problems}
        metadata = p.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            return {"ok": False, "error": "invalid_metadata_format"}
        if metadata is not None and self.metadata_refused:
            return {"ok": False, "error": self.metadata_refused}
        return None

    def _post_message(self, p: JsonDict) -> JsonDict:
        if not isinstance(p.get("channel"), str):
            return {"ok": False, "error": "channel_not_found"}
        problem = self._check_payload(p)
        if problem is not None:
            return problem
        channel = self.channel_id(p["channel"])
        shut = self._shut(channel, archived="is_archived")
        if shut is not None:
            return shut
        self.mentions.extend(f"chat.postMessage {m}" for m in mentions_in(p))
        thread_ts = p.get("thread_ts")
        if thread_ts is not None:
            parent = self.find(channel, str(thread_ts))
            if parent is None or parent.thread_ts is not None:
                return {"ok": False, "error": "thread_not_found"}
            if channel in self.unthreaded:
                return {"ok": False, "error": "restricted_action_non_threadable_channel"}
        elif channel in self.thread_only:
            return {"ok": False, "error": "restricted_action_thread_only_channel"}
        message = RecordedMessage(
            channel=channel,
            ts=self.new_ts(),
            text=p.get("text", ""),
            blocks=p.get("blocks", []),
            attachments=p.get("attachments", []),
            thread_ts=None if thread_ts is None else str(thread_ts),
            reply_broadcast=_truthy(p.get("reply_broadcast")),
            metadata=p.get("metadata"),
        )
        self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": message.ts, "message": {"text": message.text}}

    def _update(self, p: JsonDict) -> JsonDict:
        channel, ts = p.get("channel"), p.get("ts")
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        # Slack's chat.update: "cannot be edited within a frozen, archived or deleted channel".
        shut = self._shut(channel, archived="is_inactive", left="channel_not_found")
        if shut is not None:
            return shut
        message = self.find(channel, str(ts))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if self.edit_window is not None and self._clock.time() - float(message.ts) > self.edit_window:
            return {"ok": False, "error": "edit_window_closed"}
        problem = self._check_payload(p)
        if problem is not None:
            return problem
        self.mentions.extend(f"chat.update {m}" for m in mentions_in(p))
        message.text = p.get("text", message.text)
        message.blocks = p.get("blocks", message.blocks)
        message.attachments = p.get("attachments", message.attachments)
        if "metadata" in p:
            message.metadata = p["metadata"]
        message.edits += 1
        return {"ok": True, "channel": channel, "ts": message.ts, "text": message.text}

    def _shut(self, channel: str, *, archived: str | None, left: str = "not_in_channel") -> JsonDict | None:
        """Slack's refusal of a call to ``channel`` the app was removed from (``left``) or that is archived
        (``archived``; None: the method still works there, as a read of its history does)."""
        if channel in self.left:
            return {"ok": False, "error": left}
        if archived is not None and channel in self.archived:
            return {"ok": False, "error": archived}
        return None

    def _as_api(self, m: RecordedMessage, with_metadata: bool) -> JsonDict:
        out: JsonDict = {"type": "message", "ts": m.ts, "text": m.text}
        if m.thread_ts is not None:
            out["thread_ts"] = m.thread_ts
        if m.files:  # a file share lists its files, as Slack's history and replies do
            shared = [self.files[i] for i in m.files if i in self.files]
            out["files"] = [{"id": f.id, "name": f.filename, "title": f.title} for f in shared]
        if with_metadata and m.metadata is not None:
            out["metadata"] = m.metadata
        return out

    def _history(self, p: JsonDict) -> JsonDict:
        channel = p.get("channel")
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        shut = self._shut(channel, archived=None)
        if shut is not None:
            return shut
        limit = max(1, int(p.get("limit", 100)))
        meta = _truthy(p.get("include_all_metadata"))
        # Between ``oldest`` (0) and ``latest`` (now: all there is), each left out unless ``inclusive``.
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or "inf")
        inclusive = _truthy(p.get("inclusive"))
        visible = [
            m
            for m in self.messages
            if m.channel == channel
            and (m.thread_ts is None or m.reply_broadcast)
            and (oldest <= float(m.ts) <= latest if inclusive else oldest < float(m.ts) < latest)
        ]
        # Newest first, ``limit`` a page, then ``response_metadata.next_cursor`` for older ones, as Slack.
        cursor = str(p.get("cursor") or "")
        start = int(cursor.removeprefix("next_")) if cursor.startswith("next_") else 0
        page = list(reversed(visible))[start : start + limit]
        more = start + limit < len(visible)
        return {
            "ok": True,
            "messages": [self._as_api(m, meta) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": f"next_{start + limit}" if more else ""},
        }

    def _replies(self, p: JsonDict) -> JsonDict:
        channel, ts = p.get("channel"), str(p.get("ts"))
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        shut = self._shut(channel, archived=None)
        if shut is not None:
            return shut
        parent = self.find(channel, ts)
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        meta = _truthy(p.get("include_all_metadata"))
        # Replies between ``oldest`` and ``latest`` as in ``_history``; the parent comes first all the same.
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or "inf")
        inclusive = _truthy(p.get("inclusive"))
        replies = (
            m
            for m in self.messages
            if m.channel == channel
            and m.thread_ts == ts
            and (oldest <= float(m.ts) <= latest if inclusive else oldest < float(m.ts) < latest)
        )
        thread = [parent, *replies]
        # Pages like Slack's: ``limit`` messages, then ``response_metadata.next_cursor`` for the rest.
        limit = max(1, int(p.get("limit", 1000)))
        cursor = str(p.get("cursor") or "")
        start = int(cursor.removeprefix("next_")) if cursor.startswith("next_") else 0
        page = thread[start : start + limit]
        more = start + limit < len(thread)
        answer: JsonDict = {"ok": True, "messages": [self._as_api(m, meta) for m in page], "has_more": more}
        answer["response_metadata"] = {"next_cursor": f"next_{start + limit}" if more else ""}
        return answer

    def _get_upload_url(self, p: JsonDict) -> JsonDict:
        filename, length = p.get("filename"), p.get("length")
        if not filename or length is None or not str(length).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = RecordedFile(id=file_id, filename=str(filename), length=int(length))
        self.files[file_id].alt_txt = str(p.get("alt_txt", ""))
        return {"ok": True, "upload_url": f"{self._upload_base()}/upload/v1/{file_id}", "file_id": file_id}

    def _complete_upload(self, p: JsonDict) -> JsonDict:
        files = p.get("files")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        channel = p.get("channel_id")
        if channel is not None and not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        thread_ts = p.get("thread_ts")
        if thread_ts is not None and (channel is None or self.find(channel, str(thread_ts)) is None):
            return {"ok": False, "error": "thread_not_found"}
        if channel is not None and thread_ts is not None and channel in self.unthreaded:
            return {"ok": False, "error": "restricted_action_non_threadable_channel"}
        if channel is not None and thread_ts is None and channel in self.thread_only:
            return {"ok": False, "error": "restricted_action_thread_only_channel"}
        done = []
        for item in files:
            f = self.files.get(item.get("id", "")) if isinstance(item, dict) else None
            if f is None or f.completed or len(f.data) != f.length:
                return {"ok": False, "error": "file_not_found" if f is None else "file_upload_size_mismatch"}
            f.title = str(item.get("title") or f.filename)
            self.mentions.extend(
                f"files.completeUploadExternal title: {m}" for m in mentions_in({"text": f.title})
            )
            done.append(f)
        for f in done:
            f.completed, f.channel, f.thread_ts = True, channel, None if thread_ts is None else str(thread_ts)
        comment = p.get("initial_comment")
        self.mentions.extend(f"files.completeUploadExternal {m}" for m in mentions_in({"text": comment}))
        if channel is not None:
            share = RecordedMessage(
                channel=channel,
                ts=self.new_ts(),
                text=str(p.get("initial_comment", "")),
                thread_ts=None if thread_ts is None else str(thread_ts),
                files=[f.id for f in done],
            )
            self.messages.append(share)
        return {"ok": True, "files": [{"id": f.id, "name": f.filename, "title": f.title} for f in done]}

    def store_upload(self, file_id: str, data: bytes) -> bool:
        """Step 2 of ``files_upload_v2``: keep the bytes; False for an unknown upload."""
        f = self.files.get(file_id)
        if f is None:
            return False
        f.data = data
        return True
