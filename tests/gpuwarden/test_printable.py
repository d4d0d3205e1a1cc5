"""Label text the CLI shows: control and format characters are escaped, so what shows is what is stored."""

from __future__ import annotations

import pytest

from gpuwarden.printable import clipped, escape_controls
from tests.gpuwarden.cli.incidents_answers import DETAIL, stdout_for

# Stored "node-<RLO>01<PDF>": shown raw, a terminal's bidi rendering shows "node-10", another node.
SPOOF = "node-\u202e01\u202c \u2066x\u2069\u200b\u200e\u200f\ufeff\u00ad\u2028\U000e0001"
SPOOF_SHOWN = "node-\\u202e01\\u202c \\u2066x\\u2069\\u200b\\u200e\\u200f\\ufeff\\xad\\u2028\\U000e0001"
HIDDEN = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200c\u200d\u200e\u200f\ufeff\u2028"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (SPOOF, SPOOF_SHOWN),
        ("".join(chr(c) for c in range(0x202A, 0x202F)), "\\u202a\\u202b\\u202c\\u202d\\u202e"),
        ("".join(chr(c) for c in range(0x2066, 0x206A)), "\\u2066\\u2067\\u2068\\u2069"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("Evil\x1b[2J\n\x9b", "Evil\\x1b[2J\\n\\x9b"),
        ("r01 日本 é \u00a0 🔥", "r01 日本 é \u00a0 🔥"),  # letters, symbols, a no-break space: as they are
    ],
    ids=["spoofed-node", "embeddings-overrides", "isolates", "surrogate", "controls", "printable-kept"],
)
def test_format_and_control_characters_are_escaped_and_everything_printable_is_kept(
    text: str, shown: str
) -> None:
    assert escape_controls(text) == shown


def test_keep_leaves_the_named_characters_alone() -> None:
    assert escape_controls("a\u202eb\nc", keep="\n") == "a\\u202eb\nc"


@pytest.mark.parametrize(
    ("text", "more", "shown"),
    [
        ("short", False, "short"),
        ("short", True, "short..."),
        ("x" * 200, False, "x" * 200),
        ("x" * 201, False, "x" * 197 + "..."),
        ("x" * 199, True, "x" * 197 + "..."),
        ("\x1b" * 300, False, "\\x1b" * 49 + "..."),
        ("a" * 196 + "\x1b[2J", False, "a" * 196 + "..."),
        ("\x1b" * 50, False, "\\x1b" * 50),
    ],
    ids=[
        "short",
        "short-more",
        "at-limit",
        "over-limit",
        "more-at-limit",
        "escapes",
        "escape-at-cut",
        "escapes-fit",
    ],
)
def test_clipped_text_is_escaped_and_never_longer_than_the_limit(text: str, more: bool, shown: str) -> None:
    # Clipped before it was escaped, a line of 200 ESC characters showed as 791 characters; clipped after,
    # the cut could fall inside an escape and leave a lone backslash ("aaa\...").
    assert clipped(text, 200, more=more) == shown
    assert len(shown) <= 200


SPOOFED_DETAIL = {
    **DETAIL,
    "title": f"gpu {SPOOF} lost",
    "root_cause": {"kind": "gpu_lost", "target": {"type": "node", "node": SPOOF}},
    "timeline": [{"at": "2026-01-01T00:00:00Z", "kind": "alert_added", "message": f"alert added: {SPOOF}"}],
}
OUTBOX = {
    "counts": {"failed": 1},
    "messages": [
        {
            "id": 1,
            "notifier": "slack",
            "incident_id": "inc-1",
            "event": "opened",
            "status": "failed",
            "attempts": 1,
            "last_error": f"channel_not_found for {SPOOF}",
        }
    ],
}


@pytest.mark.parametrize(
    ("argv", "body"),
    [
        (["incidents", "list"], [SPOOFED_DETAIL]),
        (["incidents", "show", "inc-1"], SPOOFED_DETAIL),
        (["incidents", "postmortem", "inc-1"], f"# Postmortem draft: gpu {SPOOF} lost\n\n- Node: {SPOOF}\n"),
        (["outbox", "list"], OUTBOX),
    ],
    ids=["incidents-list", "incidents-show", "postmortem", "outbox-list"],
)
def test_every_view_shows_bidi_and_zero_width_characters_of_a_label_as_escapes(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], body: object
) -> None:
    """A label with U+202E (right-to-left override) showed as another node's name in ``incidents list``."""
    monkeypatch.setenv("COLUMNS", "400")  # one line per row: the escape is not folded across lines
    out = stdout_for(argv, body)
    assert not any(c in out for c in HIDDEN), ascii(out)
    assert SPOOF_SHOWN in out, out
