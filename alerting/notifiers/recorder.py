"""A local stand-in for the Slack Web API: a real HTTP server on 127.0.0.1 that records every call.

It keeps channels, messages, threads and uploaded files like Slack does, checks Block Kit payloads against
Slack's documented shape and limits (answering ``invalid_blocks`` / ``invalid_attachments`` /
``msg_too_long`` as Slack would, and noting every special mention such as ``<!channel>`` it would act on),
implements the three steps of ``files_upload_v2`` (``files.getUploadURLExternal``, the upload URL,
``files.completeUploadExternal``), and can be told to fail: a queued error (429 with ``Retry-After``, 500,
an API error) or a whole outage, or to trickle an answer (a slow proxy: each byte under any read
timeout, the whole answer as late as the test likes). It also records generic webhook POSTs under
``/hooks/<name>`` and replies to interactions' ``response_url`` under ``/actions/...``. Tests and the
demo point slack-sdk's ``base_url`` at ``recorder.base_url``.
Run alone: ``python -m alerting.notifiers.recorder --port 8099``.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from errno import EADDRINUSE
from http.server import ThreadingHTTPServer

from alerting.notifiers.ratelimits import SlackRateLimits
from alerting.notifiers.recorder_http import RecorderServer, handler_for
from alerting.notifiers.workspace import JsonDict, RecordedFile, RecordedMessage, SlackWorkspace
from gpuwarden.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

__all__ = ["InjectedFailure", "RecordedCall", "RecordedFile", "RecordedMessage", "SlackRecorder"]


@dataclass
class RecordedCall:
    """One HTTP call the recorder answered."""

    method: str
    params: JsonDict
    token: str | None
    status: int
    response: JsonDict


@dataclass(frozen=True)
class InjectedFailure:
    """How one upcoming call fails: an HTTP status (with Retry-After) or a Slack API error (with the
    ``errors`` detail Slack gives, e.g. which block ``invalid_blocks`` refused)."""

    status: int = 500
    error: str = "internal_error"
    retry_after: int | str | None = None  # a string is sent as it is (``1.5``, an HTTP date)
    errors: tuple[str, ...] = ()


class SlackRecorder:
    """The Slack Web API stand-in; state survives ``stop()``/``start()`` like Slack's during an outage."""

    def __init__(
        self,
        *,
        token: str = "xoxb-gpuwarden-test",  # noqa: S107 - the stand-in's own test token
        port: int = 0,
        host: str = "127.0.0.1",
        channels: Iterable[str] = (),
        clock: Clock | None = None,
        rate_limits: bool = False,
    ) -> None:
        """``channels``: channel ids (``C0123456789``) or names that exist from the start; any other id
        is a channel too once a call names it, and any other name once a message is posted to it.
        ``clock``: Slack's, which stamps each message (``ts``); the wall clock unless a test moves it.
        ``rate_limits``: answer 429 to calls over Slack's documented rate limits, per method and per channel
        for ``chat.postMessage`` (``alerting.notifiers.ratelimits``)."""
        self.token = token
        self._revoked: set[str] = set()  # tokens revoked (``revoke_token``): Slack answers token_revoked
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._slack = SlackWorkspace(lambda: self.root_url, channels, clock)
        self.limits = SlackRateLimits(clock or SystemClock(), self._slack.channel_id) if rate_limits else None
        self._calls: list[RecordedCall] = []
        self._hooks: dict[str, list[JsonDict]] = {}
        self._responses: list[JsonDict] = []
        self._failures: dict[str, deque[InjectedFailure]] = {}
        self._outage: InjectedFailure | None = None
        self._trickles: dict[str, deque[float]] = {}
        self._trickles_end = threading.Event()
        self._trickling = 0
        self._trickle_started = threading.Condition(self._lock)
        self.on_call: Callable[[RecordedCall], None] | None = None
        """Called after each call is recorded and before it is answered (tests kill a client here)."""

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> SlackRecorder:
        """Listen (again) on the port; the first start picks a free port when ``port`` is 0."""
        if self._server is not None:
            return self
        server = RecorderServer((self.host, self.port), handler_for(self))
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-recorder", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients get connection refused, as in a network outage."""
        self.end_trickles()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> SlackRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The Web API base URL to give slack-sdk (``WebClient(base_url=...)``)."""
        return f"http://{self.host}:{self.port}/api/"

    @property
    def root_url(self) -> str:
        """The server root, e.g. for ``/hooks/<name>`` webhook URLs."""
        return f"http://{self.host}:{self.port}"

    # --- failure injection -------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        error: str = "internal_error",
        retry_after: int | str | None = None,
        times: int = 1,
        errors: tuple[str, ...] = (),
    ) -> None:
        """Make the next ``times`` calls of ``method`` (``*`` for any) fail this way."""
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            queue.extend(InjectedFailure(status, error, retry_after, errors) for _ in range(times))

    def set_outage(self, status: int | None = 503) -> None:
        """Answer every call with ``status`` until called with ``None``."""
        with self._lock:
            self._outage = None if status is None else InjectedFailure(status, "service_unavailable")

    def trickle_next(self, method: str, *, seconds: float = 10.0, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` (``upload``: the upload URL; ``response_url``) as
        Slack would, having done what they ask, but trickle the answer: its body, then a space every 0.05 s
        (a chunk each, far under any read timeout) for ``seconds`` or until ``end_trickles``, then its end.
        Like a slow proxy, or Slack answering a call it has already carried out very slowly."""
        with self._lock:
            self._trickles_end.clear()
            self._trickles.setdefault(method, deque()).extend(seconds for _ in range(times))

    def end_trickles(self) -> None:
        """Finish every answer being trickled now (``stop`` does too)."""
        self._trickles_end.set()

    def take_trickle(self, method: str) -> float | None:
        """How long to trickle this call's answer (``trickle_next``); None: answer at once."""
        with self._lock:
            queue = self._trickles.get(method)
            return queue.popleft() if queue else None

    def trickle(self, write: Callable[[bytes], object], seconds: float) -> None:
        """Write spaces, one chunk every 0.05 s, for ``seconds`` or until ``end_trickles``."""
        until = time.monotonic() + seconds
        with self._lock:
            self._trickling += 1
            self._trickle_started.notify_all()
        try:
            while time.monotonic() < until and not self._trickles_end.wait(0.05):
                write(b"1\r\n \r\n")
        finally:
            with self._lock:
                self._trickling -= 1

    def trickling(self) -> int:
        """How many answers are being trickled now."""
        with self._lock:
            return self._trickling

    def wait_trickling(self, count: int = 1, timeout: float = 5.0) -> bool:
        """Whether ``count`` answers are being trickled within ``timeout`` s: a call abandoned at its deadline
        may reach this server only after it was abandoned (a stalled client), and then trickles as long."""
        with self._trickle_started:
            return self._trickle_started.wait_for(lambda: self._trickling >= count, timeout)

    def _take_failure(self, method: str, params: JsonDict | None = None) -> InjectedFailure | None:
        with self._lock:
            if self._outage is not None:
                return self._outage
            wait = None if self.limits is None or params is None else self.limits.wait(method, params)
            if wait is not None:
                return InjectedFailure(429, "ratelimited", wait)
            for key in (method, "*"):
                queue = self._failures.get(key)
                if queue:
                    return queue.popleft()
        return None

    def post_as_others(self, channel: str, count: int, thread_ts: str | None = None) -> None:
        """``count`` messages in ``channel`` (replies in the thread of ``thread_ts`` if given) from other apps
        and people (a busy channel, a war-room thread), as if posted one after the other, without a call
        each."""
        with self._lock:
            cid = self._slack.channel_id(channel)
            for i in range(count):
                text = f"someone else's message {i}"
                self._slack.messages.append(
                    RecordedMessage(cid, self._slack.new_ts(), text, thread_ts=thread_ts)
                )

    def remove_app(self, channel: str, *, removed: bool = True) -> None:
        """Someone removes the app from ``channel`` (``removed=False``: invites it back): posting there
        answers ``not_in_channel``, editing ``channel_not_found``, reading it ``not_in_channel``."""
        with self._lock:
            cid = self._slack.channel_id(channel)
            (self._slack.left.add if removed else self._slack.left.discard)(cid)

    def archive(self, channel: str, *, archived: bool = True) -> None:
        """Someone archives ``channel`` (``archived=False``: unarchives it): posting there answers
        ``is_archived``, editing ``is_inactive``; its history can still be read."""
        with self._lock:
            cid = self._slack.channel_id(channel)
            (self._slack.archived.add if archived else self._slack.archived.discard)(cid)

    def forbid_threads(self, channel: str, *, forbidden: bool = True) -> None:
        """Threads are not allowed in ``channel`` (``forbidden=False``: allowed again): a reply there, a file
        shared to a thread too, answers ``restricted_action_non_threadable_channel``."""
        with self._lock:
            cid = self._slack.channel_id(channel)
            (self._slack.unthreaded.add if forbidden else self._slack.unthreaded.discard)(cid)

    def threads_only(self, channel: str, *, only: bool = True) -> None:
        """``channel`` takes thread replies only (``only=False``: messages too again): a message there, a file
        shared outside a thread too, answers ``restricted_action_thread_only_channel``."""
        with self._lock:
            cid = self._slack.channel_id(channel)
            (self._slack.thread_only.add if only else self._slack.thread_only.discard)(cid)

    def refuse_metadata(self, error: str | None = "invalid_metadata_schema") -> None:
        """Refuse every message that carries metadata with ``error`` (None: take it again), as Slack does
        where the app's manifest declares a schema for its event type that the payload does not meet."""
        with self._lock:
            self._slack.metadata_refused = error

    def grant_scopes(self, scopes: Iterable[str] | None) -> None:
        """The scopes the app's token has (None: every one), as after a reinstall: a method needing another
        answers ``missing_scope`` with the scope in ``needed`` (``chat:write``, ``channels:history``)."""
        with self._lock:
            self._slack.scopes = None if scopes is None else frozenset(scopes)

    def set_edit_window(self, seconds: float | None) -> None:
        """The workspace's message edit window (an admin's setting): ``chat.update`` of a message older than
        ``seconds`` answers ``edit_window_closed``; None: no window."""
        with self._lock:
            self._slack.edit_window = seconds

    def revoke_token(self, new_token: str) -> None:
        """The app's token is revoked (``token_revoked`` from then on) and ``new_token`` is the one that
        works now, as after reinstalling the app."""
        with self._lock:
            self._revoked.add(self.token)
            self.token = new_token

    def delete_by_someone(self, channel: str, ts: str) -> None:
        """A person deletes the message ``ts`` of ``channel`` (its replies stay): ``chat.update`` of it then
        answers ``message_not_found`` and the history no longer holds it."""
        with self._lock:
            cid = self._slack.channel_id(channel)
            self._slack.messages[:] = [m for m in self._slack.messages if (m.channel, m.ts) != (cid, ts)]

    # --- what tests read ---------------------------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        """Every call answered, in order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        """Calls of one API method that succeeded (``ok`` true)."""
        return [c for c in self.calls if c.method == method and c.response.get("ok") is True]

    def channel_messages(self, channel: str | None = None) -> list[RecordedMessage]:
        """Top-level messages (not thread replies), oldest first."""
        with self._lock:
            cid = self._slack.channels.get(channel, channel) if channel else None
            return [
                m for m in self._slack.messages if m.thread_ts is None and (cid is None or m.channel == cid)
            ]

    def visible_in_channel(self) -> list[RecordedMessage]:
        """What a channel member sees arrive: top-level messages and replies broadcast to the channel."""
        with self._lock:
            return [m for m in self._slack.messages if m.thread_ts is None or m.reply_broadcast]

    def replies(self, thread_ts: str) -> list[RecordedMessage]:
        """Replies in a thread, oldest first."""
        with self._lock:
            return [m for m in self._slack.messages if m.thread_ts == thread_ts]

    def files(self) -> list[RecordedFile]:
        """Completed uploads."""
        with self._lock:
            return [f for f in self._slack.files.values() if f.completed]

    def mentions(self) -> list[str]:
        """Every special mention (``<!channel>``, ``<!here>``, ``<@U...>``, ...) in what was posted, updated
        or uploaded, and where: each one would have notified people in Slack."""
        with self._lock:
            return list(self._slack.mentions)

    @property
    def response_url(self) -> str:
        """A ``response_url`` like the one Slack puts in an interaction payload, answered by this recorder."""
        return f"{self.root_url}/actions/T0GPUWARDEN/1/response"

    def responses(self) -> list[JsonDict]:
        """JSON bodies posted to ``/actions/...`` (the ``response_url`` of interactions), in order."""
        with self._lock:
            return list(self._responses)

    def hook_posts(self, name: str) -> list[JsonDict]:
        """JSON bodies posted to ``/hooks/<name>``."""
        with self._lock:
            return list(self._hooks.get(name, []))

    def channel_id(self, name: str) -> str:
        """The id of a channel name (creating the channel) or a channel id (itself)."""
        with self._lock:
            return self._slack.channel_id(name)

    def state(self) -> JsonDict:
        """Everything recorded, as JSON (``GET /_recorder/state``)."""
        with self._lock:
            return {
                "channels": dict(self._slack.channels),
                "messages": [
                    {k: v for k, v in vars(m).items() if k != "files"} | {"files": m.files}
                    for m in self._slack.messages
                ],
                "files": [
                    {"id": f.id, "filename": f.filename, "length": f.length, "thread_ts": f.thread_ts}
                    for f in self._slack.files.values()
                    if f.completed
                ],
                "hooks": {k: list(v) for k, v in self._hooks.items()},
                "responses": list(self._responses),
                "mentions": list(self._slack.mentions),
                "calls": len(self._calls),
            }

    # --- the API -----------------------------------------------------------------------------------

    def handle_api(self, method: str, params: JsonDict, token: str | None) -> tuple[int, JsonDict, JsonDict]:
        """Answer one Web API call: (HTTP status, headers, body)."""
        failure = self._take_failure(method, params)
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            body = {"ok": False, "error": "ratelimited" if failure.status == 429 else failure.error}
            if failure.errors:
                body["errors"] = list(failure.errors)
            self._record(method, params, token, failure.status, body)
            return failure.status, headers, body
        if token is None:
            body = {"ok": False, "error": "not_authed"}
        elif token in self._revoked:
            body = {"ok": False, "error": "token_revoked"}
        elif token != self.token:
            body = {"ok": False, "error": "invalid_auth"}
        else:
            with self._lock:
                body = self._slack.call(method, params)
        self._record(method, params, token, 200, body)
        return 200, {}, body

    def _record(self, method: str, params: JsonDict, token: str | None, status: int, body: JsonDict) -> None:
        call = RecordedCall(method, params, token, status, body)
        with self._lock:
            self._calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def handle_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        """Step 2 of ``files_upload_v2``: the raw bytes to the upload URL."""
        failure = self._take_failure("upload")
        if failure is not None:
            self._record("upload", {"file_id": file_id}, None, failure.status, {"ok": False})
            return failure.status, "upload failed"
        with self._lock:
            if not self._slack.store_upload(file_id, data):
                return 404, "no such upload"
        self._record("upload", {"file_id": file_id, "bytes": len(data)}, None, 200, {"ok": True})
        return 200, f"OK - {len(data)}"

    def handle_response(self, path: str, body: bytes) -> tuple[int, str]:
        """A POST to an interaction's ``response_url``; Slack answers ``ok`` as text."""
        failure = self._take_failure("response_url")
        if failure is not None:
            self._record("response_url", {"path": path}, None, failure.status, {"ok": False})
            return failure.status, "failed"
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            return 400, "invalid_payload"
        if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
            return 400, "no_text"
        with self._lock:
            self._responses.append(payload)
        self._record("response_url", payload, None, 200, {"ok": True})
        return 200, "ok"

    def handle_hook(self, name: str, body: bytes) -> tuple[int, JsonDict]:
        """A generic webhook POST to ``/hooks/<name>``."""
        failure = self._take_failure(f"hook:{name}")
        if failure is not None:
            self._record(f"hook:{name}", {}, None, failure.status, {"ok": False})
            return failure.status, {"ok": False}
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            return 400, {"ok": False, "error": "invalid_json"}
        with self._lock:
            self._hooks.setdefault(name, []).append(payload)
        self._record(f"hook:{name}", payload, None, 200, {"ok": True})
        return 200, {"ok": True}


