"""`gpuwarden anomaly xid`: a code is read as every other whole number of the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuwarden.cli import app
from gpuwarden.xid import xid_catalog_file
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("abc", "error: CODE 'abc': use a whole number of at least 1"),
        ("1_3", "error: CODE '1_3': use a whole number of at least 1"),
        (" 13", "error: CODE ' 13': use a whole number of at least 1"),
        ("0", "error: CODE 0: use a whole number of at least 1"),
    ],
    ids=["word", "underscore", "blank", "zero"],
)
def test_an_xid_code_not_written_as_a_whole_number_is_refused_as_an_option_is(code: str, said: str) -> None:
    """'abc' got pydantic's "Input should be a valid integer, unable to parse string as an integer"; '1_3'
    and ' 13' were read as 13, which every number option refuses (``gpuwarden.numerals``)."""
    result = runner.invoke(app, ["anomaly", "xid", code])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"{said}\n"


@pytest.mark.parametrize("output", ["text", "json"])
def test_an_xid_the_catalog_lacks_is_not_found_as_an_unknown_incident_is_naming_the_catalogs_file(
    output: str,
) -> None:
    """Exit 1 and one line on stderr, as ``incidents show`` of an id serve lacks; the line said what the
    catalog held but not where it is, and was folded at the terminal's width."""
    result = runner.invoke(app, ["anomaly", "xid", "99999", "-o", output])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "error: XID 99999 is not in the catalog (NVIDIA's XID catalog: 109 codes from 8 to 172, listed in"
        f" {xid_catalog_file()}); check the code: the number after the PCI address in the kernel's"
        " 'NVRM: Xid' line\n"
    )
    assert Path(xid_catalog_file()).read_text(encoding="utf-8").startswith("xid,mnemonic,")


def test_an_xid_code_of_hundreds_of_digits_is_refused_as_an_option_is_not_a_traceback() -> None:
    """Once ``CODE`` was read as a whole number option, the option's bounds check raised OverflowError."""
    result = runner.invoke(app, ["anomaly", "xid", "9" * 400])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: CODE {'9' * 400}: more than a number can hold; use a whole number of at least 1\n"
    )
