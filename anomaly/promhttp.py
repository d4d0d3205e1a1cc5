"""The HTTP half of ``PromQLSource``: its ``query_range`` and ``query_instant`` requests, within the read's
deadline, and every HTTP and payload error translated into ``SourceError`` here, in one place."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
import numpy as np

from anomaly.promframes import _labels, _matrix_to_frame, _millis, _number, _seconds
from anomaly.promquery import PromQuery
from anomaly.read_said import say_parts
from anomaly.sources import Frame, joined
from gpuwarden.errors import SourceError
from gpuwarden.jsonload import collector_paused, loads_without_gc
from gpuwarden.redaction import shown_redirect

# The source's logger: an annotated answer is logged as it was before this half left ``anomaly.promql`` (an
# operator filters on the name).
logger = logging.getLogger("anomaly.promql")

MAX_POINTS = 11_000  # steps per query_range call: Prometheus refuses more points per series
# Clean reads of a query read in parts before one tries parts twice as long: one refused request in so many
# reads where the limit stays (at a 60 s tick, one each half hour).
GROW_AFTER = 30
# Prometheus' (2.46+) annotations of a whole answer, sent as warnings: an ill-formed histogram bucket, a
# quantile out of range, a rate() of a name that may not be a counter. Any other warning is a partial answer.
_ANNOTATIONS = ("PromQL warning: ", "PromQL info: ")
# Answers that say the read was too long or too big: Prometheus' sample limit and other execution limits
# (422; Mimir's and Thanos' too), a proxy's gateway timeout (504). Prometheus' own query timeout is 503 with
# errorType "timeout".
_OVERLONG_STATUS = frozenset({422, 504})
# VictoriaMetrics' errors begin with the query and the range asked; the limit comes after, named by its flag.
_VM_QUERY_RANGE = re.compile(r'^error when executing query=".*?" on the time range \([^)]*\): ')
_LIMIT_FLAG = re.compile(r"--?(?:search|query)\.[\w.*]+")
_WHY_CHARS = 160  # of a refusal's error, in the lines that say a read was refused or shortened
# Prometheus' errors for its query limits (promql.ErrTooManySamples, ErrQueryTimeout), which name no flag.
_PROMETHEUS_LIMITS = (
    ("would load too many samples into memory", "--query.max-samples"),
    ("query timed out in", "--query.timeout"),
)


class OverlongRead(SourceError):
    """A read its server could not answer in time or within its limits (a read timeout, Prometheus' sample
    limit, HTTP 422 or 504): a shorter window may be read where the same one fails again."""

    def __init__(
        self, message: str, *, source: str, why: str, retryable: bool = True, refused: bool = True
    ) -> None:
        self.why = why
        # The server answered that it refuses the read (HTTP 422, 504, Prometheus' query timeout): a part of
        # it may be answered. Not where this client gave up waiting: the read's time is spent.
        self.refused = refused
        super().__init__(message, source=source, retryable=retryable)


class PromQLClient:
    """The requests of ``PromQLSource`` (``anomaly.promql``), its base: the attributes below are set by its
    ``__init__``, which holds all its state."""

    name: str
    queries: list[PromQuery]
    deadline_seconds: float
    _client: httpx.Client
    _server: str  # the base URL, its password hidden
    _setting: str  # the setting that gives the base URL, named where an answer says to use another
    _config_file: str | None  # where the queries are written, named where one cannot be parsed
    _timeout: float
    _sent: dict[str, float]  # query -> when its last request went out (time.monotonic)
    _logged_annotations: dict[str, str]  # query -> its PromQL annotations, as last logged
    _parts: dict[str, int]  # query -> the most steps a request asks, where its server refused more
    _unsplit: set[str]  # queries refused at one step since their last good read: not refused for size
    _clean: dict[str, int]  # query -> its reads in parts since one was refused or tried longer parts
    # Part sizes found this read, said in one line by ``_say_parts`` at its end: a warm-up refused by
    # VictoriaMetrics' -search.maxPointsPerTimeseries logged a line per query (22 for the example config).
    _parts_found: list[tuple[str, int, str, int]]  # (query, steps refused, why, part size)
    _parts_grown: list[tuple[str, int]]  # (query, part size now answered)
    _got: dict[str, list[Frame]]  # query -> the parts its read in progress has got, newest first

    def query_range(
        self,
        query: PromQuery,
        start: float,
        end: float,
        *,
        deadline: float | None = None,
    ) -> Frame:
        """``query_range`` calls, aligned on the query's step, of at most ``MAX_POINTS`` steps each, or the
        fewer its server was found to answer (``_parts``): a longer window is read in parts and joined as
        one read returns it; raises ``SourceError``.

        A part the server refuses for its size (``OverlongRead.refused``: its query limit or timeout) is
        asked again in halves, down to one step, within the read's deadline, and the size read is kept for
        the query's next reads: a Prometheus whose query limit is under a warm-up's hour refused it whole
        (a restart replayed nothing), a tick's own window too big failed at every tick for good, and a
        catch-up was shortened, its older steps left unread, though the server would answer them in parts.
        A read this client gave up waiting for is not split (``CatchUp`` shortens it): its time is spent.
        A query refused at one step too is refused for something else (a typo VictoriaMetrics answers with
        HTTP 422, or a 422 at one step of the window only): it is not split again until it reads well, and
        keeps no size. Else the size found is kept though the read fails: one that ran out of time (60
        requests at a 2-point limit) dropped it, and each later read halved again from ``MAX_POINTS``, past
        its deadline again, and never read. After ``GROW_AFTER`` clean reads a read longer than its parts
        asks parts twice as long (one request refused where the limit stays): a limit raised, or one refused
        under a passing load, left the query read in parts for good, several requests a tick for one.

        The grid is computed in whole milliseconds, so every window at least one step wide (to the
        millisecond) holds a point, and no point falls in two consecutive windows: each part asks from its
        first step to its last, both on the grid (Prometheus evaluates ``start + n * step <= end``).
        ``deadline`` (``time.monotonic``): no request is sent after it, and none waits past it.
        """
        step = max(1, round(query.step_seconds * 1000))
        first = (_millis(start) // step + 1) * step
        last = _millis(end) // step * step
        if last < first:
            return Frame(query.name, [], np.zeros(0), np.zeros((0, 0)), query.series_kind)
        parts = self._parts_of(query, first, last, step, deadline)
        return parts[0] if len(parts) == 1 else joined(parts[::-1])

    def read_so_far(self, query: str) -> list[Frame]:
        """The newest parts of ``query``'s last read, in time order: what it had got where its time ran out
        (``PromQLSource.read`` feeds them). A read still running adds older parts to its own list only."""
        return self._got.pop(query, [])[::-1]

    def _parts_of(
        self, query: PromQuery, first: int, last: int, step: int, deadline: float | None
    ) -> list[Frame]:
        """The parts of a read from step ``first`` to ``last``, newest first, each of at most the steps its
        server answers (halved where refused, ``query_range``); the size found is kept whether the read ends
        well or not.

        Newest first, and each part kept in ``_got`` as it comes: a read whose parts take longer than its
        deadline (a tick's window of 30 requests at a 2-point limit, 20 within the deadline) dropped what it
        had read, and a query never read asked the same window at every tick and never read; now what its
        time allowed is the newest steps, fed as they are (``read_so_far``), the older left unread."""
        size, probe = self._part_size(query.name, (last - first) // step + 1)
        split = query.name not in self._unsplit
        parts: list[Frame] = []
        self._got[query.name] = parts
        refused = (0, "")  # the steps of the last request refused for its size, and why
        part_last = last
        try:
            while part_last >= first:
                part_first = max(first, part_last - (size - 1) * step)
                try:
                    parts.append(self._range_part(query, part_first, part_last, step, deadline))
                except OverlongRead as exc:
                    if not split or not exc.refused:
                        raise
                    if probe:  # twice its parts still refused: the size it answers, until the next try
                        size, probe = self._parts[query.name], False
                        continue
                    if part_last == part_first:  # refused at one step: not for its size (a typo, say)
                        self._unsplit.add(query.name)
                        size = self._parts.get(query.name, MAX_POINTS)  # nor is the size it was halved to
                        raise
                    size = (part_last - part_first) // step // 2 + 1  # half its steps, rounded up
                    refused = (part_last - part_first) // step + 1, exc.why
                    continue
                part_last = part_first - step
        finally:
            if size < self._parts.get(query.name, MAX_POINTS):
                self._read_in_parts(query.name, size, *refused)
        self._unsplit.discard(query.name)
        self._read_well(query.name, min(size, (last - first) // step + 1) if probe else None)  # as asked
        return parts

    def _range_part(
        self, query: PromQuery, first: int, last: int, step: int, deadline: float | None
    ) -> Frame:
        """One ``query_range`` call from step ``first`` to step ``last`` (whole milliseconds, inclusive)."""
        params = {
            "query": query.sent[0],
            "start": _seconds(first),
            "end": _seconds(last),
            "step": _seconds(step),
        }
        data = self._get(query, "/api/v1/query_range", params, deadline)
        grid = np.arange(first, last + 1, step, dtype=np.int64) / 1000.0
        with collector_paused():  # a label set per series: 100,000 dicts made set off full collections
            return _matrix_to_frame(query, data, grid, self.name)

    def _part_size(self, query: str, steps: int) -> tuple[int, bool]:
        """The most steps a request of ``query`` asks in a read of ``steps``, and whether that is a try at
        twice the parts its server answers (after ``GROW_AFTER`` clean reads; counted again from it)."""
        known = self._parts.get(query)
        if known is None:
            return MAX_POINTS, False
        if self._clean.get(query, 0) < GROW_AFTER or steps <= known or query in self._unsplit:
            return known, False
        self._clean[query] = 0  # a try that fails, however, waits as long again
        return min(MAX_POINTS, 2 * known), True

    def _read_well(self, query: str, tried: int | None) -> None:
        """Count a clean read of ``query`` read in parts; keep the longer parts ``tried`` where answered."""
        if query not in self._parts:
            return
        if tried is None:
            self._clean[query] = self._clean.get(query, 0) + 1
            return
        if tried >= MAX_POINTS:
            del self._parts[query]
        else:
            self._parts[query] = tried
        self._parts_grown.append((query, tried))

    def _read_in_parts(self, query: str, size: int, asked: int, why: str) -> None:
        """Keep ``size`` steps as the most a request of ``query`` asks (one of ``asked`` was refused:
        ``why``), and say so once."""
        self._parts[query] = size
        self._clean[query] = 0
        self._parts_found.append((query, asked, why, size))

    def _say_parts(self) -> None:
        """Say the part sizes the read just ended found or grew (``read_said.say_parts``). Each worker only
        appends to the lists."""
        found, self._parts_found = self._parts_found, []
        grown, self._parts_grown = self._parts_grown, []
        say_parts(self.name, found, grown)

    def query_instant(self, query: PromQuery, at: float) -> Frame:
        """One ``/api/v1/query`` call at ``at``; raises ``SourceError``."""
        data = self._get(query, "/api/v1/query", {"query": query.sent[0], "time": f"{at:.3f}"})
        if data.get("resultType") != "vector":
            raise SourceError(
                f"query {query.name}: expected a vector, got {data.get('resultType')!r}", source=self.name
            )
        labels = []
        values = []
        try:
            for item in data["result"]:  # none at all: another shape, not every series gone
                labels.append(_labels(item))
                values.append(_number(item["value"][1]))
        except (AttributeError, TypeError, IndexError, KeyError) as exc:
            raise SourceError(
                f"query {query.name}: malformed vector result: {type(exc).__name__}: {exc}", source=self.name
            ) from exc
        column = np.array(values, dtype=np.float64).reshape(-1, 1)
        present = np.ones(column.shape, np.bool_) if np.isnan(column).any() else None  # each has a sample
        return Frame(query.name, labels, np.array([at]), column, query.series_kind, present)

    def _get(
        self, query: PromQuery, path: str, params: Mapping[str, str], deadline: float | None = None
    ) -> dict[str, Any]:
        where = f"query {query.name}: {path}"
        timeout = self._client.timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                late = f"query {query.name}: no answer within the read's {self.deadline_seconds:g}s deadline"
                if self._sent.get(query.name, -math.inf) >= deadline - self.deadline_seconds:
                    # An earlier part of this read took the time: the window is too long for the server.
                    raise OverlongRead(late, source=self.name, why="no answer in time", refused=False)
                raise SourceError(late, source=self.name)  # never sent: the other queries took the time
            timeout = httpx.Timeout(min(self._timeout, left))
            self._sent[query.name] = time.monotonic()
        try:
            response = self._fetch(path, params, timeout, deadline)
        except httpx.ReadTimeout as exc:  # sent, no answer in time (a connect or pool timeout: never there)
            raise OverlongRead(
                f"{where}: {self._server}: {type(exc).__name__}: {exc}",
                source=self.name,
                why="timed out",
                refused=False,
            ) from exc
        except httpx.HTTPError as exc:  # not reached: which server (a port typo shows here), not only why
            raise SourceError(
                f"{where}: {self._server}: {type(exc).__name__}: {exc}", source=self.name
            ) from exc
        if response.is_redirect:
            # An http -> https move, a proxy's path prefix, a login page: not followed (the request's
            # parameters would go wherever it says), so say where it points and which setting to change.
            location = response.headers.get("Location", "")
            target = shown_redirect(str(response.request.url), location) if location else "nowhere named"
            raise SourceError(
                f"{where}: {self._server}: HTTP {response.status_code}, a redirect to {target} (not"
                f" followed: set {self._setting} to where it points)",
                source=self.name,
            )
        try:
            payload = loads_without_gc(response.content)  # response.json() without the collector's passes
        except ValueError as exc:
            if response.status_code in _OVERLONG_STATUS:  # a proxy's gateway timeout page
                raise OverlongRead(
                    f"{where}: HTTP {response.status_code}, not JSON", source=self.name, why="gateway timeout"
                ) from exc
            raise SourceError(
                f"{where}: {self._server}: HTTP {response.status_code}, not JSON{_content_type(response)}: "
                f"{_not_json_why(response.status_code, self._setting)}",
                source=self.name,
            ) from exc
        if not isinstance(payload, dict):
            raise SourceError(f"{where}: HTTP {response.status_code}, not a JSON object", source=self.name)
        if response.status_code != 200 or payload.get("status") != "success":
            raise self._refusal(where, response.status_code, payload, query)
        data = payload.get("data")
        if not isinstance(data, dict):
            raise SourceError(f"{where}: response has no data", source=self.name)
        if payload.get("isPartial") is True:
            # A VictoriaMetrics cluster whose vmselect could not reach every vmstorage node: the series those
            # nodes hold are missing from this answer, not from the fleet (as Thanos' partial response).
            raise SourceError(
                f"{where}: partial response (isPartial: a storage node did not answer)",
                source=self.name,
                retryable=True,
            )
        warnings = payload.get("warnings")
        if warnings:
            notes = [str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)]
            if all(note.startswith(_ANNOTATIONS) for note in notes):
                self._note_annotations(query.name, notes)
                return data
            # Thanos' partial_response, a Prometheus that could not read every block: series are missing
            # from this answer, not from the fleet. Read as a failure, so no detector sees them vanish.
            text = "; ".join(notes)
            raise SourceError(f"{where}: partial response: {text[:300]}", source=self.name, retryable=True)
        return data

    def _refusal(
        self, where: str, status: int, payload: dict[str, Any], query: PromQuery | None = None
    ) -> SourceError:
        """The error of an answer that is no success; ``OverlongRead`` where it says that the read was too
        long or too big for the server."""
        error = str(payload.get("error", ""))
        hint = _limit_hint(error)
        if status == 400 and payload.get("errorType") == "bad_data" and query is not None:
            # Prometheus cannot parse or type the expression (``rate(x)``, ``x offset``): the error named only
            # the query and Prometheus' parser position, not what to change, and failed at every tick.
            index = next((k for k, q in enumerate(self.queries) if q.name == query.name), None)
            field = "anomaly.queries[].expr" if index is None else f"anomaly.queries[{index}].expr"
            where_written = self._config_file or "the configuration"
            hint = f" (fix {field} of query {query.name} in {where_written}: {query.expr!r})"
        message = f"{where}: HTTP {status}: {error}{hint}"
        retryable = status >= 500
        if status in _OVERLONG_STATUS or payload.get("errorType") == "timeout":
            why = f"HTTP {status}: {_refusal_why(error)}{hint}"
            return OverlongRead(message, source=self.name, why=why, retryable=retryable)
        return SourceError(message, source=self.name, retryable=retryable)

    def _fetch(
        self, path: str, params: Mapping[str, str], timeout: httpx.Timeout | float, deadline: float | None
    ) -> httpx.Response:
        """GET ``path``, its answer read whole; one whose body is still coming at ``deadline`` is cut there
        (``ReadTimeout``). The timeout bounds each wait for a byte, not the request: a body sent slowly (a
        big answer over a slow link or proxy) held its worker past the deadline, 12 s for a 2 s deadline,
        and the reads after it sent nothing while it ran on."""
        if deadline is None:
            return self._client.get(path, params=dict(params), timeout=timeout)
        request = self._client.build_request("GET", path, params=dict(params), timeout=timeout)
        response = self._client.send(request, stream=True)  # the headers: within the timeout, at most left
        cut = _Cut(response)
        left = deadline - time.monotonic()
        # Headers come by the deadline (the timeout); at it, its body is read as it comes, each wait for a
        # byte bounded by the timeout still: a cut at once raced the read of a body already there.
        timer = threading.Timer(left, cut) if left > 0 else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            response.read()
        except httpx.HTTPError as exc:
            response.close()
            if cut.fired:
                raise httpx.ReadTimeout("cut at the read's deadline, its answer still coming") from exc
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return response

    def _note_annotations(self, query: str, notes: list[str]) -> None:
        """Log a query's PromQL annotations once, and again only when they change (one entry per query)."""
        text = "; ".join(notes)
        if self._logged_annotations.get(query) == text:
            return
        self._logged_annotations[query] = text
        logger.warning(
            "promql: query %s: Prometheus annotated its answer (read and scored; fix the query or its"
            " metric if this matters): %s",
            query,
            text[:300],
            extra={"source": self.name, "query": query},
        )


def _refusal_why(error: str) -> str:
    """A refusal's error, short, for the lines that say a read was refused or shortened: the clause that
    names the server's limit where it names one. VictoriaMetrics' errors begin with the query and the time
    range asked, so their first 80 characters, all that was shown, never reached the flag."""
    text = _VM_QUERY_RANGE.sub("", error, count=1)
    named = _LIMIT_FLAG.search(text)
    if named is not None and named.end() > _WHY_CHARS:
        text = text[text.rfind(": ", 0, named.start()) + 2 :]
    return text if len(text) <= _WHY_CHARS else text[: _WHY_CHARS - 3] + "..."


def _limit_hint(error: str) -> str:
    """The Prometheus flag behind a limit its error does not name, and the fix (VictoriaMetrics' errors name
    theirs): an operator read "would load too many samples" and had to find ``--query.max-samples``."""
    for said, flag in _PROMETHEUS_LIMITS:
        if said in error:
            return f" (Prometheus' {flag}: raise it, or narrow the query or its step_seconds)"
    return ""


def _not_json_why(status: int, setting: str) -> str:
    """What an answer that is not JSON most likely means. A 503 is a server not ready: Prometheus answers
    its API with a plain-text ``Service Unavailable`` until its TSDB has started (a WAL replay takes
    minutes on a big one), and a proxy says so of a backend down; asked whether the URL was a Prometheus
    HTTP API, an operator checked a setting that was right. Another 5xx is the server's or a proxy's own
    failure. A 401 or 403 (a proxy's or Prometheus' own basic auth) is a password missing or wrong, not a URL
    that may be no Prometheus; a 404 a path prefix missing. Only another page (a login page, a web UI) says
    the URL may be wrong."""
    if status == 503:
        return (
            "not ready (Prometheus answers so until its TSDB has started, its WAL replayed; a proxy, while"
            " its backend is down); read again at the next tick"
        )
    if status >= 500:
        return "the server, or a proxy before it, failed; read again at the next tick"
    if status in (401, 403):
        return (
            f"credentials missing or refused: write them in {setting} (http://user:password@host:port/...,"
            " with @ : / % and spaces in them percent-encoded)"
        )
    if status == 404:
        return f"no such path: is {setting} a Prometheus HTTP API, with its path prefix (http://proxy/prom)?"
    return f"is {setting} a Prometheus HTTP API?"


def _content_type(response: httpx.Response) -> str:
    """`` (text/html)``: what the answer said it was, where it said; else nothing."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip()
    return f" ({kind[:60]})" if kind else ""


class _Cut:
    """Called at a read's deadline: ends its answer's connection, so the worker waiting on its body wakes.
    A connection the answer already left for the pool is found closed there and not used again."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        stream = self.response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):  # none for a transport without one (a test's mock)
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, also under TLS: ``SSLSocket.shutdown`` drops its TLS object,
                # which the worker's read is still using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
