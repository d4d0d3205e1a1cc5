"""A renewed certificate served without a restart: the TLS context of the web configuration file
(``gpuwarden.webconfig``) is rebuilt when its certificate, key or client CA file changes, as exporter-toolkit
reads them at each new connection and as cert-manager and certbot expect of a server they renew for.

The context the server was given keeps serving; its ``sni_callback``, called at the start of each handshake
(with or without SNI), hands the connection the context built from the files as they are now. The files'
size, modification time and inode are looked at once a second at most; a change rebuilds the context with
the start-up checks. A replacement that does not load (a key that is not the certificate's, a file half
written) keeps the last pair that loaded serving and is logged once, naming the file, until the files change
again: not once per connection. ``Reloading`` does the same for anything read from files: the web
configuration file's users and headers (``gpuwarden.webconfig``) are read again the same way.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from gpuwarden.errors import ConfigError

logger = logging.getLogger("gpuwarden.webconfig")
CHECK_SECONDS = 1.0
Signature = tuple[tuple[int, int, int] | None, ...]
T = TypeVar("T")


def signature(files: Sequence[Path]) -> Signature:
    """What tells a file replaced or rewritten: its size, modification time and inode (None: unreadable)."""
    found: list[tuple[int, int, int] | None] = []
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(found)


class Reloading(Generic[T]):
    """The newest value ``build`` made from ``files`` without a ``ConfigError``; ``first`` until they
    change. ``kept`` ends the warning when a build fails, ``reloaded`` (``{files}``) the line when one
    succeeds."""

    kept = "still using what was read before"
    reloaded = "read again: {files}"

    def __init__(
        self,
        first: T,
        build: Callable[[], T],
        files: Sequence[Path],
        seen: Signature,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.value = first
        self._build = build
        self._files = tuple(files)
        self._loaded = seen  # the files as the value in use was built from them
        self._refused: Signature | None = None  # the files as they were when a rebuild last failed
        self._clock = clock
        self._checked = clock()
        self._lock = threading.Lock()

    def current(self) -> T:
        """The value for a new connection or request: rebuilt first when a file changed since the last look
        (once a second at most)."""
        now = self._clock()
        with self._lock:
            if now - self._checked < CHECK_SECONDS:
                return self.value
            self._checked = now
            seen = signature(self._files)
            if seen in (self._loaded, self._refused):
                return self.value
            try:
                value = self._build()
            except ConfigError as exc:
                self._refused = seen
                logger.warning("%s; %s", exc, self.kept)
                return self.value
            self.value, self._loaded, self._refused = value, seen, None
            logger.info(self.reloaded.format(files=", ".join(map(str, self._files))))
            return value


class ReloadingContext(Reloading[ssl.SSLContext]):
    """The newest TLS context ``build`` made from the certificate, key and client CA ``files``."""

    kept = "still serving the certificate loaded before"
    reloaded = "TLS certificate reloaded from {files}"

    def on_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, given: ssl.SSLContext
    ) -> None:
        """``sni_callback``: hand ``connection`` the newest context. Never raises: a raise fails the
        handshake."""
        try:
            context = self.current()
            if context is not given:
                connection.context = context
        except Exception:  # a handshake is not to fail on a file this server could not look at
            logger.exception("cannot reload the TLS certificate")


def reload_when_renewed(
    context: ssl.SSLContext, build: Callable[[], ssl.SSLContext], files: Sequence[Path], seen: Signature
) -> ReloadingContext:
    """Make ``context`` serve each new connection with ``build``'s newest context, rebuilt when ``files``
    change (``seen``: their signature before ``context`` was built from them)."""
    reloading = ReloadingContext(context, build, files, seen)
    context.sni_callback = reloading.on_hello
    return reloading
