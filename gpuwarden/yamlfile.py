"""Reading YAML data files (config, inventories, runbooks) so that errors name the file, line and field.

``read_yaml`` keeps the line of every key; ``validation_to_config_error`` turns pydantic's first error into
a ``ConfigError`` at that line; ``load_yaml_model`` does both for one file and one model.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gpuwarden.durations import spoken_seconds
from gpuwarden.errors import ConfigError
from gpuwarden.numerals import AS_WRITTEN, TOO_LARGE, written_as_digits
from gpuwarden.secret_refs import resolve_secret_refs
from gpuwarden.yamlloader import NumbersAsWrittenLoader

ModelT = TypeVar("ModelT", bound=BaseModel)


def _positions(root: yaml.Node) -> dict[tuple[str | int, ...], int]:
    """The 1-based line of every key path. A node reached again through an alias is not walked again (an
    alias bomb's expansion is not walked at all): what lies inside an alias takes the alias's line."""
    out: dict[tuple[str | int, ...], int] = {(): root.start_mark.line + 1}
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        out.setdefault(path, node.start_mark.line + 1)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            # After merges (``<<: *base``) the pairs are the merged ones first, then the mapping's own: the
            # last line written for a key is the one whose value wins.
            for key_node, _ in node.value:
                out[(*path, key_node.value)] = key_node.start_mark.line + 1
            stack.extend((value, (*path, key.value)) for key, value in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in reversed(list(enumerate(node.value))))
    return out


Syntax = Literal["YAML", "JSON"]
"""What a setting's value was written in: the file's YAML, or a ``GPUWARDEN_`` variable's JSON."""
_LOADER = NumbersAsWrittenLoader  # libyaml when PyYAML was built with it
MAX_FILE_BYTES = 64 * 1024 * 1024
"""Larger files are refused: a 100,000-GPU inventory is a few MiB, and /dev/zero would fill the memory."""
MAX_DEPTH = 100
"""Deeper nesting is refused: no file needs it, and the code that walks the data recurses."""
MAX_EXPANDED_VALUES = 1_000_000
"""Aliases may add this many values (beyond twice those written): an alias bomb (an alias of a list of
aliases, nine levels deep) expands a few lines into billions of values."""
_STR, _MERGE = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"


FILE_NOT_DIRECTORY = "a file is expected: give the path of the file, not of its directory"
"""What a file setting or argument given a directory is told to give instead."""


def read_text_file(path: Path, *, give: str = "") -> str:
    """The file's text; a FIFO (which would block), a device or a file over ``MAX_FILE_BYTES`` is refused.
    ``give``: what the caller's option takes (``give NAB's window file, ...``), said after the reason when
    the file cannot be read or is too large; a configuration file's refusal names the file alone."""
    hint = f"; {give}" if give else ""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a directory: open() names it below
            raise ConfigError(
                f"cannot read file: not a regular file (a FIFO or a device){hint}", path=str(path)
            )
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        # A directory (`config validate /etc/gpuwarden`) said only "Is a directory": say what it takes.
        said = hint or (f"; {FILE_NOT_DIRECTORY}" if isinstance(exc, IsADirectoryError) else "")
        raise ConfigError(f"cannot read file: {exc.strerror}{said}", path=str(path)) from exc
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than the limit of {MAX_FILE_BYTES:,} bytes{hint}", path=str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(not_utf8(exc), path=str(path)) from exc


def not_utf8(exc: UnicodeDecodeError) -> str:
    """A file that is not UTF-8 said with where and what to do (Python's words say neither)."""
    return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value)


def _check_keys(node: yaml.MappingNode, path: str) -> None:
    """Every key is a string, and no key is given twice (YAML would keep the last one silently)."""
    first: dict[str, int] = {}
    for key, _ in node.value:
        line = key.start_mark.line + 1
        if key.tag == _MERGE:  # ``<<: *base``: keys given beside it override the merged ones on purpose
            continue
        if not isinstance(key, yaml.ScalarNode):
            raise ConfigError(f"invalid YAML: a {key.id} as a key; keys are names", path=path, line=line)
        if key.tag != _STR:
            kind = key.tag.rpartition(":")[2]
            message = f"invalid YAML: the key {key.value} is not a string (YAML reads it as {kind}); quote it"
            raise ConfigError(message, path=path, line=line)
        if key.value in first:
            message = f"duplicate key {key.value!r} (first at line {first[key.value]}); merge the two"
            raise ConfigError(message, path=path, line=line)
        first[key.value] = line


