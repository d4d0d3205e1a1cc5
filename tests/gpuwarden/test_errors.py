"""The error hierarchy: what a ``ConfigError`` keeps when problems are combined or moved."""

from __future__ import annotations

from gpuwarden.config_problems import outside
from gpuwarden.errors import ConfigError


def test_the_first_of_several_problems_keeps_the_settings_its_check_read() -> None:
    # A check of a query's step reads anomaly.infer_every_seconds: while that setting is wrong (its default
    # stood in), the step's problem is not the file's. first_of dropped `reads`, so the combined error was
    # reported even when the setting it read was the doubtful one.
    step = ConfigError(
        "step below the tick", field="anomaly.queries[0].step_seconds", reads=("anomaly.infer_every_seconds",)
    )
    other = ConfigError("unknown detector", field="anomaly.detectors")
    combined = ConfigError.first_of([step, other])
    assert combined.reads == ("anomaly.infer_every_seconds",)
    assert outside([combined], {("anomaly", "infer_every_seconds")}) == []
    assert (combined.more, combined.message) == ((other,), "step below the tick (and 1 more problem)")
