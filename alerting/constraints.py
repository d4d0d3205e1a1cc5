"""Slurm's ``--constraint`` read as a condition on one node's active features, for where a stopped job may
start again (``alerting.capacity``).

What is read, as slurmctld 22.05 evaluates a job's feature list (``valid_feature_counts``; the sbatch man page
documents no precedence between the operators):

- ``&`` (all) and ``|`` (any), mixed, from left to right with no precedence: ``a|b&c`` is ``(a|b)&c``;
- parentheses group: ``c&(a|b)``;
- brackets, Slurm's matching OR ``[a|b]``: read as ``a|b`` on each node. Slurm also wants every node of the
  job to share one of them; that is not modelled, so it is a necessary condition only;
- a count ``a*2`` (``[rack1*2&rack2*4]``, ``(a&b)*2``) holds for some of the job's nodes, not for each: it
  restricts no single node.

Anything else (``!``, commas, spaces, brackets inside brackets, an empty name) is not read: every node
satisfies it, as before constraints were read, and it is logged once.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from collections.abc import Set as AbstractSet

logger = logging.getLogger(__name__)

Clauses = tuple[frozenset[str], ...]
"""A condition as alternatives, each the names a node must all have (one empty alternative: any node)."""

ANY_NODE: Clauses = (frozenset(),)
_TOKEN = re.compile(r"[\w.\-]+|\*\d+|[&|()\[\]]")
_OPERATORS = frozenset("&|()[]")
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
    if len(clauses) == 1:
        return clauses[0].issubset
    if all(len(clause) == 1 for clause in clauses):  # a|b|c
        names = frozenset().union(*clauses)
        return lambda features: not names.isdisjoint(features)
    return lambda features: any(clause <= features for clause in clauses)


@functools.lru_cache(maxsize=1024)
def read_constraint(constraint: str) -> Clauses:
    """The constraint as alternatives of feature names; a constraint of a form not read is every node's, and
    said once."""
    if not constraint:
        return ANY_NODE
    tokens = _TOKEN.findall(constraint)
    clauses = None
    if "".join(tokens) == constraint:
        clauses = _Reader(tokens).whole()
    if clauses is None:
        logger.warning(
            "constraint %r is not read (not plain feature names joined by & or |, with parentheses, brackets"
            " or counts): every node is taken to satisfy it",
            constraint,
        )
        return ANY_NODE
    return clauses


class _Reader:
    """Recursive descent: ``expr := term (op term)*``, ``term := name [*n] | ( expr ) [*n] | [ expr ]``."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.at, self.in_brackets = tokens, 0, False

    def whole(self) -> Clauses | None:
        clauses = self._expr()
        return clauses if clauses is not None and self.at == len(self.tokens) else None

    def _peek(self) -> str:
        return self.tokens[self.at] if self.at < len(self.tokens) else ""

    def _expr(self) -> Clauses | None:
        result = self._term()
        while result is not None and self._peek() in ("&", "|"):
            op = self.tokens[self.at]
            self.at += 1
            term = self._term()
            if term is None:
                return None
            result = _either(result, term) if op == "|" else _both(result, term)
        return result

    def _term(self) -> Clauses | None:
        word = self._peek()
        self.at += 1
        if word in ("(", "["):
            if word == "[" and self.in_brackets:
                return None  # Slurm takes one set of brackets
            self.in_brackets = self.in_brackets or word == "["
            inner = self._expr()
            if inner is None or self._peek() != {"(": ")", "[": "]"}[word]:
                return None
            self.at += 1
            self.in_brackets = self.in_brackets and word != "["
        elif word and word not in _OPERATORS and not word.startswith("*"):
            inner = (frozenset({word}),)
        else:
            return None
        if self._peek().startswith("*"):
            self.at += 1
            return ANY_NODE  # some of the job's nodes, not each
        return inner


def _either(left: Clauses, right: Clauses) -> Clauses | None:
    merged = tuple(dict.fromkeys((*left, *right)))
    return merged if len(merged) <= _MAX_CLAUSES else None


def _both(left: Clauses, right: Clauses) -> Clauses | None:
    if len(left) * len(right) > _MAX_CLAUSES:
        return None
    return tuple(dict.fromkeys(a | b for a in left for b in right))
