"""Every problem of a configuration file in one run, in the file's order, as ``promtool check rules`` lists
every bad rule: an operator fixes them all at once rather than one per run.

pydantic reports every bad field of a run, but a model's cross-field check runs only once its fields pass,
and the checks made after loading (duplicate names, unbalanced PromQL, ``config validate``'s) run only once
the whole model does. ``validated`` builds the model again without the settings at fault, to find what
they hid; a setting with a problem is then "doubtful" (it holds its default, not the file's value), and
what checks find about it, or with it (a problem's ``reads``), is left out rather than report what the file
does not say. Only the doubtful setting is: the rest of its section is checked as written, so a second
problem of the section shows in the same run.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from gpuwarden.config_source import ENVIRONMENT, Loc, field_loc, located, setting_variable
from gpuwarden.errors import ConfigError
from gpuwarden.yamlfile import detail_to_config_error

ModelT = TypeVar("ModelT", bound=BaseModel)

MAX_ROUNDS = 8
"""Builds of the model at most: each leaves out what the last one refused (a section's cross-field check
shows in the second); a problem the file does not hold (a variable's) ends it sooner."""


class Locating(Protocol):
    """A configuration that names the line (or the variable) a setting came from."""

    def locate(self, error: ConfigError) -> ConfigError: ...


ConfigT = TypeVar("ConfigT", bound=Locating)


@dataclass
class ConfigReport(Generic[ConfigT]):
    """What loading a configuration found: the configuration (built without the settings at fault, or None
    when it could not be), every problem so far, and the settings that had one (their key paths)."""

    cfg: ConfigT | None
    problems: list[ConfigError]
    doubtful: set[Loc]

    def doubts(self, setting: str) -> bool:
        """Whether ``setting`` (``tracing``, ``api.db``) holds, or is held by, one that had a problem."""
        return _overlaps(field_loc(setting), self.doubtful)

    def relevant(self, found: Iterable[ConfigError]) -> list[ConfigError]:
        """What checks of ``cfg`` found, each at its line (or naming its variable), less what is about, or
        read, a doubtful setting (its default, not the file's value, was checked)."""
        if self.cfg is None:
            return []
        return [self.cfg.locate(problem) for problem in outside(found, self.doubtful)]

    def add(self, found: Iterable[ConfigError]) -> None:
        """Keep the ``relevant`` problems of those checks of ``cfg`` found."""
        self.problems.extend(self.relevant(found))

    def error(self) -> ConfigError | None:
        """The problems as one error, in file order: the first, the others in its ``more``; None: none."""
        return ConfigError.first_of(in_file_order(self.problems)) if self.problems else None


_KEY = "[key]"  # pydantic's last loc part for an error about a mapping's key (``yamlfile._KEY``)


def validated(
    build: Callable[[dict[str, Any]], ModelT],
    data: dict[str, Any],
    where: str,
    positions: Mapping[Loc, int],
    environ: Mapping[str, str],
    *,
    left_out: Sequence[Loc] = (),
    model: type[BaseModel] | None = None,
    set_aside: Callable[[str], bool] | None = None,
) -> tuple[ModelT | None, list[ConfigError], set[Loc]]:
    """The model ``build`` makes of ``data``, every validation problem (at its line, or naming the variable
    that set it), and the settings that had one (those left out, and those a problem was about). On a
    problem the model is built again without the settings at fault, to find the problems they hid, until it
    builds (without them: their defaults hold) or nothing more can be left out (None). ``left_out``:
    settings already known to be wrong (a secret whose variable is unset), whose own errors are not
    repeated. ``model``: what ``build`` makes, whose field names an unknown field's error suggests (``step``
    -> ``step_seconds``). ``set_aside``: told the ``GPUWARDEN_`` variable behind a problem, which ``data``
    cannot leave out, for ``build`` to read the environment without it (else the file's problems stayed
    hidden behind it); True where it was not set aside before."""
    data = _copied(data)
    pruned = list(left_out)
    doubtful = {loc for loc in left_out if loc}
    problems: list[ConfigError] = []
    seen: set[tuple[Loc, str]] = set()
    for _ in range(MAX_ROUNDS):
        try:
            return build(data), problems, doubtful
        except ValidationError as exc:
            progress = False
            # This pass's errors are each said, two entries of one list too: only earlier passes' removals
            # (and the settings left out from the start) hide an error.
            earlier = list(pruned)
            for error in exc.errors():
                loc = tuple(error["loc"])
                if (loc, error["msg"]) not in seen and not _under(loc, earlier):
                    seen.add((loc, error["msg"]))
                    # A value a variable set is its JSON: a boolean there is no YAML boolean
                    json = setting_variable(loc, positions, environ) is not None
                    found = detail_to_config_error(error, where, positions, syntax="JSON" if json else "YAML")
                    if error["type"] == "extra_forbidden" and model is not None:
                        found = _with_suggestion(found, model, loc)
                    problems.append(located(found, loc, where, positions, environ))
                removed = _prune(data, loc)
                variable = setting_variable(loc, positions, environ) if removed is None else None
                if variable is not None and set_aside is not None and set_aside(variable):
                    removed = loc
                if removed is not None:
                    pruned.append(removed)
                    doubtful.add(removed)
                    progress = True
                if loc:
                    doubtful.add(loc[:-1] if loc[-1] == _KEY else loc)
            if not progress:
                break
    return None, problems, doubtful


def suggesting_config_error(
    exc: ValidationError, model: type[BaseModel], where: str, positions: Mapping[Loc, int]
) -> ConfigError:
    """``yamlfile.validation_to_config_error`` for a data file of ``model`` (an inventory file): the first
    error naming file, line and field, the others in its ``more``, and an unknown field's naming the field
    of ``model`` it was probably meant to be (``Gpus`` -> ``gpus``). Such a suggestion comes first: it
    explains the "Field required" of the field it names, which pydantic reports before it."""
    suggested, others = [], []
    for error in exc.errors():
        found = detail_to_config_error(error, where, positions)
        if error["type"] == "extra_forbidden":
            told = _with_suggestion(found, model, tuple(error["loc"]))
            if told is not found:
                suggested.append(told)
                continue
        others.append(found)
    return ConfigError.first_of(suggested + others)


def _with_suggestion(found: ConfigError, model: type[BaseModel], loc: Loc) -> ConfigError:
    """An unknown field's error naming the field of that section it was probably meant to be: the same
    name with a unit (``quiet_period`` -> ``quiet_period_seconds``), else a close spelling (``alertin``)."""
    if not loc or not isinstance(loc[-1], str):
        return found
    names = _field_names(model, loc[:-1])
    close = (
        [n for n in names if n.casefold() == loc[-1].casefold()]  # ``Port``: keys are matched exactly
        or [n for n in names if n.startswith(f"{loc[-1]}_")]
        or difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.75)
    )
    if len(close) != 1:
        return found
    message = f"unknown field; did you mean {close[0]}? correct its spelling or remove it"
    return ConfigError(message, path=found.path, field=found.field, line=found.line)


