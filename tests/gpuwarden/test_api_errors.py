from __future__ import annotations

import pytest

from gpuwarden.api_errors import failure_text


@pytest.mark.parametrize(
    ("method", "path", "safe"),
    [
        ("POST", "/api/v2/alerts", True),
        ("POST", "/api/v1/webhook/alertmanager", True),
        ("POST", "/api/v1/incidents/inc-1/ack", True),
        ("POST", "/api/v1/incidents/inc-1/mitigate", True),
        ("POST", "/api/v1/incidents/inc-1/resolve", True),
        ("POST", "/api/v1/incidents/inc-1/silence", True),
        ("DELETE", "/api/v2/silence/sil-1", True),
        ("POST", "/api/v1/outbox/retry", True),
        ("POST", "/api/v1/outbox/discard", True),
        ("POST", "/api/v1/incidents/inc-1/notes", False),
        ("POST", "/api/v2/silences", False),
        ("POST", "/api/v1/incidents/inc-1/ack/more", False),
    ],
)
def test_a_failed_write_says_its_outcome_is_unknown_and_whether_repeating_it_is_safe(
    method: str, path: str, safe: bool
) -> None:
    text = failure_text(method, path, unreachable=True)
    assert text.startswith("the store is unreachable; whether the change was stored is unknown")
    assert ("a retry is safe" in text) is safe and ("look before you retry" in text) is not safe


def test_a_failed_read_says_it_could_not_read() -> None:
    assert failure_text("GET", "/api/v1/incidents", unreachable=False) == (
        "internal error; the store could not be read, retry later"
    )
