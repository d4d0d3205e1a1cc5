from pathlib import Path

import pytest

from gpuwarden.config import load_config
from gpuwarden.errors import ConfigError

QUERY = "anomaly:\n  queries:\n    - name: util\n      expr: DCGM_FI_DEV_GPU_UTIL\n      data_range: {}\n"


def write(tmp_path: Path, data_range: str) -> Path:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(QUERY.format(data_range))
    return path


def refusal(tmp_path: Path, data_range: str) -> str:
    """The error that loading a query with ``data_range`` raises."""
    path = write(tmp_path, data_range)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("[0, inf]", (0.0, float("inf"))),
        ("[0, .inf]", (0.0, float("inf"))),
        ("['-inf', '+Inf']", (float("-inf"), float("inf"))),
        ("[0, 100]", (0.0, 100.0)),
        ("[-1.5, 2e3]", (-1.5, 2000.0)),
        ("['-INF', '1E3']", (float("-inf"), 1000.0)),
        ("['.5', '+7']", (0.5, 7.0)),
    ],
    ids=["inf", "yaml-inf", "quoted-infinities", "percentage", "decimals", "any-case", "option-syntax"],
)
def test_a_data_range_is_two_numbers_or_infinities(tmp_path: Path, written: str, expected: tuple) -> None:
    cfg = load_config(write(tmp_path, written))
    assert cfg.anomaly.queries[0].data_range == expected


HUGE = "9" * 400


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("-1e999", "1e999"),
        ("'-1e999'", "'1e999'"),
        ("-1.0e+999", "1.0e+999"),
        ("'-1.0e+999'", "'+1.0E+999'"),
        (f"-{HUGE}", HUGE),
        (f"'-{HUGE}'", f"'{HUGE}'"),
    ],
    ids=["text", "quoted-text", "yaml-float", "quoted-yaml-float", "huge-integer", "quoted-huge-integer"],
)
def test_an_end_past_a_floats_range_is_no_bound_however_it_is_written(
    tmp_path: Path, low: str, high: str
) -> None:
    # YAML's unquoted 1.0e+999 (a float, read as inf) was no bound while the same number as text, '1e999'
    # or an unquoted 1e999 (YAML leaves it text), was refused as "more than a number can hold", and so was
    # an integer of 400 digits: no finite value lies beyond any of them, as none lies beyond inf.
    infinities = (float("-inf"), float("inf"))
    assert load_config(write(tmp_path, f"[{low}, {high}]")).anomaly.queries[0].data_range == infinities


def test_a_query_without_a_data_range_is_unbounded() -> None:
    cfg = load_config(None, environ={})
    assert all(q.data_range is None for q in cfg.anomaly.queries)


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("[100, 0]", "low 100 is not below high 0"),
        ("[5, 5]", "low 5 is not below high 5"),
        ("[inf, inf]", "low 'inf' is not below high 'inf'"),
        ("[0, 5, 6]", "[0, 5, 6] is not a pair"),
        ("[0]", "[0] is not a pair"),
        ("5", "5 is not a pair"),
        ("'0, 100'", "'0, 100' is not a pair"),
        ("[0, x]", "'x' is not a number"),
        ("[0, .nan]", "nan is not a number"),
        ("[true, 3]", "true is not a number"),  # as YAML writes it (it said True, None, datetime.date(...))
        ("[~, 3]", "null is not a number"),
        ("[2024-01-01, 3]", "2024-01-01 is not a number"),
        ("['0x10', 100]", "'0x10' is not a number"),
        ("['\u0661', 5]", "'\u0661' is not a number"),
        ("[0, infinity]", "'infinity' is not a number"),
        ("[0, 'nan']", "'nan' is not a number"),
        ("[1e999, inf]", "low '1e999' is not below high 'inf'"),
    ],
    ids=[
        *("reversed", "empty", "both-infinite", "three", "one", "scalar", "text", "word", "nan", "bool"),
        *("null", "date", "hex", "arabic-indic-digit", "infinity-spelt-out", "quoted-nan"),
        "past-a-float-both-infinite",
    ],
)
def test_a_bad_data_range_names_file_line_field_and_fix(tmp_path: Path, written: str, problem: str) -> None:
    message = refusal(tmp_path, written)
    assert message.startswith(
        f"{tmp_path}/gpuwarden.yaml:5: anomaly.queries[0].data_range: {problem}; write [low, high]"
    )
    assert "[0, inf] for a metric that cannot be negative" in message


def test_the_score_outside_a_data_range_must_be_anomalous(tmp_path: Path) -> None:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text("anomaly:\n  score_outside_data_range: 0.5\n")
    with pytest.raises(
        ConfigError, match=r":2: anomaly.score_outside_data_range: 0.5 is not more than 1; write more than 1"
    ):
        load_config(path)


