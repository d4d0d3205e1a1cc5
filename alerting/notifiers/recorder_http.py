"""The Slack stand-in's HTTP surface: requests read, routed to ``SlackRecorder``, answers written.

Slack's Web API calls under ``/api/`` (form-encoded or JSON, the token in the header or a field), the
upload URL's bytes under ``/upload/v1/``, interactions' ``response_url`` under ``/actions/``, webhooks under
``/hooks/<name>`` and ``/_recorder/state``; each is answered whole, or trickled in chunks where the recorder
says so (``SlackRecorder.take_trickle``). What the calls do is ``alerting.notifiers.recorder``'s.
"""

from __future__ import annotations

import json
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from alerting.notifiers.workspace import JsonDict

if TYPE_CHECKING:
    from alerting.notifiers.recorder import SlackRecorder

# The recorder's logger, as before this module was split from it: what a request logs is the recorder's.
logger = logging.getLogger("alerting.notifiers.recorder")

_JSON_FIELDS = ("blocks", "attachments", "metadata", "files")


class RecorderServer(ThreadingHTTPServer):
    """The HTTP server, quiet when a client goes away mid-request (a test killed it): socketserver printed
    a traceback to stderr for each such connection."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _decode_fields(params: JsonDict) -> JsonDict:
    """Form-encoded calls carry JSON in strings; decode the fields Slack defines as JSON."""
    for key in _JSON_FIELDS:
        value = params.get(key)
        if isinstance(value, str):
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = {"__invalid_json__": value}
    return {k: v for k, v in params.items() if v is not None}


def _parse_params(query: str, content_type: str, body: bytes) -> JsonDict:
    params: JsonDict = dict(parse_qsl(query, keep_blank_values=True))
    if body:
        if content_type.startswith("application/json"):
            loaded = json.loads(body)
            if isinstance(loaded, dict):
                params.update(loaded)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
    return _decode_fields(params)


def handler_for(recorder: SlackRecorder) -> type[BaseHTTPRequestHandler]:
    """The request handler class that answers for ``recorder``: one class per recorder, bound to it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("recorder %s", format % args)

        def _send(
            self,
            status: int,
            body: bytes,
            content_type: str,
            headers: dict[str, str] | None = None,
            *,
            trickle: float | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if trickle is None:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if trickle is None:
                self.wfile.write(body)
                return
            try:
                self.wfile.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")
                self.wfile.flush()
                recorder.trickle(self._write_now, trickle)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client gave up on the answer (a deadline): nothing more to say
                self.close_connection = True

        def _write_now(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        def _json(
            self,
            status: int,
            data: JsonDict,
            headers: dict[str, str] | None = None,
            *,
            trickle: float | None = None,
        ) -> None:
            body = json.dumps(data).encode()
            self._send(status, body, "application/json; charset=utf-8", headers, trickle=trickle)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            self._route(b"")

        def do_POST(self) -> None:
            self._route(self._body())

        def _route(self, body: bytes) -> None:
            url = urlsplit(self.path)
            path = url.path
            if path.startswith("/api/"):
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
                try:
                    params = _parse_params(url.query, self.headers.get("Content-Type", ""), body)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    self._json(200, {"ok": False, "error": "invalid_json"})
                    return
                if token is None and isinstance(params.get("token"), str):
                    token = params.pop("token")
                method = path.removeprefix("/api/")
                status, headers, data = recorder.handle_api(method, params, token)
                self._json(status, data, headers, trickle=recorder.take_trickle(method))
            elif path.startswith("/upload/v1/"):
                status, text = recorder.handle_upload(path.removeprefix("/upload/v1/"), body)
                trickle = recorder.take_trickle("upload")
                self._send(status, text.encode(), "text/plain; charset=utf-8", trickle=trickle)
            elif path.startswith("/actions/"):
                status, text = recorder.handle_response(path, body)
                trickle = recorder.take_trickle("response_url")
                self._send(status, text.encode(), "text/plain; charset=utf-8", trickle=trickle)
            elif path.startswith("/hooks/"):
                status, data = recorder.handle_hook(path.removeprefix("/hooks/"), body)
                self._json(status, data)
            elif path == "/_recorder/state":
                self._json(200, recorder.state())
            else:
                self._json(404, {"ok": False, "error": "not_found"})

    return Handler