def _port(text: str) -> int:
    """``--port``'s value: a TCP port, or 0 for a free one (bind raised OverflowError on another)."""
    port = int(text) if text.isascii() and text.removeprefix("-").isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0-65535; 0: a free port)")
    return port


def main(argv: list[str] | None = None) -> None:
    """Serve the recorder until interrupted."""
    parser = argparse.ArgumentParser(description="Local Slack Web API stand-in that records calls.")
    parser.add_argument(
        "--port", type=_port, default=0, help="port on 127.0.0.1 (default 0: a free port, logged)"
    )
    parser.add_argument(
        "--token", default="xoxb-gpuwarden-test", help="the bot token it accepts (default %(default)s)"
    )
    parser.add_argument(
        "--channel",
        action="append",
        default=[],
        help="a channel id (C0123456789) or name that exists from the start; repeatable",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    recorder = SlackRecorder(token=args.token, port=args.port, channels=args.channel)
    try:
        recorder.start()
    except OSError as exc:  # as serve and exporter say it (gpuwarden.cli.machine_checks.listen_socket)
        hint = "; another process listens there; stop it or choose another port"
        taken = hint if exc.errno == EADDRINUSE else ""
        where = f"{recorder.host}:{args.port}"
        parser.exit(1, f"error: --port {args.port}: cannot listen on {where}: {exc.strerror}{taken}\n")
    logger.info(
        "slack recorder listening base_url=%s state=%s/_recorder/state", recorder.base_url, recorder.root_url
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        recorder.stop()


if __name__ == "__main__":
    main()