def _check_nodes(root: yaml.Node, path: str) -> None:
    """Refuse, at their line, what the data's readers cannot take: keys that are not strings or are given
    twice, an alias inside the node it names (a cycle), nesting past ``MAX_DEPTH``, and aliases that expand
    past ``MAX_EXPANDED_VALUES``. One pass over the distinct nodes (shared ones are measured once)."""
    if isinstance(root, yaml.ScalarNode):  # a document of one value (``null``, ``hello``): nothing inside
        return
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()
    finished: list[yaml.Node] = []
    written = 1  # values as written (an alias counts once): the root and every collection's children
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    scalar = yaml.ScalarNode
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:  # its children are measured (scalars count 1 and are never stacked: most nodes are)
            children = _children(node)
            written += len(children)
            size[key] = 1 + sum(1 if isinstance(c, scalar) else size[id(c)] for c in children)
            depth[key] = 1 + max((1 if isinstance(c, scalar) else depth[id(c)] for c in children), default=0)
            if depth[key] > MAX_DEPTH:
                raise ConfigError(
                    f"invalid YAML: nested deeper than {MAX_DEPTH} levels",
                    path=path,
                    line=node.start_mark.line + 1,
                )
            finished.append(node)
            continue
        if key in size:
            continue
        if key in entered:  # entered and not finished: an ancestor of where it is reached again
            raise ConfigError(
                "invalid YAML: an alias refers to the node that contains it (a recursive alias)",
                path=path,
                line=node.start_mark.line + 1,
            )
        entered.add(key)
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, path)
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(_children(node)) if not isinstance(c, scalar))
    limit = MAX_EXPANDED_VALUES + 2 * written
    if size[id(root)] > limit:
        first = next(n for n in finished if size[id(n)] > limit)  # the smallest part that expands too far
        raise ConfigError(
            f"invalid YAML: its aliases expand to {size[id(first)]:,} values, more than {limit:,}",
            path=path,
            line=first.start_mark.line + 1,
        )


def read_yaml(path: Path) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    """Parse a YAML file; return the data and a map from key path to 1-based line number."""
    text = read_text_file(path)
    # One parse (the node tree keeps the line of every key), with libyaml when PyYAML was built with it:
    # a 12,800-GPU inventory took 1.6 s parsed twice in pure Python.
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(node, str(path))
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
            line, problem = _unreadable_character(text, exc.character, exc.reason)
        tab = line is not None and _indented_with_tab(text, line)
        if tab:  # libyaml's words do not say "tab"
            problem += "; the line is indented with a tab: YAML indents with spaces only"
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start is not None and line is not None and start.line + 1 != line and not tab:
            # An unclosed `[`, `{` or quote is found missing at the end of the file: a line past its last one
            # (broken.yaml:4 of a 3-line file), which alone did not say where the opening was.
            problem += f" ({context} that starts at line {start.line + 1})"
            if line > len(text.splitlines()):
                line = start.line + 1
        if "another document" in problem:  # libyaml said only "but found another document"
            problem = (
                "a second document (after a `---` line); gpuwarden reads one: remove the `---` and merge them"
            )
        raise ConfigError(f"invalid YAML: {problem}", path=str(path), line=line) from exc
    finally:
        loader.dispose()
    return data, _positions(node) if node is not None else {}


def _unreadable_character(text: str, character: int, reason: str) -> tuple[int | None, str]:
    """The line of a character YAML refuses (a control character) and what to say of it: PyYAML said
    `in "<unicode string>", position 50`, no line, and libyaml's position counts bytes, not characters.
    YAML stops at the first such character, so its first occurrence is the one."""
    at = text.find(chr(character))
    if at < 0:
        return None, f"character U+{character:04X}: {reason}"
    column = at - text.rfind("\n", 0, at)
    return text.count("\n", 0, at) + 1, f"character U+{character:04X} at column {column}: {reason}; remove it"


