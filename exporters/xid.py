"""XIDs as events: a watcher thread on the NVML event set feeds a ledger of counts and last-seen times.

dcgm-exporter keeps only the last XID in a gauge, so a burst of XIDs between scrapes, or the same XID
twice, is lost. Here every event returned by ``nvmlEventSetWait`` increments a counter per (GPU, XID) and
stamps its receipt time (NVML events carry no timestamp); the collector reads the ledger at each collection.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import pynvml

from gpuwarden.clock import Clock

logger = logging.getLogger(__name__)

XID_EVENT = 0x8  # nvmlEventTypeXidCriticalError
_NVML_ERROR_TIMEOUT = 10
_NVML_ERROR_NOT_SUPPORTED = 3
# What a wait on an event set answers once NVML was shut down (Uninitialized) or initialised again since
# (InvalidArgument: the set is unknown): the set is gone for good.
_EVENT_SET_GONE = frozenset({1, 2})
# Failed waits in a row after which the watcher counts as not watching and builds a new event set. The
# thread backs off a second after each, so three is about 3 s in which no XID could arrive: one failed wait
# (a driver hiccup) leaves gpuwarden_xid_watcher_up alone, a set that fails for good reads 0 by the next
# scrape. Every third failure after that builds it again.
FAILED_WAITS_BEFORE_REBUILD = 3
# Seconds past its own timeout after which a wait (or a registration) of the watcher counts as hung: no XID
# arrives while it does, and NVML calls hang for minutes when a GPU falls off the bus. Real seconds, as the
# collection's deadline: no clock can tell a hang.
HUNG_AFTER_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class XidCount:
    """What the ledger knows about one XID code on one GPU."""

    count: int
    last_seen: float


class XidLedger:
    """Thread-safe XID counts per GPU UUID. Every recorded event counts; nothing is overwritten."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[int, XidCount]] = {}
        self._last: dict[str, int] = {}
        self._watched: set[str] = set()

    def watch(self, uuid: str) -> None:
        """Mark a GPU as registered for XID events (its DCGM last-XID gauge then reads 0 until one comes)."""
        with self._lock:
            self._watched.add(uuid)

    def record(self, uuid: str, xid: int, at: float) -> None:
        """Count one XID event on a GPU, received at ``at`` (Unix seconds)."""
        with self._lock:
            per_gpu = self._counts.setdefault(uuid, {})
            old = per_gpu.get(xid)
            per_gpu[xid] = XidCount((old.count if old else 0) + 1, at)
            self._last[uuid] = xid

    def snapshot(self, uuid: str) -> tuple[int | None, dict[int, XidCount]]:
        """(last XID or 0 if watched and none yet, None if not watched; counts by XID) for one GPU."""
        with self._lock:
            counts = dict(self._counts.get(uuid, {}))
            last = self._last.get(uuid)
            if last is None and (uuid in self._watched or counts):
                last = 0
            return last, counts


def handle_key(handle: Any) -> Hashable:
    """A key that is equal for two NVML handles of the same device (ctypes pointers compare by address)."""
    if isinstance(handle, ctypes._Pointer):
        return ("ptr", ctypes.cast(handle, ctypes.c_void_p).value)
    try:
        hash(handle)
    except TypeError:
        return ("id", id(handle))
    key: Hashable = handle
    return key


