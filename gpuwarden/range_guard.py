"""The guard of a range query against its target going away: ``rate(x[5m]) and x``, and the check that
warns of a down-direction query left without one.

``rate(x[5m])`` keeps answering for up to the range after its target's last scrape, ramping down to near 0
as the window empties, which a detector can take for a fall in traffic (a pod deleted in a rollout).
``and x`` keeps a point only while the raw series has a current sample; Prometheus marks it stale at the
first failed scrape, or when service discovery drops the target, so the ramp is cut at once (PromQL's
``and`` matches label sets without ``__name__``: measured with Prometheus 2.42).

Only shapes read here to the end are guarded, so nothing the user wrote is rewritten on a guess: one range
function over one plain selector (``rate(x{job="api"}[5m])``), possibly inside one aggregation
(``max by (pod) (...)``). Anything else (offsets, subqueries, arithmetic, ``or``) is left as written.
``#`` comments are read past, as PromQL reads them, and kept where they are. A guard already written
(``rate(x[5m]) and x``) is recognised and not added again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from gpuwarden.durations import UNIT_PATTERN
from gpuwarden.errors import ConfigError
from gpuwarden.promql_text import uncommented

if TYPE_CHECKING:
    from gpuwarden.config_anomaly import AnomalyConfig

# Range functions of one argument whose answer outlives the series by up to the range: the rate family and
# the counting ones ramp down as the window empties; the others keep repeating the series' last values.
RANGE_FUNCTIONS = frozenset(
    {
        "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "last_over_time", "present_over_time", "stddev_over_time", "stdvar_over_time",
    }
)  # fmt: skip
# Aggregations guarded unasked: a member ramping to 0 pulls them down, while the member leaving does not.
# sum and count are not: a member's ramp is its true share of the window's total, and guarded, the total
# fell by that share at once while the traffic it moved to the others entered their rates only over the
# range (measured, two targets of 10/s, one stopped and its traffic moved: sum 19.3-20.1 unguarded, 10.2
# at the stop guarded).
SELF_GUARDED = frozenset({"avg", "min", "max"})
AGGREGATIONS = SELF_GUARDED | {"sum", "count"}

_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<duration>(?:\d+(?:{UNIT_PATTERN}))+(?![A-Za-z0-9_:]))
        |(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
        |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
        |(?P<op>=~|!~|!=|=|[(){{}}\[\],])
        |(?P<comment>\#[^\n]*)  # to the end of its line, read past
    )""",
    re.VERBOSE,
)
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RAMPING_CALL = re.compile(rf"\b(?:{'|'.join(sorted(RANGE_FUNCTIONS))})\s*\(")


@dataclass(frozen=True, slots=True)
class RangeShape:
    """A range query read to the end: ``[agg [grouping]] (fn(selector[range]) [and guard])``."""

    aggregation: str | None  # lower case; None: the bare call
    grouped: bool  # the aggregation has ``by``/``without``
    selector: str  # as written
    call_end: int  # where the call's ``)`` ends in the expression
    written_guard: bool  # ``and <selector>`` follows the call already

    @property
    def self_guarded(self) -> bool:
        """Whether gpuwarden guards this shape unasked (``guard`` unset)."""
        return self.aggregation is None or self.aggregation in SELF_GUARDED

    def guarded(self, expr: str) -> str:
        """``expr`` with ``and <selector>`` after the call (``expr`` when a guard is written already)."""
        if self.written_guard:
            return expr
        return f"{expr[: self.call_end]} and {self.selector}{expr[self.call_end :]}"


class _Unread(Exception):
    """The expression is not a shape read here."""


