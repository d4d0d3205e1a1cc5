"""Shape checks for Block Kit payloads, after Slack's documented block types and limits.

The recorder answers ``invalid_blocks`` with these problems, as Slack does, so a test that posts a payload
Slack would refuse fails here first. Each problem names the path of the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_BLOCKS = 50
BLOCK_TYPES = {
    "section",
    "header",
    "context",
    "actions",
    "divider",
    "image",
    "rich_text",
    "input",
    "file",
    "video",
}
ELEMENT_TYPES = {
    "button",
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "multi_static_select",
    "overflow",
    "datepicker",
    "timepicker",
    "checkboxes",
    "radio_buttons",
}
_COLOUR = re.compile(r"^(#?[0-9a-fA-F]{6}|good|warning|danger)$")


def _text(obj: Any, path: str, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{path}: must be a text object"]
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    problems = []
    if kind not in allowed:
        problems.append(f"{path}.type: must be one of {', '.join(allowed)}")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{path}.text: must be a non-empty string")
    elif len(text) > limit:
        problems.append(f"{path}.text: longer than {limit} characters")
    extra = set(obj) - {"type", "text", "emoji", "verbatim"}
    if extra:
        problems.append(f"{path}: unknown field(s) {', '.join(sorted(extra))}")
    if "emoji" in obj and kind != "plain_text":
        problems.append(f"{path}.emoji: only plain_text takes emoji")
    return problems


def _confirm(obj: Any, path: str) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{path}: must be a confirmation object"]
    problems = _text(obj.get("title"), f"{path}.title", 100, plain_only=True)
    problems += _text(obj.get("text"), f"{path}.text", 300)
    problems += _text(obj.get("confirm"), f"{path}.confirm", 30, plain_only=True)
    problems += _text(obj.get("deny"), f"{path}.deny", 30, plain_only=True)
    return problems


def _unique_id(obj: dict[str, Any], key: str, path: str, seen: set[str]) -> list[str]:
    """Problems with an optional ``block_id`` or ``action_id``: 1-255 characters, unique in the message
    (``seen`` holds those met so far, and takes this one)."""
    given = obj.get(key)
    if given is None:
        return []
    if not isinstance(given, str) or not 0 < len(given) <= 255:
        return [f"{path}.{key}: must be 1-255 characters"]
    if given in seen:
        return [f"{path}.{key}: duplicate {given!r}"]
    seen.add(given)
    return []


def _element(obj: Any, path: str, action_ids: set[str]) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ELEMENT_TYPES:
        return [f"{path}.type: must be an interactive element type"]
    problems = _unique_id(obj, "action_id", path, action_ids)
    if obj["type"] == "button":
        problems += _text(obj.get("text"), f"{path}.text", 75, plain_only=True)
        value = obj.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > 2000):
            problems.append(f"{path}.value: must be a string of at most 2000 characters")
        if "style" in obj and obj["style"] not in ("primary", "danger"):
            problems.append(f"{path}.style: must be primary or danger")
        if "confirm" in obj:
            problems += _confirm(obj["confirm"], f"{path}.confirm")
    return problems


def _each(items: Any, path: str, most: int, what: str, check: Callable[[Any, str], list[str]]) -> list[str]:
    """Problems with a list field of 1 to ``most`` items (a section's fields, a block's elements), each item
    checked by ``check(item, its path)``."""
    if not isinstance(items, list) or not 0 < len(items) <= most:
        return [f"{path}: must hold 1-{most} {what}"]
    return [problem for i, item in enumerate(items) for problem in check(item, f"{path}[{i}]")]


def _context_element(obj: Any, path: str) -> list[str]:
    """A context block's element: an image, or a text object."""
    if isinstance(obj, dict) and obj.get("type") == "image":
        return []
    return _text(obj, path, 3000)


def _section(block: dict[str, Any], path: str, action_ids: set[str]) -> list[str]:
    problems: list[str] = []
    if "text" not in block and "fields" not in block:
        problems.append(f"{path}: a section needs text or fields")
    if "text" in block:
        problems += _text(block["text"], f"{path}.text", 3000)
    if "fields" in block:
        problems += _each(
            block["fields"], f"{path}.fields", 10, "text objects", lambda f, at: _text(f, at, 2000)
        )
    if "accessory" in block:
        problems += _element(block["accessory"], f"{path}.accessory", action_ids)
    return problems


def _block(block: Any, path: str, block_ids: set[str], action_ids: set[str]) -> list[str]:
    if not isinstance(block, dict):
        return [f"{path}: must be an object"]
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        return [f"{path}.type: unknown block type {kind!r}"]
    problems = _unique_id(block, "block_id", path, block_ids)
    if kind == "header":
        problems += _text(block.get("text"), f"{path}.text", 150, plain_only=True)
    elif kind == "section":
        problems += _section(block, path, action_ids)
    elif kind == "context":
        problems += _each(block.get("elements"), f"{path}.elements", 10, "elements", _context_element)
    elif kind == "actions":
        problems += _each(
            block.get("elements"),
            f"{path}.elements",
            25,
            "elements",
            lambda e, at: _element(e, at, action_ids),
        )
    elif kind == "divider" and set(block) - {"type", "block_id"}:
        problems.append(f"{path}: a divider takes no fields")
    elif kind == "image" and not (
        (block.get("image_url") or block.get("slack_file")) and block.get("alt_text")
    ):
        problems.append(f"{path}: an image needs image_url and alt_text")
    return problems


def validate_blocks(blocks: Any, path: str = "blocks") -> list[str]:
    """Problems with a list of blocks (empty when Slack would accept it)."""
    if not isinstance(blocks, list):
        return [f"{path}: must be a list"]
    if len(blocks) > MAX_BLOCKS:
        return [f"{path}: more than {MAX_BLOCKS} blocks"]
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    problems: list[str] = []
    for i, block in enumerate(blocks):
        problems += _block(block, f"{path}[{i}]", block_ids, action_ids)
    return problems


def validate_attachments(attachments: Any) -> list[str]:
    """Problems with legacy attachments carrying a colour bar and blocks."""
    if not isinstance(attachments, list):
        return ["attachments: must be a list"]
    problems: list[str] = []
    for i, att in enumerate(attachments):
        path = f"attachments[{i}]"
        if not isinstance(att, dict):
            problems.append(f"{path}: must be an object")
            continue
        colour = att.get("color")
        if colour is not None and (not isinstance(colour, str) or not _COLOUR.match(colour)):
            problems.append(f"{path}.color: must be a hex colour like #d50200 or good/warning/danger")
        if "blocks" in att:
            problems += validate_blocks(att["blocks"], f"{path}.blocks")
        elif not (att.get("text") or att.get("fallback")):
            problems.append(f"{path}: needs blocks, text or fallback")
    return problems