def _indented_with_tab(text: str, line: int) -> bool:
    """Whether the 1-based ``line`` of ``text`` has a tab in its indentation."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return False
    content = lines[line - 1]
    return "\t" in content[: len(content) - len(content.lstrip(" \t"))]


_KEY = "[key]"  # the last part of pydantic's loc for an error about a mapping's key rather than its value


def field_path(loc: Sequence[str | int]) -> str:
    """A setting's path as every error writes it: ``nodes[0].gpus``, not pydantic's ``nodes.0.gpus``. A
    mapping's key (pydantic's ``spare_gpus..[key]``) is written as the mapping's path."""
    if len(loc) >= 2 and loc[-1] == _KEY:
        loc = loc[:-2]
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def error_message(error: ErrorDetails, *, syntax: Syntax = "YAML") -> str:
    """One pydantic error's message for a person: without pydantic's ``Value error, `` prefix (a validator's
    own text stands alone), and saying what to do about an unknown or a missing field, a value past its
    bounds or an empty one. An error about a mapping's key names the key. ``syntax``: what the value was
    written in, the file's YAML or a ``GPUWARDEN_`` variable's JSON."""
    loc = error["loc"]
    key = f"key {loc[-2]!r}: " if len(loc) >= 2 and loc[-1] == _KEY else ""
    if error["type"] == "extra_forbidden":
        return "unknown field; remove it or check its spelling"
    if error["type"] == "missing":
        return "required field is missing; add it"
    message = _constraint_message(
        error, item=bool(loc) and isinstance(loc[-1], int), key=bool(key), syntax=syntax
    )
    if message is None:
        message = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
    return key + message


