"""The CLI's requests to serve (``api_request``): an error answer said in the words its caller gave for it."""

from __future__ import annotations

import pytest
import typer

from gpuwarden.cli.api_requests import api_request
from tests.http_stub import FixedAnswer

ABSENT = "incident: no incident 'inc-1' (incidents list shows them)"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"error": "id: no incident \'inc-1\'", "field": "id"}', f"error: HTTP 404: {ABSENT}"),
        (  # a route serve does not have: its own words and hint, not the caller's
            b'{"error": "path: no route for GET /api/v1/incidents/inc-1", "field": "path"}',
            "error: HTTP 404: path: no route for GET /api/v1/incidents/inc-1",
        ),
        (b"Not Found", "is --url a gpuwarden serve?"),  # another server's
    ],
    ids=["serve-holds-none", "no-route", "not-gpuwarden"],
)
def test_absent_replaces_only_serves_answer_that_it_holds_no_such_thing(
    capsys: pytest.CaptureFixture[str], body: bytes, said: str
) -> None:
    stub = FixedAnswer(404, body)
    try:
        with pytest.raises(typer.Exit) as stopped:
            api_request("GET", stub.url, "/api/v1/incidents/inc-1", absent=ABSENT)
    finally:
        stub.close()
    err = " ".join(capsys.readouterr().err.split())
    assert stopped.value.exit_code == 1 and said in err, err
    assert (ABSENT in err) == (said == f"error: HTTP 404: {ABSENT}"), err
