"""What another server's answer says, in one line: a proxy's error page, or whatever else answers at a
``--url`` that is not the server the command talks to.

Such a body was printed whole in the error line: nginx's 502 page is seven lines of HTML, Python's
``http.server`` fourteen, a web app's page thousands, and an ESC sequence in it reached the terminal. The
line now says what the page says (its title), or the first line of a text answer, as ``loadgen`` does.
"""

from __future__ import annotations

import html
import re

from gpuwarden.printable import SAID_CHARS, clipped

_HTML = re.compile(r"\A\s*(?:<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.IGNORECASE)
_TITLE = re.compile(r"<(title|h1)[^>]*>(.*?)</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_COMMENT_OR_CODE = re.compile(r"<!--.*?-->|<(script|style)[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def foreign_said(body: str) -> str:
    """``body`` in one line of at most ``SAID_CHARS`` characters, its control characters escaped: an HTML
    page's title (else its first heading, else its first line of text), another body's first line that is
    not blank; "..." where more was left out; "" for an empty or blank body."""
    text = _page_text(body) if _HTML.match(body) else body
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return clipped(" ".join(lines[0].split()), SAID_CHARS, more=len(lines) > 1 and not _HTML.match(body))


def _page_text(page: str) -> str:
    """What an HTML page says first: its ``<title>`` or first ``<h1>``, else its text without the tags."""
    for match in _TITLE.finditer(page):
        found = html.unescape(_TAG.sub(" ", match.group(2))).strip()
        if found:
            return found
    return html.unescape(_TAG.sub("\n", _COMMENT_OR_CODE.sub("", page)))