class _Reader:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens: list[tuple[str, str, int, int]] = []  # kind, text, start, end
        pos = 0
        while expr[pos:].strip():
            match = _TOKEN.match(expr, pos)
            if match is None or match.lastgroup is None:
                raise _Unread
            if match.lastgroup != "comment":
                self.tokens.append(
                    (match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup), match.end())
                )
            pos = match.end()
        self.at = 0

    def peek(self) -> tuple[str, str]:
        k = self.at
        return (self.tokens[k][0], self.tokens[k][1]) if k < len(self.tokens) else ("end", "")

    def take(self, kind: str, text: str | None = None) -> str:
        got_kind, got_text = self.peek()
        if got_kind != kind or (text is not None and got_text.lower() != text):
            raise _Unread
        self.at += 1
        return got_text

    def start(self) -> int:
        return self.tokens[self.at][2]

    def end(self) -> int:
        return self.tokens[self.at - 1][3]

    def selector(self) -> str:
        first = self.start()
        seen = False
        if self.peek()[0] == "name":
            self.take("name")
            seen = True
        if self.peek() == ("op", "{"):
            self.take("op", "{")
            while self.peek() != ("op", "}"):
                if not _LABEL.fullmatch(self.take("name")) or self.peek()[1] not in ("=", "!=", "=~", "!~"):
                    raise _Unread
                self.take("op")
                self.take("string")
                if self.peek() == ("op", ","):
                    self.take("op", ",")
                elif self.peek() != ("op", "}"):
                    raise _Unread
            self.take("op", "}")
            seen = True
        if not seen:
            raise _Unread
        return uncommented(self.expr[first : self.end()])  # the guard repeats it: not its comments

    def grouping(self) -> bool:
        if self.peek()[0] != "name" or self.peek()[1].lower() not in ("by", "without"):
            return False
        self.take("name")
        self.take("op", "(")
        while self.peek() != ("op", ")"):
            if not _LABEL.fullmatch(self.take("name")):
                raise _Unread
            if self.peek() == ("op", ","):
                self.take("op", ",")
            elif self.peek() != ("op", ")"):
                raise _Unread
        self.take("op", ")")
        return True

    def call(self) -> tuple[str, int, bool]:
        if self.take("name") not in RANGE_FUNCTIONS:
            raise _Unread
        self.take("op", "(")
        selector = self.selector()
        self.take("op", "[")
        self.take("duration")
        self.take("op", "]")
        self.take("op", ")")
        end = self.end()
        written = self.peek()[0] == "name" and self.peek()[1].lower() == "and"
        if written:
            self.take("name")
            self.selector()
        return selector, end, written


@lru_cache(maxsize=1024)  # read at every request of a query (``PromQuery.sent``): parsed once per expression
def range_shape(expr: str) -> RangeShape | None:
    """``expr`` read as a guardable shape, or None when it is not one (then it is left as written)."""
    try:
        reader = _Reader(expr)
        aggregation: str | None = None
        grouped = False
        kind, text = reader.peek()
        if kind == "name" and text.lower() in AGGREGATIONS:
            aggregation = reader.take("name").lower()
            grouped = reader.grouping()
            reader.take("op", "(")
            selector, end, written = reader.call()
            reader.take("op", ")")
            if not grouped:  # ``max (...) by (pod)``: the grouping after the argument
                grouped = reader.grouping()
        else:
            selector, end, written = reader.call()
        reader.take("end")
    except (_Unread, IndexError):
        return None
    return RangeShape(aggregation, grouped, selector, end, written)


def has_range_function(expr: str) -> bool:
    """Whether ``expr`` calls a range function of ``RANGE_FUNCTIONS`` (a cheap textual look past comments
    and strings)."""
    return RAMPING_CALL.search(uncommented(expr, blank_strings=True)) is not None


GUARD_UNREAD = (  # the error of ``guard: true`` on an expression not read here
    "true, but the expr of query {name!r} is not one gpuwarden can guard: one of rate, irate, increase,"
    " delta, idelta, deriv, changes, resets or *_over_time over one selector with a plain range"
    ' (`rate(x{{job="api"}}[5m])`), alone or under one sum/count/avg/min/max with by/without; write the'
    " guard into expr yourself, next to the range function (`rate(x[5m]) / rate(y[5m]) and x`,"
    " `sum by (pod) (rate(x[5m]) and x)`), and set guard: false (expr is then sent as written)"
)