def _constraint_message(error: ErrorDetails, *, item: bool, key: bool, syntax: Syntax) -> str | None:
    """A broken ``Field`` constraint said with what to write instead (pydantic's "String should have at
    least 1 character" says neither that the value is empty nor what to do); None for other errors."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind == "string_too_short":
        least = ctx["min_length"]
        if least == 1:
            fix = "a name" if key else "a value or remove the item" if item else "a value"
            return f"empty; write {fix}"
        return f"{shown_value(value)} is shorter than {least} characters; write at least {least}"
    if kind == "string_too_long":
        return f"longer than {ctx['max_length']} characters; shorten it"
    if kind in (
        "literal_error",
        "enum",
    ):  # "Input should be 'P0', 'P1', 'P2' or 'P3'": not the value, nor a fix
        return _choice_message(value, str(ctx.get("expected", "")), key=key)
    if kind in ("model_type", "dict_type"):  # "Input should be a valid dictionary or instance of ApiConfig"
        return f"is {shown_value(value)}, not a section; {_WRITE_SECTION[syntax]}"
    if kind == "list_type":
        return f"is {shown_value(value)}, not a list; {_WRITE_LIST[syntax]}"
    if kind == "string_type" and isinstance(value, dict):  # `{ENV: X}`, `{env: X, default: y}`: no secret
        return (
            "is a mapping, not text; a secret from the environment is written {env: NAME} (that key"
            " alone, in lower case), anything else as text"  # not shown: it may hold a secret
        )
    if kind == "string_type" and isinstance(value, list):
        return f"is {shown_value(value)}, a list, not text; write one value"
    if kind == "string_type":  # pydantic said "Input should be a valid string": not why, nor what to write
        return _not_text_message(value, syntax)
    if kind in ("too_short", "too_long"):
        actual = ctx["actual_length"]
        has = "empty" if actual == 0 else f"{actual} item{'s' if actual != 1 else ''}"
        if kind == "too_short":
            return f"{has}; list at least {ctx['min_length']}"
        return f"{has}, more than {ctx['max_length']}; remove {actual - ctx['max_length']}"
    if kind in ("float_parsing", "int_parsing", "bool_parsing"):
        text = ctx.get("text", value)  # an item's (numerals)
        if ctx.get("boolean"):  # YAML's yes, a variable's JSON true: a boolean, not the text 'true'
            said = f"{text} (a {syntax} boolean)"
            return _parsing_message(kind, text, error["loc"], said=said) + _BOOLEANS[syntax]
        return _parsing_message(kind, text, error["loc"])
    if kind in _NUMBER_TYPES:
        return _not_a_number_message(kind, value)
    bounds = {
        "greater_than_equal": ("ge", "is less than {}, the least allowed; write {} or more"),
        "greater_than": ("gt", "is not more than {}; write more than {}"),
        "less_than_equal": ("le", "is more than {}, the most allowed; write {} or less"),
        "less_than": ("lt", "is not less than {}; write less than {}"),
    }
    if kind in bounds:
        bound, text = bounds[kind]
        limit = _number(ctx[bound])
        return f"{shown_value(value, quoted=False)} " + text.format(limit, limit)
    return None


def _choice_message(value: Any, expected: str, *, key: bool) -> str:
    """A value (or a mapping's ``key``, which the line names already) that is none of a setting's choices
    (``expected``, pydantic's "'P0', 'P1' or 'P2'"), said with them and the one it was probably meant to be:
    the same in another case (``p1``), or a near spelling."""
    choices = re.findall(r"'([^']*)'", expected) or [expected]
    said = f"{'is' if key else f'{shown_value(value)} is'} not one of {', '.join(choices)}"
    text = str(value)
    meant = [c for c in choices if c.lower() == text.lower()] or difflib.get_close_matches(text, choices, n=1)
    return f"{said}; did you mean {meant[0]}?" if meant else f"{said}; write one of them"


_WRITE_SECTION: dict[Syntax, str] = {
    "YAML": "write its settings below it as name: value pairs",
    "JSON": 'write its settings as a JSON object, {"name": value, ...}',
}
_WRITE_LIST: dict[Syntax, str] = {
    "YAML": "write its items below it, each after '- '",
    "JSON": "write its items as a JSON list, [item, ...]",
}
_BOOLEANS: dict[Syntax, str] = {
    "YAML": " (YAML reads yes, on and true as true; no, off and false as false)",
    "JSON": " (JSON reads an unquoted true or false as a boolean)",
}
# pydantic's errors for a value of no number's type ("Input should be a valid number"), said with a fix.
_NUMBER_TYPES = {
    "float_type": "a number",
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "finite_number": "a finite number",
}


def _not_a_number_message(kind: str, value: Any) -> str:
    """A value no number setting takes (null, a list, NaN, YAML's .inf, an integer past a float's range,
    a fraction where a whole number belongs) said with what to write."""
    what = _NUMBER_TYPES[kind]
    if value is None:
        return "is empty; write a number, or remove the line for the default"
    if isinstance(value, float) and math.isnan(value):
        return "nan is not a number; write one"
    if isinstance(value, int) and not isinstance(value, bool) and kind == "float_type":
        return f"{shown_value(value, quoted=False)} is {TOO_LARGE}; write a smaller one"
    return f"{shown_value(value, quoted=False)} is not {what}; write one"


def _not_text_message(value: Any, syntax: Syntax) -> str:
    """A value where text belongs that the file's syntax read as something else: YAML's ``no`` (false),
    ``1.0``, ``2026-01-01``, an empty value; said with what it was read as and to quote it."""
    if value is None:
        return "is empty; write a value, or remove the line for the default"
    if isinstance(value, bool):
        read = f"a boolean, {shown_value(value)}{_BOOLEANS[syntax]}"
    elif isinstance(value, int | float):
        read = f"a number, {shown_value(value, quoted=False)}"
    elif isinstance(value, date):
        read = f"a date, {shown_value(value)}"
    else:
        return f"{shown_value(value)} is not text; write text"
    quote = "'...'" if syntax == "YAML" else '"..."'
    return f"is read as {read}, not as text; quote it as written, in {quote}"


_UNIT_FIELDS = {"_seconds": ("seconds", 1.0), "_days": ("days", 86400.0)}


def _parsing_message(kind: str, value: Any, loc: Sequence[str | int], *, said: str | None = None) -> str:
    """A word where a number or a boolean belongs, said with what to write: a setting in seconds or days
    written as a duration (``5 min``, pydantic's "unable to parse string as a number") gets its number.
    ``said``: how the message names the value (``shown_value``'s quoted text by default)."""
    said = shown_value(value) if said is None else said
    if kind == "bool_parsing":
        return f"{said} is not true or false; write true or false"
    what = "a whole number" if kind == "int_parsing" else "a number"
    digits = written_as_digits(value, whole=kind == "int_parsing") if isinstance(value, str) else None
    if digits is not None:  # ' 5', '1_000': what Python reads and an option refuses
        return f"{said} is not {what} {AS_WRITTEN}; write {digits}"
    name = str(loc[-1]) if loc else ""
    unit = next((u for suffix, u in _UNIT_FIELDS.items() if name.endswith(suffix)), None)
    if unit is None:
        return f"{said} is not {what}; write one"
    words, size = unit
    seconds = spoken_seconds(value) if isinstance(value, str) else None
    if seconds is None:
        return f"{said} is not {what}; write the {words} as a number"
    return f"{said} is not {what}; write the {words} as a number: {_number(seconds / size)}"


def _number(value: Any) -> str:
    """A bound as the file would write it: 36525, not 36525.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def shown_value(value: Any, *, quoted: bool = True) -> str:
    """A value of a file as an error quotes it: short, on one line, a number as written (YAML's or a
    variable's), text quoted unless ``quoted`` is False, and null, a boolean or a date as YAML writes them
    (``null``, ``true``, ``2024-01-01``), not as Python does (``None``, ``True``, ``datetime.date(...)``)."""
    if value is None or isinstance(value, bool):
        text = "null" if value is None else str(value).lower()
    else:
        plain = isinstance(value, date) or (not quoted and isinstance(value, str | int | float))
        text = str(value) if plain else repr(value)
    return text if len(text) <= 40 and text.isprintable() else repr(text[:37]) + "..."


def validation_to_config_error(
    exc: ValidationError, path: str, positions: Mapping[tuple[str | int, ...], int]
) -> ConfigError:
    """The first pydantic error as a ``ConfigError`` naming file, line and field (``nodes[0].gpus``), saying
    how many more there are; the others are in its ``more``."""
    return ConfigError.first_of(validation_to_config_errors(exc, path, positions))


def validation_to_config_errors(
    exc: ValidationError, path: str, positions: Mapping[tuple[str | int, ...], int]
) -> list[ConfigError]:
    """Every pydantic error, in pydantic's order, as a ``ConfigError`` naming file, line and field."""
    return [detail_to_config_error(error, path, positions) for error in exc.errors()]


def detail_to_config_error(
    error: ErrorDetails, path: str, positions: Mapping[tuple[str | int, ...], int], *, syntax: Syntax = "YAML"
) -> ConfigError:
    """One pydantic error as a ``ConfigError`` naming file, line and field (``syntax`` as ``error_message``
    takes it)."""
    loc = tuple(error["loc"])
    line = next((positions[loc[:d]] for d in range(len(loc), -1, -1) if loc[:d] in positions), None)
    return ConfigError(error_message(error, syntax=syntax), path=path, field=field_path(loc), line=line)


def not_a_mapping(data: Any, path: str, sections: Iterable[str]) -> ConfigError:
    """The error for a file whose top level is no mapping (a list, a single value), saying what it is and
    which ``name:`` lines it takes (``sections``: its model's fields)."""
    what = "a list" if isinstance(data, list) else f"a single value ({shown_value(data)})"
    return ConfigError(
        f"the top level is {what}, not a mapping; write one `name:` line per section"
        f" ({', '.join(sections)}) at the start of a line",
        path=path,
        line=1,
    )


def read_yaml_mapping(
    path: Path, model: type[BaseModel]
) -> tuple[dict[str, Any], dict[tuple[str | int, ...], int]]:
    """``read_yaml`` of a file whose top level is ``model``'s mapping (an empty file: an empty one); else
    ``not_a_mapping``, naming its fields."""
    data, positions = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise not_a_mapping(data, str(path), model.model_fields)
    return data, positions


def load_yaml_model(path: Path, model: type[ModelT], environ: Mapping[str, str] | None = None) -> ModelT:
    """Load and validate one YAML data file against a pydantic model."""
    data, positions = read_yaml_mapping(path, model)
    data = resolve_secret_refs(data, os.environ if environ is None else environ, str(path))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_to_config_error(exc, str(path), positions) from exc
