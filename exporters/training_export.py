"""How training metrics leave the process: pushed to a Pushgateway from a background thread, or served.

The push runs in its own thread so that a training loop never waits on the gateway: ``request()`` only
marks the metrics as changed. The thread pushes the registries as they are at that moment (the latest
state wins: nothing queues, however often the loop asks), and after a failure it tries again by itself,
asked or not, waiting before each try and doubling the wait up to ``MAX_BACKOFF_SECONDS``, so a dead
gateway costs one blocked thread and one log line per try, not a timeout per training step. ``close()``
makes one last push of what is new or not yet pushed.
"""

from __future__ import annotations

import errno
import logging
import threading
import urllib.error
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server
from prometheus_client.exposition import basic_auth_handler, default_handler
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gpuwarden.redaction import hidden_password
from gpuwarden.urls import host_port, pushgateway_base_url, without_credentials

logger = logging.getLogger(__name__)

DEFAULT_PUSH_TIMEOUT_SECONDS = 5.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0


def pushgateway_url(raw: str) -> str:
    """``raw`` as a Pushgateway base URL (``gpuwarden.urls.pushgateway_base_url``); else ``ValueError``."""
    return pushgateway_base_url(raw)


def auth_handler(credentials: tuple[str, str] | None) -> Callable[..., Callable[[], None]]:
    """The ``push_to_gateway`` handler that sends ``credentials`` (user, password) as HTTP basic auth, or
    prometheus_client's default without them."""
    return default_handler if credentials is None else BasicAuth(*credentials)


class BasicAuth:
    """prometheus_client's ``basic_auth_handler`` with a user and password, whose repr hides the password,
    and the user when it comes alone (a ``functools.partial``'s writes them, and an error reporter that
    records a frame's locals sends it on)."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user
        self._password = password

    def __call__(
        self, url: str, method: str, timeout: float | None, headers: list[tuple[str, str]], data: bytes
    ) -> Callable[[], None]:
        return basic_auth_handler(
            url, method, timeout, headers, data, username=self._user, password=self._password
        )

    def __repr__(self) -> str:
        # A user given without a password (``https://TOKEN@gateway``) is the credential itself.
        user = repr(self._user) if self._password else "'***'"
        return f"BasicAuth(user={user}, password='***')"


class PushStats:
    """What many pushers did, for the pushing process's own ``/metrics``: the gateway cannot say that a push
    never arrived. Thread-safe; ``now`` gives Unix seconds."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self.pushes = 0
        self.failures: dict[str, int] = {}
        self.last_success: float | None = None

    def succeeded(self) -> None:
        """One group reached the gateway."""
        with self._lock:
            self.pushes += 1
            self.last_success = self._now()

    def snapshot(self) -> tuple[int, dict[str, int], float | None]:
        """(groups pushed, failed groups by reason, last success), read together."""
        with self._lock:
            return self.pushes, dict(self.failures), self.last_success

    def failed(self, reason: str, groups: int = 1) -> None:
        """``groups`` groups did not reach the gateway, for ``reason``."""
        with self._lock:
            self.failures[reason] = self.failures.get(reason, 0) + groups


