from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gpuwarden.app import build_simulated_pipeline
from gpuwarden.cli import app
from gpuwarden.cli.demo_cmd import _run
from gpuwarden.model import FaultKind, IncidentState


def test_the_demo_ends_with_repaired_faults_resolved_and_only_the_unrepaired_one_open(tmp_path: Path) -> None:
    pipeline = build_simulated_pipeline(tmp_path / "demo.db", seed=7)
    try:
        _run(pipeline, 40, quiet=True)
        by_kind = {inc.root_cause.kind: inc for inc in pipeline.incidents()}
        assert set(by_kind) == {FaultKind.GPU_LOST, FaultKind.THERMAL, FaultKind.NODE_DOWN}
        # The GPU comes back from its reset like its stalled job's other ranks: nothing new to report.
        assert by_kind[FaultKind.GPU_LOST].state is IncidentState.RESOLVED
        assert by_kind[FaultKind.NODE_DOWN].state is IncidentState.RESOLVED
        assert by_kind[FaultKind.THERMAL].state is not IncidentState.RESOLVED  # its cooling was not repaired
        assert len(pipeline.slack.channel_messages()) == 3
    finally:
        pipeline.close()


def test_an_unknown_output_format_is_refused_before_the_demo_runs() -> None:
    result = CliRunner().invoke(app, ["demo", "--output", "yaml"])
    assert result.exit_code == 1 and "use one of text, json" in result.output