GUARD_READS = ("anomaly.detectors", "anomaly.thresholds.direction", "anomaly.adaptive_metrics")
"""The settings besides the query's that decide whether its range function warrants a warning."""


def _guard_reads(k: int) -> tuple[str, ...]:
    """``GUARD_READS`` and query ``k``'s own settings that decide it (each set aside holds its default)."""
    return (*GUARD_READS, *(f"anomaly.queries[{k}].{name}" for name in ("direction", "guard", "adaptive")))


def check_range_guards(cfg: AnomalyConfig) -> list[ConfigError]:
    """Warnings, one per query that the adaptive detector scores in the down direction (``down``/``both``)
    whose range function is not guarded against its target going away: when a pod is deleted its rate
    ramps down over the range, a drop the detector alerts on. A query that sets ``guard`` says it knows."""
    if "adaptive" not in cfg.detectors:
        return []
    warnings = []
    for k, query in enumerate(cfg.queries):
        direction = query.direction or cfg.thresholds.direction
        if direction == "up" or not cfg.adaptive_scores(query):
            continue
        if query.guard and _guards_one_total(query.expr):
            warnings.append(_guarded_total_warning(query.name, direction, k))
        if query.guard is not None:
            continue
        if not has_range_function(query.expr):
            continue
        shape = range_shape(query.expr)
        if shape is not None and (
            shape.self_guarded or shape.written_guard or not shape.grouped or shape.aggregation == "count"
        ):
            # Guarded; or one total (sum, count) that a member's ramp keeps true; or a count, which does not
            # ramp: a ramping series counts 1 until it ends, and a series that ends is forgotten, not a drop.
            continue
        if shape is not None:
            fix = (
                f"set guard: true if each of its series is one target's ({shape.aggregation} by (pod)), or"
                " guard: false if its groups span targets (a target's ramp is then its share of the group)"
            )
        else:
            fix = (
                "write the guard into expr next to the range function (`rate(x[5m]) * 8 and x`; see"
                " README, Known gaps) and set guard: false, or only set guard: false if it cannot fall so"
                " (a ratio of two rates of the same targets ramps alike on both sides)"
            )
        warnings.append(
            ConfigError(
                f"query {query.name!r}: when its target goes away (a pod deleted) its range function keeps"
                f" answering for up to the range, ramping down, and the adaptive detector ({direction}) can"
                f" alert on that as a drop; {fix}",
                field=f"anomaly.queries[{k}].expr",
                reads=_guard_reads(k),
            )
        )
    return warnings


def _guards_one_total(expr: str) -> bool:
    """Whether ``expr`` is one ``sum`` over every target its selector matches (no ``by``/``without``),
    which ``guard: true`` guards as asked."""
    shape = range_shape(expr)
    return shape is not None and shape.aggregation == "sum" and not shape.grouped and not shape.written_guard


def _guarded_total_warning(name: str, direction: str, k: int) -> ConfigError:
    """The warning of ``guard: true`` on one total: a rollout reads as a drop for up to the range."""
    return ConfigError(
        f"query {name!r}: when its target goes away (a pod deleted in a rollout) guard: true takes that"
        " target's share out of the sum at once, while the traffic it moved to the other targets"
        " enters their rates only over the range, so the total dips for up to the range and the adaptive"
        f" detector ({direction}) can alert on that as a drop (measured: two targets of 10/s, one stopped"
        " and its traffic moved, the guarded sum read 10.2 at the stop, the unguarded one 19.3 to 20.1);"
        " set guard: false (a departed target's ramp is then its true share of the total) unless its selector"
        " matches one target",
        field=f"anomaly.queries[{k}].guard",
        reads=_guard_reads(k),
    )
