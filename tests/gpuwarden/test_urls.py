from __future__ import annotations

import pytest

from gpuwarden.urls import url_problem, without_credentials


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


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://hooks example.com/x", "host 'hooks example.com' holds ' '"),
        ("http://hooks%20example.com/x", "host 'hooks%20example.com' holds '%'"),
        ("https://a|b/", "host 'a|b' holds '|'"),
    ],
    ids=["space", "percent-encoded-space", "pipe"],
)
def test_a_host_with_a_character_no_host_name_has_is_refused_naming_it(url: str, said: str) -> None:
    """httpx took it (percent-encoding a space) and only the resolver failed, at every request."""
    assert (url_problem(url) or "").startswith(said)


@pytest.mark.parametrize(
    "url",
    ["http://a_b:9090", "http://bücher.de/", "http://[::1]:8080/", "https://hooks.example.com/x y?q=a b"],
    ids=["underscore", "idn", "ipv6", "space-in-path-and-query"],
)
def test_a_host_name_of_letters_digits_and_dots_or_an_address_is_taken(url: str) -> None:
    assert url_problem(url) is None
