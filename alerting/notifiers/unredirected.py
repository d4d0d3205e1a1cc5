"""slack-sdk's ``WebClient`` without urllib's redirects.

slack-sdk calls the Web API through urllib's default opener, which follows a 301, 302 or 303 as a GET to
wherever ``Location`` points, another host included, with every header of the call but its content headers:
the bot token's ``Authorization: Bearer xoxb-...`` went along, and that host's ``{"ok": true}`` was taken
as the message posted. Slack's API does not redirect; a ``slack.base_url`` that does (a moved stand-in, a
proxy sending people to a login page) is answered as the error it is, as the webhook notifier does.
"""

from __future__ import annotations

from typing import Any
from urllib.request import (
    HTTPRedirectHandler,
    HTTPSHandler,
    OpenerDirector,
    ProxyHandler,
    Request,
    build_opener,
)

from slack_sdk import WebClient


class _RedirectRefused(HTTPRedirectHandler):
    """Follows nothing: urllib then raises the 3xx as an ``HTTPError``, which slack-sdk reads as an answer."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """No request to send instead."""
        return None


class UnredirectedWebClient(WebClient):
    """A ``WebClient`` whose Web API calls follow no redirect (file uploads go to Slack's own upload URL)."""

    def _opener(self) -> OpenerDirector:
        handlers: list[Any] = [_RedirectRefused(), HTTPSHandler(context=self.ssl)]
        if isinstance(self.proxy, str):  # slack-sdk's own check refuses any other proxy, before this
            handlers.append(ProxyHandler({"http": self.proxy, "https": self.proxy}))
        return build_opener(*handlers)

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        """slack-sdk's call of ``req`` (its status, headers and body), through an opener without redirects."""
        if not url.lower().startswith("http") or (self.proxy is not None and not isinstance(self.proxy, str)):
            return super()._perform_urllib_http_request_internal(url, req)  # its refusal (file://, a proxy)
        with self._opener().open(req, timeout=self.timeout) as resp:
            charset = resp.headers.get_content_charset() or "utf-8"
            return {"status": resp.code, "headers": resp.headers, "body": resp.read().decode(charset)}