@pytest.mark.parametrize("written", ["''", "'  '"], ids=["empty", "blank"])
def test_an_empty_fleet_load_query_is_refused_at_its_line_saying_to_write_null(
    tmp_path: Path, written: str
) -> None:
    """It was taken: the fleet detector waited for a query of no name and compared the load-following metrics
    as they were, without the warning a misspelt name gets."""
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(f"anomaly:\n  detectors: [fleet]\n  fleet_load_query: {written}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}:3: anomaly.fleet_load_query: {written} names no query"), message
    assert "or null to compare the fleet's metrics as they are" in message
    (tmp_path / "null.yaml").write_text("anomaly:\n  fleet_load_query: null\n")
    assert load_config(tmp_path / "null.yaml", environ={}).anomaly.fleet_load_query is None


@pytest.mark.parametrize(
    "setting",
    [
        "fleet_queries",
        "level_shift_queries",
        "multivariate_queries",
        "presence_queries",
        "adaptive_metrics",
        "fleet_load_adjusted",
        "fleet_peer_labels",
        "thermal_peer_labels",
    ],
)
@pytest.mark.parametrize("written", ['""', "'  '"], ids=["empty", "blank"])
def test_an_empty_name_in_a_list_of_queries_is_refused_at_its_line(
    tmp_path: Path, setting: str, written: str
) -> None:
    # `fleet_queries: [""]` was taken: `config validate` said ok, then warned that the fleet detector
    # reads "queries named , DCGM_FI_DEV_GPU_UTIL"; an empty level-shift substring matched every query.
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(f"anomaly:\n  {setting}: [DCGM_FI_DEV_GPU_TEMP, {written}]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}:2: anomaly.{setting}[1]: an empty name"), message


@pytest.mark.parametrize(
    ("setting", "written", "problem"),
    [
        ("thermal_lag_seconds", "0", "0 is not more than 0; write more than 0"),
        ("thermal_alpha", "1.5", "1.5 is more than 0.1, the most allowed; write 0.1 or less"),
        (  # its line followed every sample: normal load swings scored 13
            "thermal_alpha",
            "0.2",
            "0.2 is more than 0.1, the most allowed; write 0.1 or less",
        ),
        ("thermal_min_deviation", "0", "0 is not more than 0; write more than 0"),
        ("thermal_ridge_watts", "-1", "-1 is not more than 0; write more than 0"),
        (  # its square overflowed: config validate took it, anomaly run died in the detector's constructor
            "thermal_ridge_watts",
            "1e200",
            "1e200 is more than 50, the most allowed; write 50 or less",
        ),
        (  # a cooler failing as a job ended was not flagged in 10 minutes
            "thermal_ridge_watts",
            "100",
            "100 is more than 50, the most allowed; write 50 or less",
        ),
        (
            "thermal_hold_seconds",
            "1e12",
            "1e12 is more than 31622400, the most allowed; write 31622400 or less",
        ),
        (  # a fifth of it is the longest lag allowed: a cooler failing as a job ended went unflagged
            "thermal_settle_seconds",
            "86400",
            "86400 is more than 600, the most allowed; write 600 or less",
        ),
        ("thermal_lag_seconds", "600", "600 is more than 180, the most allowed; write 180 or less"),
        ("thermal_min_peers", "0", "0 is less than 1, the least allowed; write 1 or more"),
        ("thermal_peer_tolerance", "-0.1", "-0.1 is less than 0, the least allowed; write 0 or more"),
        ("thermal_warmup", "x", "'x' is not a whole number; write one"),
    ],
    ids=[
        *("lag", "alpha", "alpha-follows-swings", "floor", "ridge", "ridge-overflow", "ridge-wide"),
        *("hold", "settle-long", "lag-long"),
        *("peers", "tolerance", "warmup"),
    ],
)
def test_a_thermal_setting_out_of_its_range_is_refused_at_its_line(
    tmp_path: Path, setting: str, written: str, problem: str
) -> None:
    # A band floor of 0 divides by a zero band and a lag of 0 by zero: refused at load, not NaN scores later.
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(f"anomaly:\n  detectors: [thermal]\n  {setting}: {written}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}:3: anomaly.{setting}: {problem}"), str(caught.value)


@pytest.mark.parametrize(
    ("written", "shown", "digits"),
    [("[' 5', 100]", "' 5'", "5"), ("[0, '1_000']", "'1_000'", "1000")],
    ids=["blank", "underscore"],
)
def test_a_data_range_bound_is_read_as_the_command_line_reads_a_number(
    tmp_path: Path, written: str, shown: str, digits: str
) -> None:
    """Every other number of the file (``gpuwarden.numerals``) refused these; data_range took them."""
    assert refusal(tmp_path, written) == (
        f"{tmp_path}/gpuwarden.yaml:5: anomaly.queries[0].data_range: {shown} is not a number as the command"
        f" line takes one (digits, no blanks or _); write {digits}"
    )
