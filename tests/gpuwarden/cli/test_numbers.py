"""Number options take what Prometheus' and kubectl's flags take (Go's strconv), not Python's extras."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer

from gpuwarden.cli.numbers import number, whole_number
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()

app = typer.Typer()


@app.command()
def _show(
    count: Annotated[int, whole_number("--count", -5, 10_000)] = 1,
    seconds: Annotated[float, number("--seconds", -5, 10_000)] = 1.0,
) -> None:
    typer.echo(f"{count!r} {seconds!r}")


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--count", "9400"], "9400 1.0"),
        (["--count", "+5"], "5 1.0"),
        (["--count", "-5"], "-5 1.0"),
        (["--count", "0042"], "42 1.0"),
        (["--seconds", "2.5"], "1 2.5"),
        (["--seconds", ".5"], "1 0.5"),
        (["--seconds", "5."], "1 5.0"),
        (["--seconds", "1e3"], "1 1000.0"),
        (["--seconds", "2.5E-1"], "1 0.25"),
        (["--seconds", "-1.5"], "1 -1.5"),
        ([], "1 1.0"),
    ],
    ids=lambda value: "_".join(value) if isinstance(value, list) else None,
)
def test_decimal_numbers_a_sign_and_an_exponent_for_a_fraction_are_taken(args: list[str], shown: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and result.output == f"{shown}\n", result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--count", "9_400"], "--count '9_400': use a whole number from -5 to 10000"),
        (["--count", " 5"], "--count ' 5': use a whole number from -5 to 10000"),
        (["--count", "5\n"], "--count '5\\n': use a whole number from -5 to 10000"),
        (["--count", "0x10"], "--count '0x10': use a whole number from -5 to 10000"),
        (["--count", "٣"], "--count '٣': use a whole number from -5 to 10000"),  # int() takes Arabic-Indic 3
        (["--count", "1e3"], "--count '1e3': use a whole number from -5 to 10000"),
        (["--seconds", "1_000.5"], "--seconds '1_000.5': use a number from -5 to 10000"),
        (["--seconds", "5 "], "--seconds '5 ': use a number from -5 to 10000"),
        (["--seconds", "inf"], "--seconds 'inf': use a number from -5 to 10000"),
        (["--seconds", "-Infinity"], "--seconds '-Infinity': use a number from -5 to 10000"),
        (["--seconds", "nan"], "--seconds 'nan': use a number from -5 to 10000"),
        (["--seconds", "0x1p3"], "--seconds '0x1p3': use a number from -5 to 10000"),
        (["--seconds", "-6"], "--seconds -6: use a number from -5 to 10000"),
    ],
    ids=lambda value: "_".join(value) if isinstance(value, list) else None,
)
def test_what_python_alone_reads_as_a_number_is_refused_naming_the_value(args: list[str], said: str) -> None:
    """Python's int()/float() take ``9_400``, blanks around the digits, other scripts' digits and ``inf``: a
    typo an operator meant otherwise (``--port 9_400``) is refused, as Prometheus and kubectl refuse it."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stderr == f"error: {said}\n", result.stderr


@pytest.mark.parametrize(
    ("command", "value"),
    [
        (["sim", "show"], "1_0"),
        (["sim", "show"], "x"),
        (["demo"], " 7"),
        (["inference-server"], "0x10"),
    ],
    ids=["sim-show-underscore", "sim-show-word", "demo-blank", "inference-server-hex"],
)
def test_a_seed_is_read_as_every_other_whole_number(command: list[str], value: str) -> None:
    """``--seed`` was click's int: ``1_0`` ran seed 10 and a word got click's "Input should be a valid
    integer" instead of the option, its value and what to give."""
    from gpuwarden.cli import app as gpuwarden_app  # noqa: PLC0415

    result = runner.invoke(gpuwarden_app, [*command, "--seed", value])
    assert result.exit_code == 2 and result.stderr == f"error: --seed {value!r}: use a whole number\n", (
        result.stderr
    )


def test_any_whole_seed_is_taken_as_before() -> None:
    from gpuwarden.cli import app as gpuwarden_app  # noqa: PLC0415

    result = runner.invoke(gpuwarden_app, ["sim", "show", "--seed", "-5"])
    assert result.exit_code == 0 and "(seed -5)" in result.output, result.output


def test_a_number_past_a_floats_range_is_said_so_where_the_option_has_no_upper_bound() -> None:
    """``--rate 1e999`` (read as inf) was told "use a number of at least 0", which it seemed to be."""
    from gpuwarden.cli import app as gpuwarden_app  # noqa: PLC0415

    result = runner.invoke(gpuwarden_app, ["loadgen", "--rate", "1e999"])
    assert result.exit_code == 2, result.output
    assert result.stderr == "error: --rate 1e999: more than a number can hold; use a number of at least 0\n"


def test_a_whole_number_of_hundreds_of_digits_is_said_too_large_not_a_traceback() -> None:
    """``math.isfinite`` converts an int to a float: one past a float's range raised OverflowError out of the
    option's parser (``--count 999...9``, ``anomaly xid 999...9``)."""
    result = runner.invoke(app, ["--count", "9" * 400])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: --count {'9' * 400}: more than a number can hold; use a whole number from -5 to 10000\n"
    )


@pytest.mark.parametrize(
    ("value", "taken"),
    [(str(2**63 - 1), True), (str(2**63), False), (str(-(2**63)), True), (str(-(2**63) - 1), False)],
    ids=["largest", "one-past-the-largest", "least", "one-below-the-least"],
)
def test_a_whole_number_option_holds_64_bits_as_gos_strconv(value: str, taken: bool) -> None:
    """``demo --warmup-minutes 999...9`` (no upper bound) passed the option and ended in an OverflowError
    traceback where the minutes met ``float()``; Go's ParseInt refuses past 64 bits ("value out of range")."""
    from gpuwarden.cli import app as gpuwarden_app  # noqa: PLC0415

    result = runner.invoke(gpuwarden_app, ["sim", "show", "--seed", value])
    if taken:
        assert result.exit_code == 0 and f"(seed {value})" in result.output, result.output
    else:
        assert result.stderr == f"error: --seed {value}: more than a number can hold; use a whole number\n"