def failure_reason(exc: BaseException) -> str:
    """``http_<status>`` when the gateway answered with an error, ``unreachable`` when it was not reached,
    ``error`` for anything else (a bug, counted rather than raised)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"http_{exc.code}"
    return "unreachable" if isinstance(exc, OSError) else "error"


GroupKey = dict[str, str]
Groups = Callable[[], Iterable[tuple[GroupKey, CollectorRegistry]]]
PushFn = Callable[..., None]


class BackgroundPusher:
    """Pushes groups to one Pushgateway from a daemon thread; callers never block and never see errors.

    ``groups()`` lists the groups to push (grouping key and registry), read at push time.
    """

    def __init__(
        self,
        gateway: str,
        job: str,
        groups: Groups,
        *,
        timeout: float = DEFAULT_PUSH_TIMEOUT_SECONDS,
        on_failure: Callable[[GroupKey], None] = lambda key: None,
        push: PushFn | None = None,
        stats: PushStats | None = None,
    ) -> None:
        # A bool is an int to Python: push_timeout=True was taken as 1 s.
        if isinstance(timeout, bool) or not (isinstance(timeout, int | float) and 0 < timeout < float("inf")):
            raise ValueError(f"push_timeout must be a number of seconds > 0, got {timeout!r}")
        given = pushgateway_url(gateway)
        self._shown_gateway = hidden_password(given)  # what the log names: a password stays out
        self.gateway, credentials = without_credentials(given)  # the URL pushed to
        self._handler = auth_handler(credentials)
        self.job = job
        self.timeout = float(timeout)
        self.pushes = 0  # groups pushed
        self.failures = 0  # groups that failed to push, or were skipped after the gateway was unreachable
        self.last_ok: bool | None = None  # the last round; None before any
        self._groups = groups
        self._on_failure = on_failure
        self._stats = stats
        self._push = push  # None: prometheus_client's push_to_gateway, looked up at push time
        self._dirty = threading.Event()  # a push was asked for and has not started
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._backoff = 0.0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def after_fork(self) -> None:
        """Start afresh in a child forked from this process: the pushing thread is not in the child (its
        pushes were lost without a word), and a lock it held then stays held. A closed pusher stays closed."""
        closing = self._closing.is_set()
        self._dirty, self._wake, self._closing = threading.Event(), threading.Event(), threading.Event()
        if closing:
            self._closing.set()
        self._idle = threading.Condition()
        self._busy, self._backoff, self.last_ok = False, 0.0, None
        self._thread = None
        self._start_lock = threading.Lock()

    def request(self) -> bool:
        """Push the current state soon; returns at once (a request while one is pending adds nothing).

        False once ``close()`` began: nothing more is pushed."""
        if self._closing.is_set():
            return False
        self._dirty.set()
        self._wake.set()
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=f"push-{self.job}", daemon=True)
                    self._thread.start()
        return True

    def push_now(self) -> bool:
        """Push every group in the calling thread; True when all succeeded. Never raises."""
        groups = list(self._groups())
        ok = True
        for index, (key, registry) in enumerate(groups):
            try:
                (self._push or push_to_gateway)(
                    self.gateway,
                    job=self.job,
                    registry=registry,
                    grouping_key=key,
                    timeout=self.timeout,
                    handler=self._handler,
                )
                self.pushes += 1
                if self._stats is not None:
                    self._stats.succeeded()
                continue
            except OSError as exc:  # refused, timed out, unresolvable (URLError), or the gateway's HTTPError
                logger.warning(
                    "training metrics push failed: %s",
                    exc,
                    extra={"job": self.job, "gateway": self._shown_gateway, "group": key},
                )
                failed = groups[index:] if _unreachable(exc) else [(key, registry)]
                reason = failure_reason(exc)
            except Exception:  # the push boundary: whatever else a push raises is counted, not raised
                logger.exception("training metrics push failed", extra={"job": self.job, "group": key})
                failed = [(key, registry)]
                reason = "error"
            ok = False
            if self._stats is not None:
                self._stats.failed(reason, len(failed))
            for failed_key, _ in failed:
                self.failures += 1
                self._on_failure(failed_key)
            if len(failed) > 1:  # the gateway is unreachable: the other groups would each wait a timeout
                break
        self.last_ok = ok
        return ok

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no push is pending or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy and not self._dirty.is_set(), timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop the thread after one last push of what was asked for; False if it did not end in time.

        The wait is bounded by ``timeout`` (default: two push timeouts), so a black-holed gateway cannot
        hold the end of a training run longer than that.
        """
        self._closing.set()
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(self.timeout * 2 if timeout is None else timeout)
        return not thread.is_alive()

    def next_delay(self, ok: bool) -> float:
        """Seconds to wait before the next push, after a round that succeeded (``ok``) or failed."""
        if ok:
            self._backoff = 0.0
        else:
            self._backoff = min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, self._backoff * 2))
        return self._backoff

    def _round(self) -> bool:
        with self._idle:
            self._busy = True
            self._dirty.clear()
        try:
            return self.push_now()
        finally:
            with self._idle:
                self._busy = False
                self._idle.notify_all()

    def _run(self) -> None:
        unpushed = False  # the last round failed: the state it pushed is not on the gateway
        while not self._closing.is_set():
            if not unpushed:
                self._wake.wait()
            self._wake.clear()
            if self._closing.is_set() or not (unpushed or self._dirty.is_set()):
                continue
            # A failed round is tried again after its backoff, asked or not: a rank that hangs right after
            # a failed push asks for no other, and its last state is the one that shows the stall.
            unpushed = not self._round()
            delay = self.next_delay(not unpushed)
            if delay:
                self._closing.wait(delay)  # back off; requests meanwhile only mark the state dirty
        if unpushed or self._dirty.is_set():  # closing: push what is not on the gateway yet, once
            self._round()


def _unreachable(exc: OSError) -> bool:
    """True when the gateway was not reached at all (refused, timed out, unresolvable), not an HTTP error."""
    return not isinstance(exc, urllib.error.HTTPError)


class LabelledCollector(Collector):
    """Another registry's metrics with extra labels on every sample (serve mode's ``job``/``namespace``)."""

    def __init__(self, registry: CollectorRegistry, labels: Mapping[str, str]) -> None:
        self._registry = registry
        self._labels = dict(labels)

    def collect(self) -> Iterator[Metric]:
        """The wrapped registry's families, each sample labelled."""
        for family in self._registry.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            out.samples = [s._replace(labels={**self._labels, **s.labels}) for s in family.samples]
            yield out


def serve_registry(
    registry: CollectorRegistry, labels: Mapping[str, str], port: int, addr: str
) -> tuple[int, Callable[[], None]]:
    """Serve ``registry`` with ``labels`` added on ``addr:port`` from a daemon thread.

    Returns the bound port (the real one when ``port`` is 0) and a function that stops the server.
    """
    served = CollectorRegistry(auto_describe=True)
    served.register(LabelledCollector(registry, labels))
    try:
        server, thread = start_http_server(port, addr=addr, registry=served)
    except OSError as exc:  # bare "[Errno 98] Address already in use" said neither where nor what to do
        taken = exc.errno in (errno.EADDRINUSE, errno.EACCES)
        hint = "; another process listens there: stop it or give serve() another port" if taken else ""
        where = host_port(addr, port)
        raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}{hint}") from exc

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5.0)

    return int(server.server_address[1]), stop
