"""`gpuwarden anomaly evaluate nab`'s options (its scoring and files: tests/anomaly/test_cli_evaluate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuwarden.cli import app
from tests.anomaly.cli_runs import evaluate_args
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()


@pytest.mark.parametrize(
    "given", [["--json", "-o", "text"], ["-o", "TABLE", "--json"]], ids=["text", "table"]
)
def test_evaluate_nab_refuses_json_with_another_output_format_naming_both(
    tmp_path: Path, given: list[str]
) -> None:
    """``--json -o text`` printed JSON: ``--json`` won over the format given with ``-o``, silently."""
    args = evaluate_args(tmp_path, {"c/x.csv": []})
    result = runner.invoke(app, [*args, *given])
    said = " ".join(result.stderr.split())
    value = given[given.index("-o") + 1].casefold()  # as the command takes it (-o TABLE is table)
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert said == f"error: --output '{value}': --json asks for json; give --json or -o {value}, not both"


def test_evaluate_nab_takes_json_given_both_ways(tmp_path: Path) -> None:
    args = evaluate_args(tmp_path, {"c/x.csv": []})
    result = runner.invoke(app, [*args, "--json", "-o", "json", "-q"])
    assert result.exit_code == 0 and json.loads(result.stdout)["files"]["c/x.csv"], result.output
