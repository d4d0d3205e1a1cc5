"""A TCP forwarder in front of a real server that a test can turn into a host that stops answering."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType


class SilentableProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``silence`` closes every forwarded connection and from then
    on accepts new ones (the kernel completes the handshake) without ever answering, as a load balancer in
    front of a dead store host does; ``resume`` forwards again."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.silent = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = port
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._held: list[socket.socket] = []  # accepted while silent: read from by nobody
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silentable-proxy", daemon=True)

    def __enter__(self) -> SilentableProxy:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._listener.close()
        self._close_all()
        for held in self._held:
            held.close()

    def silence(self) -> None:
        """Drop what is forwarded now; accept and hold every later connection."""
        self.silent.set()
        self._close_all()

    def resume(self) -> None:
        """Forward new connections again."""
        self.silent.clear()

    def _close_all(self) -> None:
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.silent.is_set():
                self._held.append(client)
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as sel, client, upstream:
            for sock in peers:
                sel.register(sock, selectors.EVENT_READ)
            while True:
                try:
                    for key, _ in sel.select(timeout=0.5):
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peers[key.fileobj].sendall(data)  # type: ignore[index]
                except (OSError, ValueError):  # closed by ``silence`` or by an end
                    return
