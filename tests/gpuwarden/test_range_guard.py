from pathlib import Path

import pytest

from gpuwarden.config import load_config
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from gpuwarden.errors import ConfigError
from gpuwarden.range_guard import check_range_guards, range_shape


@pytest.mark.parametrize(
    ("expr", "guarded"),
    [
        ("rate(x[5m])", "rate(x[5m]) and x"),
        ('rate(x{a="b",c=~"5.."}[1h30m])', 'rate(x{a="b",c=~"5.."}[1h30m]) and x{a="b",c=~"5.."}'),
        ('irate({__name__="x",a!="",}[20s])', 'irate({__name__="x",a!="",}[20s]) and {__name__="x",a!="",}'),
        ("max by (pod) (increase(x[5m]))", "max by (pod) (increase(x[5m]) and x)"),
        ("AVG(deriv(x[5m])) WITHOUT (cpu)", "AVG(deriv(x[5m]) and x) WITHOUT (cpu)"),
        ("min(count_over_time(x['1m'[5m]))", None),
        ("sum by (pod) (rate(x[5m]))", "sum by (pod) (rate(x[5m]) and x)"),  # only with guard: true
        ("rate(x[5m]) and x", "rate(x[5m]) and x"),
        ("rate(x[5m] offset 1m)", None),
        ("rate(x[5m:30s])", None),
        ("rate(x[5m]) * 8", None),
        ("rate(x[5m]) / rate(y[5m])", None),
        ("rate(x[5m]) # per pod", "rate(x[5m]) and x # per pod"),
        ("max(rate(x[5m])  # per pod\n)", "max(rate(x[5m]) and x  # per pod\n)"),
        ('rate(x{a="#b", # c\nd="e"}[5m])', 'rate(x{a="#b", # c\nd="e"}[5m]) and x{a="#b", \nd="e"}'),
        ("rate(x[5m]) and x # guarded", "rate(x[5m]) and x # guarded"),
        ("rate(x[5m]) # and x", "rate(x[5m]) and x # and x"),
        ("rate(x[5m] # ) and\n offset 1m)", None),
        ("histogram_quantile(0.9, rate(x[5m]))", None),
        ("topk(3, rate(x[5m]))", None),
        ("max by (a) (rate(x[5m])) by (b)", None),
        ("rate(x[5m]) and on (pod) x", None),
        ("Rate(x[5m])", None),
        ("x", None),
    ],
    ids=[
        "bare", "matchers", "name-matcher", "max-by", "avg-without-after", "broken-string", "sum-by",
        "written", "offset", "subquery", "arithmetic", "ratio", "comment", "comment-in-aggregation",
        "comment-in-matchers", "comment-after-guard", "commented-guard", "comment-hiding-offset",
        "quantile", "topk", "two-groupings", "on", "function-case", "selector",
    ],
)  # fmt: skip
def test_only_a_shape_read_to_the_end_is_guarded_and_the_guard_goes_next_to_the_call(expr, guarded):
    shape = range_shape(expr)
    assert (shape.guarded(expr) if shape else None) == guarded


@pytest.mark.parametrize(
    ("expr", "self_guarded"),
    [
        ("rate(x[5m])", True),
        ("min by (pod) (rate(x[5m]))", True),
        ("max(rate(x[5m]))", True),
        ("sum(rate(x[5m]))", False),
        ("count by (job) (rate(x[5m]))", False),
    ],
)
def test_sum_and_count_are_guarded_only_when_asked(expr, self_guarded):
    shape = range_shape(expr)
    assert shape is not None and shape.self_guarded is self_guarded


def query_file(tmp_path: Path, expr: str, guard: str) -> Path:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(
        f"anomaly:\n  queries:\n    - name: requests\n      expr: '{expr}'\n      guard: {guard}\n"
    )
    return path


def test_guard_true_on_an_expression_it_cannot_guard_names_file_line_field_and_fix(tmp_path: Path) -> None:
    path = query_file(tmp_path, "rate(x[5m]) * 8", "true")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:5: anomaly.queries[0].guard: true, but the expr of query 'requests'")
    assert "write the guard into expr yourself" in message and "set guard: false" in message


@pytest.mark.parametrize("guard", ["true", "false"])
@pytest.mark.parametrize("expr", ["sum by (pod) (rate(x[5m]))", "sum by (pod) (rate(x[5m]))  # per pod"])
def test_guard_true_or_false_on_a_shape_it_reads_is_accepted(tmp_path: Path, guard: str, expr: str) -> None:
    cfg = load_config(query_file(tmp_path, expr, guard))
    assert cfg.anomaly.queries[0].guard is (guard == "true")


def warned(expr: str, **settings: object) -> list[str]:
    query = {"name": "requests", "expr": expr, "adaptive": True, **settings}
    cfg = AnomalyConfig(queries=[AnomalyQueryConfig.model_validate(query)])
    return [f"{w.field}: {w.message}" for w in check_range_guards(cfg)]


@pytest.mark.parametrize(
    ("expr", "settings", "warns"),
    [
        ("rate(x[5m])", {}, False),  # guarded unasked
        ("avg by (job) (rate(x[5m]))", {}, False),
        ("sum(rate(x[5m]))", {}, False),  # one total: a member's ramp is its share of it
        ("sum by (pod) (rate(x[5m]))", {}, True),
        ("sum by (pod) (rate(x[5m]))", {"guard": True}, False),
        ("sum by (service) (rate(x[5m]))", {"guard": False}, False),
        # One total guarded: a target going takes its share out at once, while the traffic it moved to the
        # others enters their rates only over the range: a rollout reads as a drop for up to the range.
        ("sum(rate(x[5m]))", {"guard": True}, True),
        ("sum(rate(x[5m]) and x)", {"guard": False}, False),  # written by hand: it says it knows
        ("sum(rate(x[5m]))", {"guard": True, "direction": "up"}, False),
        ("count(rate(x[5m]))", {"guard": True}, False),  # a count does not ramp: guarded, it is current
        # A count does not ramp: the series of a pod that went counts 1 until it ends, then it is forgotten.
        ("count by (pod) (rate(x[5m]))", {}, False),
        ("rate(x[5m]) * 8", {}, True),
        ("rate(x[5m]) * 8", {"direction": "up"}, False),
        ("rate(x[5m]) * 8", {"adaptive": False}, False),
        ("x * 8", {}, False),
        ("x * 8  # not rate(x[5m])", {}, False),  # a range function in a comment is none
        ("sum by (pod) (rate(x[5m]) and x)  # guarded", {}, False),  # written by hand, then a comment
    ],
    ids=["bare", "avg", "sum", "sum-by", "sum-by-guarded", "sum-by-declared", "sum-guarded",
         "sum-hand-guarded", "sum-guarded-up", "count-guarded", "count-by", "arithmetic", "up",
         "not-adaptive", "no-range", "range-in-comment", "hand-guarded-commented"],
)  # fmt: skip
def test_a_down_direction_range_query_left_unguarded_is_warned_of_by_name(expr, settings, warns):
    said = warned(expr, **settings)
    assert bool(said) is warns, said
    if warns:
        field = "guard" if settings.get("guard") else "expr"
        assert said[0].startswith(f"anomaly.queries[0].{field}: query 'requests': when its target goes away")
        assert "guard: false" in said[0]


def test_no_warning_when_the_adaptive_detector_does_not_run() -> None:
    query = AnomalyQueryConfig(name="requests", expr="rate(x[5m]) * 8", adaptive=True)
    assert check_range_guards(AnomalyConfig(queries=[query], detectors=["level_shift"])) == []
