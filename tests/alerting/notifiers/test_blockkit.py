"""Block Kit shape checks refuse what Slack refuses."""

from __future__ import annotations

from typing import Any

import pytest

from alerting.notifiers.blockkit import validate_attachments, validate_blocks

OK_SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}


def button(action_id: str, text: str = "Go") -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}}


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ("not a list", "must be a list"),
        ([OK_SECTION] * 51, "more than 50 blocks"),
        ([{"type": "banner"}], "unknown block type"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}], "longer than 150"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "*bold*"}}], "must be one of plain_text"),
        ([{"type": "section"}], "needs text or fields"),
        ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "1-10 text objects"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}], "non-empty"),
        (
            [{"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": True}}],
            "only plain_text takes emoji",
        ),
        ([{"type": "actions", "elements": [button("a"), button("a")]}], "duplicate 'a'"),
        ([{"type": "actions", "elements": [button("a", "x" * 76)]}], "longer than 75"),
        ([{"type": "actions", "elements": [{**button("a"), "style": "green"}]}], "primary or danger"),
        ([{"type": "actions", "elements": []}], "1-25 elements"),
        ([{**OK_SECTION, "block_id": "b"}, {**OK_SECTION, "block_id": "b"}], "duplicate 'b'"),
        ([{"type": "image", "image_url": "http://x/y.png"}], "alt_text"),
        ([{"type": "divider", "text": "no"}], "takes no fields"),
    ],
    ids=[
        "not-list",
        "too-many",
        "unknown-type",
        "long-header",
        "mrkdwn-header",
        "empty-section",
        "too-many-fields",
        "empty-text",
        "emoji-on-mrkdwn",
        "duplicate-action",
        "long-button",
        "bad-style",
        "no-elements",
        "duplicate-block-id",
        "image-no-alt",
        "divider-extra",
    ],
)
def test_invalid_blocks_are_reported_with_their_path(blocks: Any, problem: str) -> None:
    problems = validate_blocks(blocks)
    assert any(problem in p for p in problems), problems


def test_valid_blocks_pass() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Title", "emoji": True}},
        OK_SECTION,
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "ctx"}]},
        {"type": "actions", "elements": [button("a"), button("b")]},
    ]
    assert validate_blocks(blocks) == []


@pytest.mark.parametrize("colour", ["#d50200", "2eb886", "danger"])
def test_attachment_colours_slack_accepts(colour: str) -> None:
    assert validate_attachments([{"color": colour, "blocks": [OK_SECTION]}]) == []


@pytest.mark.parametrize("colour", ["red", "#12345", "#gggggg"])
def test_attachment_colours_slack_refuses(colour: str) -> None:
    assert validate_attachments([{"color": colour, "blocks": [OK_SECTION]}]) != []


def test_problem_paths_point_into_the_attachment() -> None:
    problems = validate_attachments([{"color": "#000000", "blocks": [{"type": "section"}]}])
    assert problems == ["attachments[0].blocks[0]: a section needs text or fields"]


@pytest.mark.parametrize(
    ("blocks", "problems"),
    [
        (
            [{**OK_SECTION, "block_id": ""}, {**OK_SECTION, "block_id": "x" * 256}],
            ["blocks[0].block_id: must be 1-255 characters", "blocks[1].block_id: must be 1-255 characters"],
        ),
        (
            [{"type": "actions", "elements": [button(""), button("a" * 256), button("a" * 255)]}],
            [
                "blocks[0].elements[0].action_id: must be 1-255 characters",
                "blocks[0].elements[1].action_id: must be 1-255 characters",
            ],
        ),
        (
            [
                {**OK_SECTION, "block_id": "a"},
                {"type": "actions", "block_id": "b", "elements": [button("a")]},
            ],
            [],
        ),
    ],
    ids=["block-id-length", "action-id-length", "block-and-action-ids-apart"],
)
def test_block_and_action_ids_are_checked_alike(blocks: Any, problems: list[str]) -> None:
    assert validate_blocks(blocks) == problems


TEXT = {"type": "mrkdwn", "text": "t"}
IMAGE = {"type": "image", "image_url": "http://x/y.png", "alt_text": "y"}


@pytest.mark.parametrize(
    ("blocks", "problems"),
    [
        ([{"type": "context", "elements": [TEXT] * 11}], ["blocks[0].elements: must hold 1-10 elements"]),
        ([{"type": "context", "elements": "no"}], ["blocks[0].elements: must hold 1-10 elements"]),
        (
            [{"type": "context", "elements": [IMAGE, {"type": "mrkdwn", "text": ""}]}],
            ["blocks[0].elements[1].text: must be a non-empty string"],
        ),
        ([{"type": "context", "elements": [IMAGE, TEXT]}], []),
        (
            [{"type": "actions", "elements": [button("a")] * 26}],
            ["blocks[0].elements: must hold 1-25 elements"],
        ),
        (
            [{"type": "section", "fields": [TEXT, {"type": "mrkdwn", "text": "x" * 2001}]}],
            ["blocks[0].fields[1].text: longer than 2000 characters"],
        ),
        ([{"type": "section", "fields": []}], ["blocks[0].fields: must hold 1-10 text objects"]),
    ],
    ids=[
        "context-too-many",
        "context-not-list",
        "context-empty-text",
        "context-image-and-text",
        "actions-too-many",
        "field-too-long",
        "no-fields",
    ],
)
def test_list_fields_are_bounded_and_each_item_checked(blocks: Any, problems: list[str]) -> None:
    assert validate_blocks(blocks) == problems