class XidWatcher:
    """One thread per NVML instance waiting on ``nvmlEventSetWait`` for XID events.

    GPUs are registered at start and, for any that could not be then (lost at start, added later), when
    the collector offers them once they answer again (``offer``); the registration itself runs on the
    watcher's thread, between two waits, so the event set is only ever touched there. A watcher whose
    event set could not be created, or whose waits keep failing (``FAILED_WAITS_BEFORE_REBUILD`` in a row),
    is not watching, builds a new set, and says so (``watching``, ``errors``, ``last_error``) until a wait
    answers again.
    """

    def __init__(
        self,
        nvml: Any,
        ledger: XidLedger,
        clock: Clock,
        *,
        wait_ms: int = 500,
        hung_after: float = HUNG_AFTER_SECONDS,
    ) -> None:
        self._nvml = nvml
        self._hung_after = wait_ms / 1000 + hung_after
        self._busy_since: float | None = None  # time.monotonic() when the thread's current poll began
        self._hung_said = False
        self._ledger = ledger
        self._clock = clock
        self._wait_ms = wait_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_registration = threading.Event()  # set once the thread's first registration ended
        self._event_set: Any = None
        self._devices: dict[Hashable, str] = {}
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}  # UUID -> handle, offered by the collector
        self._registered: set[str] = set()
        self._handles: dict[str, Hashable] = {}  # UUID -> the key of the handle it was registered with
        self._unsupported: set[str] = set()  # GPUs without XID events: never asked again
        self._said: dict[str, str] = {}  # the last failure logged, by what failed ("": the event set, a wait)
        self._failed_waits = 0  # in a row; a wait that answers (an event or a timeout) ends the run
        self.errors = 0  # failed waits, registrations and event-set creations
        self.last_error = ""

    @property
    def watching(self) -> bool:
        """True while the event set exists, its waits answer and the thread (when started) runs, past its
        first registration (a hung one waits for no XID). Counting only the set's existence kept it 1 while
        every wait failed and no XID arrived."""
        alive = self._thread is None or (self._thread.is_alive() and self._first_registration.is_set())
        waits = self._failed_waits < FAILED_WAITS_BEFORE_REBUILD and not self.hung_for
        return self._event_set is not None and waits and alive and not self._stop.is_set()

    @property
    def hung_for(self) -> float:
        """Seconds the thread's current NVML call has run past its timeout and a grace, 0 if it has not:
        a wait that does not return kept the watcher "watching" while no XID could arrive."""
        since = self._busy_since
        if since is None:
            return 0.0
        age = time.monotonic() - since
        return age if age > self._hung_after else 0.0

    def problem(self) -> str:
        """Why it is not watching now, as /healthz says it: a hung call, else the last error."""
        hung = self.hung_for
        if hung:
            return f"not watching: its NVML call has not returned for {hung:.0f} s, XIDs are not seen"
        return self.last_error

    def say_hung(self) -> None:
        """Log a hang of the watcher's NVML call once, and its end (the collector asks at each collection)."""
        hung = self.hung_for
        if hung and not self._hung_said:
            logger.warning("xid watcher: an NVML call has not returned for %.0f s, XIDs are not seen", hung)
        elif not hung and self._hung_said:
            logger.info("xid watcher: its hung NVML call returned")
        self._hung_said = bool(hung)

    @property
    def registered(self) -> int:
        """GPUs whose XID events reach the event set."""
        with self._lock:
            return len(self._registered)

    def register(self) -> int:
        """Create the event set and register every GPU that supports XID events; return how many."""
        nvml = self._nvml
        if self._event_set is None:
            self._event_set = nvml.nvmlEventSetCreate()
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except pynvml.NVMLError as exc:
                self._failed(f"gpu {index}: {exc}", key=f"gpu {index}")
                continue
            self._register(handle, uuid)
        return self.registered

    def offer(self, handle: Any, uuid: str) -> None:
        """A GPU answered the collector: register it for XID events if it is not yet, or if it answers under
        another handle than the one registered (back from falling off the bus, after a PCI rescan: events
        registered with the old handle never came, and its XIDs were missed) (thread-safe)."""
        if not uuid:
            return
        key = handle_key(handle)
        with self._lock:
            if uuid in self._unsupported:
                return
            if uuid not in self._registered or self._handles.get(uuid) != key:
                self._pending[uuid] = handle

    def _register(self, handle: Any, uuid: str) -> bool:
        nvml = self._nvml
        try:
            if not nvml.nvmlDeviceGetSupportedEventTypes(handle) & XID_EVENT:
                self._no_xid_events(uuid)
                return False
            nvml.nvmlDeviceRegisterEvents(handle, XID_EVENT, self._event_set)
        except pynvml.NVMLError as exc:
            if getattr(exc, "value", None) == _NVML_ERROR_NOT_SUPPORTED:
                # The GPU or platform has no such events (NVML's words for nvmlDeviceRegisterEvents): asked
                # again at every collection, it was a warning and an error every few seconds for ever.
                self._no_xid_events(uuid)
                return False
            self._failed(f"register {uuid}: {exc}", key=uuid)
            return False
        self._said.pop(uuid, None)  # a later failure of this GPU is said again
        key = handle_key(handle)
        with self._lock:
            old = self._handles.get(uuid)
            if old is not None and old != key:
                self._devices.pop(old, None)
                logger.info("xid events registered again under a new handle gpu_uuid=%s", uuid)
            self._devices[key] = uuid
            self._handles[uuid] = key
            self._registered.add(uuid)
        self._ledger.watch(uuid)
        logger.debug(
            "xid events registered gpu_uuid=%s", uuid
        )  # one line per GPU: the start-up summary counts them
        return True

    def _register_offered(self) -> None:
        """Register the GPUs offered since the last wait, but none that a new event set's ``register`` took
        meanwhile: the collector offers every GPU while the set is being replaced, and a GPU registered
        twice on one set delivered each XID twice (in the simulator)."""
        with self._lock:
            offered, self._pending = self._pending, {}
            offered = {
                uuid: h
                for uuid, h in offered.items()
                if uuid not in self._registered or self._handles.get(uuid) != handle_key(h)
            }
        for uuid, handle in offered.items():
            self._register(handle, uuid)

    def _no_xid_events(self, uuid: str) -> None:
        """A GPU that delivers no XID events: never asked again, its DCGM XID gauge absent."""
        with self._lock:
            self._unsupported.add(uuid)
        logger.debug("xid events not supported, not watched gpu_uuid=%s", uuid)  # the start-up line counts

    def _failed(self, message: str, key: str = "") -> None:
        """Count a failure; log it when it differs from the last one said for ``key`` (a GPU's UUID for its
        registration, offered again at every collection: one key for all GPUs logged every retry of two GPUs
        that failed in turn)."""
        self.errors += 1
        if self._said.get(key) != message:
            logger.warning("xid watcher: %s", message)
            self._said[key] = message
        self.last_error = message

    def start(self, wait: float | None = None) -> None:
        """Start the watcher thread, which registers the GPUs (if not yet) before its first wait and retries
        what fails; return once that registration ended, or after ``wait`` seconds (None: no limit).

        The registration runs on the thread, not the caller's: a GPU falling off the bus can hang the NVML
        call that registers it, and the exporter, which started its watchers before serving, never served."""
        self._thread = threading.Thread(target=self._run, name="xid-watcher", daemon=True)
        self._thread.start()
        self.wait_registered(wait)

    def wait_registered(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit) for the thread's first registration to end;
        False if it has not (an NVML call hangs there)."""
        return self._first_registration.wait(timeout)

    def _register_first(self) -> None:
        said = "not watching: registering the GPUs for XID events, an NVML call has not returned"
        try:
            if self._event_set is None:
                self.last_error = said  # read by /healthz only while the registration lasts
                self.register()
                if self.last_error == said:
                    self.last_error = ""
        except pynvml.NVMLError as exc:
            self._failed(f"cannot create the NVML event set: {exc}")
        except Exception as exc:  # a loop boundary: the thread's polls register again
            logger.exception("xid watcher registration failed")
            self._failed(f"registration failed: {exc!r}")
        finally:
            self._first_registration.set()

    def request_stop(self) -> None:
        """Ask the thread to stop without waiting: it notices within one wait period (NVML's wait cannot be
        woken), so stopping many watchers asks them all first and then ``stop``s each."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop, wait for it, then free the event set."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._event_set is not None:
            self._free_event_set()
            self._event_set = None

    def poll(self) -> bool:
        """Register what was offered, wait once for an event and record it; False on a timeout.

        The thread calls this in a loop; a watcher without an event set tries to create one first.
        """
        if self._event_set is None:
            self.register()
        self._register_offered()
        try:
            data = self._nvml.nvmlEventSetWait(self._event_set, self._wait_ms)
        except pynvml.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == _NVML_ERROR_TIMEOUT:
                self._waits_answer()
                return False
            self._failed_waits += 1
            if code in _EVENT_SET_GONE:
                self._drop_event_set()
            elif self._failed_waits % FAILED_WAITS_BEFORE_REBUILD == 0:
                self._rebuild_event_set()
            raise
        self._waits_answer()
        if int(data.eventType) & XID_EVENT:
            with self._lock:
                uuid = self._devices.get(handle_key(data.device))
            if uuid is None:
                uuid = _text(self._nvml.nvmlDeviceGetUUID(data.device))
            self._ledger.record(uuid, int(data.eventData), self._clock.time())
        return True

    def _waits_answer(self) -> None:
        if self._failed_waits >= FAILED_WAITS_BEFORE_REBUILD:
            logger.info("xid watcher: NVML waits answer again after %d failed", self._failed_waits)
        self._failed_waits = 0

    def _rebuild_event_set(self) -> None:
        """Free an event set whose waits keep failing (NVML still knows it: not freeing it would leak one
        each time) and drop it, so the next poll builds a new one and registers every GPU on it."""
        self._free_event_set()
        self._drop_event_set()

    def _free_event_set(self) -> None:
        """Give the event set back to NVML; a refusal is only logged (one NVML forgot cannot be freed)."""
        try:
            self._nvml.nvmlEventSetFree(self._event_set)
        except pynvml.NVMLError as exc:
            logger.debug("event set free failed error=%s", exc)

    def _drop_event_set(self) -> None:
        """Forget an event set NVML no longer knows (shut down and initialised again, as after a driver
        reload): waiting on it would fail forever and no XID would arrive. The next poll creates a new one
        and registers every GPU again."""
        self._event_set = None
        with self._lock:
            self._devices.clear()
            self._handles.clear()
            self._registered.clear()

    def _poll_timed(self) -> None:
        self._busy_since = time.monotonic()
        try:
            self.poll()
        finally:
            self._busy_since = None

    def _run(self) -> None:
        self._register_first()
        while not self._stop.is_set():
            try:
                self._poll_timed()
            except Exception as exc:  # a loop boundary: log (once per kind), count, keep watching
                message = f"wait failed: {exc!r}"
                if self._failed_waits >= FAILED_WAITS_BEFORE_REBUILD:
                    # Said in /healthz too: the watcher is down although its event set may exist.
                    message = f"not watching: NVML waits keep failing, XIDs are not seen: {exc!r}"
                    if message != self.last_error:
                        logger.warning(
                            "xid watcher: %d NVML waits failed in a row, XIDs are not seen: %s; building a "
                            "new event set every %d failures",
                            self._failed_waits,
                            exc,
                            FAILED_WAITS_BEFORE_REBUILD,
                        )
                elif message != self.last_error and isinstance(exc, pynvml.NVMLError):
                    # NVML said why (a GPU or node gone, the driver reloading): its words, not a traceback
                    logger.warning("xid watcher: NVML wait failed: %s; trying again every second", exc)
                elif message != self.last_error:
                    logger.exception("xid watcher wait failed")
                self.errors += 1
                self.last_error = message
                self._stop.wait(1.0)  # back off; also wakes at once on stop()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
