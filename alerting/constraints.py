"""Slurm's ``--constraint`` read as a condition on one node's active features, for where a stopped job may
start again (``alerting.capacity``).

What is read, as slurmctld evaluates a job's feature list (``valid_feature_counts``; the sbatch man page
documents no precedence between the operators):

- ``&`` (all) and ``|`` (any), mixed, from left to right with no precedence: ``a|b&c`` is ``(a|b)&c``;
- ``!`` before a name (NOT, in the man page of later releases): the node lacks that feature; ``a&!b``;
- a name in double or single quotes (``"gpu:a100"``) is that name, operators and all;
- parentheses group: ``c&(a|b)``;
- brackets, Slurm's matching OR ``[a|b]``: read as ``a|b`` on each node. Slurm also wants every node of the
  job to share one of them; that is not modelled, so it is a necessary condition only;
- counts ``a*2``, ``(a&b)*2``, ``[rack1*2&rack2*4]``: Slurm wants that many of the job's nodes with those
  features, and any others for the rest. Which nodes are which is not modelled; each node is held to the
  counted features (counted terms joined by ``&`` are the job's groups of nodes: a node is in one of them,
  ``rack1|rack2``). That never counts a node the job could not use; it may leave out one it could.

Anything else (``!`` before a group, commas, spaces, brackets inside brackets, an unclosed quote, an empty
name) is not read. A constraint that is not read is met by no node, so a job that asks one restarts only on
its own healthy GPUs (a P0 rather than a wrong P1), and it is logged once.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet

logger = logging.getLogger(__name__)

Clause = tuple[frozenset[str], frozenset[str]]
"""The names a node must all have, and those it must not have."""
Clauses = tuple[Clause, ...]
"""A condition as alternatives (one clause of nothing: any node; no clause: no node)."""
_Read = tuple[Clauses, bool]  # a condition read, and whether it is a counted term (``a*2``)

ANY_NODE: Clauses = ((frozenset(), frozenset()),)
NO_NODE: Clauses = ()
_TOKEN = re.compile(r""""[^"]*"|'[^']*'|[^&|()\[\]*!"'\s,]+|\*\d+|[&|()\[\]!]""")
_OPERATORS = frozenset("&|()[]!")
_MAX_CLAUSES = 256  # a constraint that would read into more alternatives is not read


def satisfies(constraint: str, features: AbstractSet[str]) -> bool:
    """Whether a node with these active features may run a job of this constraint (see the module text)."""
    return _test(constraint)(features)


@functools.lru_cache(maxsize=1024)
def _test(constraint: str) -> Callable[[AbstractSet[str]], bool]:
    """The constraint as a test of a node's features (asked for every node of the cluster: made once)."""
    clauses = read_constraint(constraint)
    if clauses == ANY_NODE:
        return lambda features: True
    if not clauses:
        return lambda features: False
    if all(not lacks for _, lacks in clauses):
        if len(clauses) == 1:
            return clauses[0][0].issubset
        if all(len(has) == 1 for has, _ in clauses):  # a|b|c
            names = frozenset().union(*(has for has, _ in clauses))
            return lambda features: not names.isdisjoint(features)
    return lambda features: any(has <= features and lacks.isdisjoint(features) for has, lacks in clauses)


@functools.lru_cache(maxsize=1024)
def read_constraint(constraint: str) -> Clauses:
    """The constraint as alternatives of feature names; a constraint of a form not read is no node's, and
    said once."""
    if not constraint:
        return ANY_NODE
    tokens = _TOKEN.findall(constraint)
    clauses = None
    if "".join(tokens) == constraint:
        clauses = _Reader(tokens).whole()
    if clauses is None:
        logger.warning(
            "constraint %r is not read (not feature names, quoted or not, joined by & or | with !,"
            " parentheses, brackets or counts): no node is counted free for the job, only its own GPUs",
            constraint,
        )
        return NO_NODE
    return clauses


class _Reader:
    """Recursive descent: ``expr := term (op term)*``,
    ``term := [!] name [*n] | ( expr ) [*n] | [ expr ] [*n]``."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.at, self.in_brackets = tokens, 0, False

    def whole(self) -> Clauses | None:
        read = self._expr()
        return read[0] if read is not None and self.at == len(self.tokens) else None

    def _peek(self) -> str:
        return self.tokens[self.at] if self.at < len(self.tokens) else ""

    def _expr(self) -> _Read | None:
        result = self._term()
        while result is not None and self._peek() in ("&", "|"):
            op = self.tokens[self.at]
            self.at += 1
            term = self._term()
            if term is None:
                return None
            (left, counted), (right, also_counted) = result, term
            # counted groups joined by &: a node is in one of them
            either = op == "|" or (counted and also_counted)
            joined = _either(left, right) if either else _both(left, right)
            result = None if joined is None else (joined, counted and also_counted)
        return result

    def _term(self) -> _Read | None:
        word = self._peek()
        self.at += 1
        if word in ("(", "["):
            inner = self._group(word)
        elif word == "!":
            name = _name(self._peek())
            self.at += 1
            inner = None if name is None else ((frozenset(), frozenset({name})),)
        else:
            name = _name(word)
            inner = None if name is None else ((frozenset({name}), frozenset()),)
        if inner is None:
            return None
        counted = self._peek().startswith("*")
        self.at += counted
        return inner, counted

    def _group(self, opening: str) -> Clauses | None:
        """What parentheses or brackets hold, the opening one just read."""
        if opening == "[" and self.in_brackets:
            return None  # Slurm takes one set of brackets
        outside = self.in_brackets
        self.in_brackets = outside or opening == "["
        read = self._expr()
        if read is None or self._peek() != {"(": ")", "[": "]"}[opening]:
            return None
        self.at += 1
        self.in_brackets = outside
        return read[0]


def _name(token: str) -> str | None:
    """A feature name: a plain word, or a quoted one without its quotes; None for anything else."""
    if token[:1] in ('"', "'"):
        token = token[1:-1]
    elif not token or token[0] in _OPERATORS or token.startswith("*"):
        return None
    return token or None


def _either(left: Clauses, right: Clauses) -> Clauses | None:
    merged = tuple(dict.fromkeys((*left, *right)))
    return merged if len(merged) <= _MAX_CLAUSES else None


def _both(left: Clauses, right: Clauses) -> Clauses | None:
    if len(left) * len(right) > _MAX_CLAUSES:
        return None
    joined = ((a_has | b_has, a_lacks | b_lacks) for a_has, a_lacks in left for b_has, b_lacks in right)
    return tuple(dict.fromkeys((has, lacks) for has, lacks in joined if has.isdisjoint(lacks)))
