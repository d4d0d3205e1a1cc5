from __future__ import annotations

import pytest

from gpuwarden.urls import without_credentials


@pytest.mark.parametrize(
    ("url", "bare", "credentials"),
    [
        ("http://gw:9091", "http://gw:9091", None),
        ("http://trainer:pw@gw:9091", "http://gw:9091", ("trainer", "pw")),
        ("http://trainer:s3cr%40t%3Apw@gw:9091/pgw", "http://gw:9091/pgw", ("trainer", "s3cr@t:pw")),
        ("https://trainer@gw", "https://gw", ("trainer", "")),
        ("http://u:a@b@[::1]:9091", "http://[::1]:9091", ("u", "a@b")),
    ],
    ids=["no-user", "user-and-password", "percent-encoded-with-prefix", "user-alone", "at-in-password"],
)
def test_credentials_are_taken_out_of_a_url_decoded(
    url: str, bare: str, credentials: tuple[str, str] | None
) -> None:
    assert without_credentials(url) == (bare, credentials)