def miscased_sections(
    raw: Mapping[Any, Any], names: Collection[str], where: str, positions: Mapping[Loc, int]
) -> list[ConfigError]:
    """A problem for each top-level key of ``raw`` that is one of ``names`` in another case (``Api:``).
    pydantic-settings matches top-level keys in any case (as it does environment variables) though every key
    below them is matched exactly; such a key was taken silently, also past the literal-secret check
    (``Slack: {bot_token: xoxb-...}``), and one beside its lower-case twin overrode it."""
    by_fold = {name.casefold(): name for name in names}
    problems = []
    for key in raw:
        name = by_fold.get(key.casefold()) if isinstance(key, str) else None
        if name is not None and key != name:
            message = f"section names are lower case: write {name}: (keys are matched exactly)"
            problems.append(ConfigError(message, path=where, field=key, line=positions.get((key,))))
    return problems


def _field_names(model: type[BaseModel], loc: Loc) -> list[str]:
    """The fields of the section at ``loc`` of ``model`` (list items' sections too); none if not a section."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue  # an item of the list the previous part named: its model is already current
        field = current.model_fields.get(part) if current is not None else None
        current = _model_in(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The section model an annotation holds: itself, or inside ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, get_args(annotation)) if m is not None), None)


def _copied(value: Any) -> Any:
    """``value``'s mappings and lists copied (its leaves shared: ``secret_refs.UNRESOLVED`` stays itself)."""
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value


def _under(loc: Loc, roots: Iterable[Loc]) -> bool:
    """Whether ``loc`` is one of ``roots`` or inside one."""
    return any(loc[: len(root)] == root for root in roots)


def _prune(data: dict[str, Any], loc: Loc) -> Loc | None:
    """Remove the setting at ``loc`` from ``data``, or the nearest mapping key holding it (a list item is
    not removed: the items after it would move); its key path, or None when ``data`` holds none of it."""
    if loc and loc[-1] == _KEY:  # a mapping's key that is wrong: the key itself goes
        loc = loc[:-1]
    for depth in range(len(loc), 0, -1):
        parent: Any = data
        for part in loc[: depth - 1]:
            parent = _child(parent, part)
        key = loc[depth - 1]
        if isinstance(parent, dict) and key in parent:
            del parent[key]
            return loc[:depth]
        if isinstance(parent, dict) and depth < len(loc):
            # A mapping on the way lacks it: removed already, by an earlier error of the same pass (a list's
            # second bad entry after its first took the list). Climbing on removed the whole section or list
            # above it, `webhooks` for `webhooks[0].priorities[1]`, and with it the other items' problems.
            return None
    return None


def _child(value: Any, part: str | int) -> Any:
    """``value[part]`` when ``value`` is a mapping or list holding it, else None."""
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
        return value[part]
    return None


def outside(problems: Iterable[ConfigError], doubtful: Collection[Loc]) -> list[ConfigError]:
    """The ``problems`` that are neither about a doubtful setting nor read one (checks of its default)."""
    return [
        p for p in problems if not any(_overlaps(field_loc(f), doubtful) for f in (p.field, *p.reads) if f)
    ]


def _overlaps(loc: Loc, doubtful: Iterable[Loc]) -> bool:
    """Whether ``loc`` is one of ``doubtful``, inside one, or holds one (a check of the whole section)."""
    return any(_under(loc, (other,)) or _under(other, (loc,)) for other in doubtful)


def in_file_order(problems: Iterable[ConfigError]) -> list[ConfigError]:
    """``problems`` by their line in the file; those with none (a variable's, a command's) after them, each
    group in the order found."""
    return sorted(problems, key=lambda p: (p.path == ENVIRONMENT or p.line is None, p.line or 0))
