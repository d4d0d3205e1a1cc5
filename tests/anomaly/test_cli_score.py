"""``anomaly score``: the scores and alerts it writes, the CSV input it reads or refuses, its output, progress
and summary."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from anomaly import univariate
from gpuwarden.cli import anomaly_score, app
from gpuwarden.cli.consoles import CliConsole
from tests.anomaly.cli_runs import runner, write_series


def test_score_writes_scores_and_labels_an_alert_at_the_spike(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["timestamp", "value", "anomaly_score", "label"]
    assert len(frame) == 600
    assert frame.loc[400, "label"] == 1
    assert frame.loc[400, "anomaly_score"] > 1
    assert frame["label"].sum() <= 3


def test_score_counts_one_alert_in_the_singular(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src, spike_at=None)  # its noise alone raised one: "600 rows, 1 alerts" it said
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    alerts = int(pd.read_csv(out)["label"].sum())  # a detector's change may move it: the grammar follows
    assert result.stdout == f"{out}: 600 rows, {alerts} alert{'' if alerts == 1 else 's'}\n"


def test_score_counts_one_row_in_the_singular(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("timestamp,value\n1704067200,5\n")  # said "1 rows"
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}: 1 row, 0 alerts\n"


def test_score_rejects_a_csv_without_a_value_column(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("timestamp,v\n2024-01-01,1\n")
    result = runner.invoke(
        app, ["anomaly", "score", "--input", str(src), "--output", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 1
    assert "value" in result.output


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1\nsoon,2\n", "line 4: 'soon' is not a time"),
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1O\n", "line 3: '1O' is not a number"),
        ("2024-01-01 00:05:00,1\n2024-01-01 00:00:00,2\n", "line 3: '2024-01-01 00:00:00' is before the row"),
        (
            "2024-01-01 00:00:00,1\n2024-01-01 00:05:00,1e400\n",
            "line 3: the value is inf, not a finite number",
        ),
        ("2024-01-01 00:00:00,-inf\n", "line 2: the value is -inf, not a finite number"),
        ("2024-01-01 00:00:00,1,5\n", "line 2: 3 fields under a header of 2 (timestamp,value); remove the"),
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2,5\n", "line 3: 3 fields under a header of 2"),
        ("2024-01-01 00:00:00,1\n2024-01-01 00:05:00\n", "line 3: 1 field under a header of 2"),
        ("2024-01-01 00:00:00,1\n,2\n", "line 3: the timestamp is empty"),
        ("2024-01-01 00:00:00,1\n\n2024-01-01 00:05:00,1O\n", "line 4: '1O' is not a number"),
        (
            "1704067200,1\n1704067200000,2\n",
            "line 3: '1704067200000' is not a time like the rows above (Unix",
        ),
        ("1704067200000000000,1\n", "line 2: '1704067200000000000' is not Unix seconds or milliseconds"),
        (
            "soon,1\n2024-01-01 00:05:00,1\n",
            "in.csv': line 2: 'soon' is not a time; write epoch seconds (1704067200) or a time"
            " (2024-01-01T00:00:00Z)",
        ),
        ("1704067200x,1\n", "line 2: '1704067200x' is not a time; write epoch seconds (1704067200) or a"),
        (
            "2024-01-01T00:00:00Z,1\n2024-01-01T00:05:00,2\n",
            "line 3: '2024-01-01T00:05:00' has no UTC offset where line 2 ('2024-01-01T00:00:00Z') has one;"
            " give every time an offset (such as Z or +00:00), or none for UTC",
        ),
        (
            "2024-01-01 00:00:00,1\n2024-01-01 00:05:00.5+01:00,2\n",
            "line 3: '2024-01-01 00:05:00.5+01:00' has a UTC offset where line 2 ('2024-01-01 00:00:00') has"
            " none; give every time an offset",
        ),
        (
            "2024-01-01T00:00:00,1\n2024-01-01T00:00:00.5,1\nsoon,2\n",
            "line 4: 'soon' is not a time like the rows above (ISO 8601, judged from line 2)",
        ),
        ("1704067200,TRUE\n1704067260,false\n", "line 2: 'TRUE' is not a number (leave it empty for a gap)"),
        ("1704067200,\n1704067260,tRuE\n", "line 3: 'tRuE' is not a number (leave it empty for a gap)"),
        (  # said in pandas' words: "Error tokenizing data. C error: EOF inside string starting at row 2"
            '1704067200,1\n1704067260,"2\n1704067320,3\n',
            'line 3: a quote (") opens a field that is never closed, so the rest of the file reads as one'
            " value; close the quote, or remove it",
        ),
    ],
    ids=[
        "bad-time",
        "typo-value",
        "backwards",
        "overflow",
        "infinity",
        "extra-field-first-row",
        "extra-field",
        "missing-field",
        "empty-time",
        "line-after-a-blank-line",
        "seconds-then-milliseconds",
        "nanoseconds",
        "bad-time-first",
        "typo-in-first-unix-time",
        "offset-then-none",
        "none-then-offset",
        "not-iso-after-iso",
        "booleans",  # pandas read them as booleans: scored as 1 and 0
        "a-boolean-after-a-gap",
        "a-quote-never-closed",
    ],
)
def test_score_refuses_a_bad_row_naming_its_line_and_writes_nothing(tmp_path, rows, message):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n" + rows)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.parametrize(
    "epoch",
    [
        lambda t: str(int(t)),
        lambda t: f"{t:.1f}",
        lambda t: str(int(t) * 1000),
    ],
    ids=["seconds", "decimal-seconds", "milliseconds"],
)
def test_score_reads_unix_timestamps_as_the_same_times_and_gives_them_back_as_written(tmp_path, epoch):
    iso, unix = tmp_path / "iso.csv", tmp_path / "unix.csv"
    write_series(iso)
    frame = pd.read_csv(iso)
    seconds = (pd.to_datetime(frame["timestamp"], utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    written = [epoch(float(t)) for t in seconds]
    frame.assign(timestamp=written).to_csv(unix, index=False)
    for src in (iso, unix):
        result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(src) + ".out"])
        assert result.exit_code == 0, result.output
    scored = pd.read_csv(str(unix) + ".out", dtype={"timestamp": str})
    from_iso = pd.read_csv(str(iso) + ".out", dtype={"timestamp": str})
    assert list(scored["timestamp"]) == written  # a join back to the input keeps working
    assert list(from_iso["timestamp"]) == list(frame["timestamp"])
    assert scored["label"].sum() > 0
    pd.testing.assert_frame_equal(scored.drop(columns="timestamp"), from_iso.drop(columns="timestamp"))


@pytest.mark.parametrize(
    ("stamps", "seconds"),
    [
        (["2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00.250000+00:00"], [0.0, 0.25]),
        (["2024-01-01T00:00:00.5Z", "2024-01-01T00:00:01Z"], [0.5, 1.0]),
        (["2024-01-01 00:00:00", "2024-01-01 00:00:00.5", "2024-01-01T00:00:01"], [0.0, 0.5, 1.0]),
    ],
    ids=["isoformat", "fraction-first", "space-then-fraction-then-t"],
)
def test_score_reads_iso_times_whose_rows_differ_in_fractional_seconds(tmp_path, stamps, seconds):
    # Python's isoformat() writes the fraction only where it is not 0: pandas judged one form from the first
    # row and refused the others as "not a time like the rows above".
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n" + "".join(f"{t},1\n" for t in stamps))
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out, dtype={"timestamp": str})["timestamp"].tolist() == stamps
    read = univariate.read_series_csv(src).timestamps - 1704067200.0
    assert read.tolist() == seconds


@pytest.mark.parametrize(
    ("stamps", "seconds"),
    [
        (["0001-01-01T00:00:00Z", "0001-01-01T00:01:00Z"], [-62135596800.0, -62135596740.0]),
        (["2026-12-07T00:00:00Z", "9999-12-31T23:00:00-05:00"], [1796601600.0, 253402315200.0]),
    ],
    ids=["year-1", "year-9999-past-10000-in-utc"],
)
def test_score_reads_times_outside_pandas_nanosecond_years_instead_of_raising_a_traceback(
    tmp_path, stamps, seconds
):
    # pandas reads them to the microsecond; the epoch taken from them was in nanoseconds, which end in 2262:
    # OutOfBoundsDatetime, a traceback, for a typo'd year or Go's zero time in an export.
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n" + "".join(f"{t},1\n" for t in stamps))
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out, dtype={"timestamp": str})["timestamp"].tolist() == stamps
    assert univariate.read_series_csv(src).timestamps.tolist() == seconds


def test_score_reads_a_time_whose_format_pandas_cannot_infer_without_printing_its_warning(tmp_path):
    # pandas' UserWarning ("Could not infer format, ...") was printed on stderr, two lines of it.
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n01/02/2024 1:00 PM,1\n01/02/2024 2:00 PM,2\n")
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert univariate.read_series_csv(src).timestamps.tolist() == [1704200400.0, 1704204000.0]  # month first


def test_score_keeps_empty_nan_and_na_values_as_gaps_scored_zero(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    rows = "".join(f"2024-01-01 00:{m:02d}:00,{v}\n" for m, v in enumerate(["1", "", "NaN", "NA", "2"]))
    src.write_text("timestamp,value\n" + rows)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(out)
    assert len(scored) == 5
    assert scored["value"].isna().tolist() == [False, True, True, True, False]
    assert scored["anomaly_score"][1:4].tolist() == [0.0, 0.0, 0.0]


def test_score_refuses_a_repeated_timestamp_unless_told_to_keep_it(tmp_path):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2\n2024-01-01 00:05:00,3\n")
    args = ["anomaly", "score", "--input", str(src), "--output", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert (
        f"{src}': line 4: '2024-01-01 00:05:00' repeats the time of line 3; remove the repeated row" in said
    )
    assert "--keep-repeated-timestamps" in said
    assert not out.exists()
    result = runner.invoke(app, [*args, "--keep-repeated-timestamps"])  # local times at a clock change
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["value"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("keep", [[], ["--keep-repeated-timestamps"]], ids=["plain", "keep-repeated"])
def test_score_says_how_to_read_a_local_time_file_whose_clocks_went_back(tmp_path, keep):
    # Every 15 minutes in New York's local time across the end of summer time: 01:45, then 01:00 again. It
    # was told only to "sort the file by time", which interleaves the two hours, and the flag the README
    # offers for local times at a clock change takes repeated rows only, not an hour gone back.
    local = [f"2026-11-01 {h:02d}:{m:02d}:00" for h in (0, 1, 1, 2) for m in (0, 15, 30, 45)]
    offsets = ["-04:00"] * 8 + ["-05:00"] * 8
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text("timestamp,value\n" + "".join(f"{t},1\n" for t in local))
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out), *keep])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "line 10: '2026-11-01 01:00:00' is before the row above it; sort the file by time, or," in said
    assert "give every time its UTC offset (2026-11-01T01:00:00-05:00) or write them in UTC" in said
    src.write_text("timestamp,value\n" + "".join(f"{t}{o},1\n" for t, o in zip(local, offsets, strict=True)))
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "in.csv': is empty; write the header timestamp,value"),
        ("\n\n", "in.csv': line 1 is blank; the first line must be the header"),
        (
            "1704067200,1\n1704067260,2\n",
            "in.csv': line 1: '1704067200,1' lacks the column(s) timestamp, value;",
        ),
        ("timestamp,val\n1704067200,1\n", "in.csv': line 1: 'timestamp,val' lacks the column(s) value;"),
        ("timestamp,value\n", "in.csv': has the header but no rows; nothing to score"),
        ("timestamp,value\n\n\n", "in.csv': has the header but no rows; nothing to score"),
        (  # the first was scored, the other left out without a word
            "timestamp,value,value\n1704067200,1,9\n",
            "in.csv': line 1: 'timestamp,value,value' has the column value more than once; keep one",
        ),
    ],
    ids=[
        "empty",
        "blank-lines",
        "no-header",
        "misspelt-header",
        "header-only",
        "header-and-blank-lines",
        "a-column-twice",
    ],
)
def test_score_refuses_a_file_without_header_or_rows_and_writes_nothing(tmp_path, text, message):
    src, out = tmp_path / "in.csv", tmp_path / "o.csv"
    src.write_text(text)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())
    assert not out.exists()


@pytest.mark.parametrize("where", ["missing/o.csv", "."], ids=["no-directory", "a-directory"])
def test_score_names_an_output_it_cannot_write(tmp_path, where):
    src = tmp_path / "in.csv"
    write_series(src)
    out = tmp_path / where
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"error: --output '{out}': cannot write " in said, said


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink", "hardlink"])
def test_score_refuses_an_output_that_is_its_input_and_leaves_the_input_alone(tmp_path, spelling):
    src = tmp_path / "in.csv"
    write_series(src)
    before = src.read_bytes()
    out = {"same": src, "dotted": tmp_path / "." / "in.csv"}.get(spelling, tmp_path / "other.csv")
    if spelling == "symlink":
        out.symlink_to(src)
    elif spelling == "hardlink":
        out.hardlink_to(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.stderr.split())
    assert said == f"error: --output '{out}': cannot write the --input file; write the scores to another file"
    assert src.read_bytes() == before


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_score_and_evaluate_refuse_a_fifo_or_a_device_instead_of_hanging_or_filling_memory(tmp_path, kind):
    # /dev/zero had evaluate's windows reader killed for memory, and a FIFO blocked it until killed.
    if kind == "fifo":
        special = tmp_path / "pipe"
        os.mkfifo(special)
    else:
        special = Path("/dev/zero")
    score = runner.invoke(
        app, ["anomaly", "score", "--input", str(special), "--output", str(tmp_path / "o.csv")]
    )
    assert score.exit_code == 1 and "not a regular file" in score.output
    data = tmp_path / "data"
    data.mkdir()
    evaluate = runner.invoke(
        app, ["anomaly", "evaluate", "nab", "--data", str(data), "--windows", str(special)]
    )
    assert evaluate.exit_code == 1 and "not a regular file" in evaluate.output
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(
    ("terminal", "flags", "shown"),
    [
        pytest.param(True, [], True, id="terminal"),
        pytest.param(True, ["--quiet"], False, id="terminal-quiet"),
        pytest.param(False, [], False, id="pipe"),
    ],
)
def test_score_shows_its_progress_on_a_terminal_only(tmp_path, monkeypatch, terminal, flags, shown):
    # A million rows take minutes: at a terminal a bar says how far it got; a pipe or a log gets no noise.
    monkeypatch.setattr(univariate, "PROGRESS_EVERY", 100, raising=False)
    stderr = io.StringIO()
    monkeypatch.setattr(
        anomaly_score, "err_console", CliConsole(file=stderr, force_terminal=terminal, width=100)
    )
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out), *flags])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{out}: 600 rows, ")
    assert ("scoring" in stderr.getvalue() and "600/600" in stderr.getvalue()) is shown
    assert stderr.getvalue() == "" or shown


@pytest.mark.parametrize("spelling", ["-", "/dev/stdout"])
def test_score_to_stdout_keeps_its_summary_off_the_csv_stream(tmp_path, spelling):
    # `... --output /dev/stdout | next-tool` read "N rows, M alerts" as a last CSV row: a corrupt file.
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    assert runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)]).exit_code == 0
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", spelling])
    assert result.exit_code == 0, result.output
    assert result.stdout == out.read_text()
    assert result.stderr.startswith("stdout: 600 rows, " if spelling == "-" else f"{spelling}: 600 rows, ")


def test_score_to_a_closed_stdout_says_so_in_one_line_and_exits_1(tmp_path):
    # `--output - >&-` ended in a traceback, "AttributeError: 'NoneType' object has no attribute 'flush'".
    src = tmp_path / "in.csv"
    write_series(src)
    cli = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
    argv = [*cli, "anomaly", "score", "--input", str(src), "--output", "-"]
    done = subprocess.run(
        ["sh", "-c", '"$@" >&-', "sh", *argv],
        cwd=Path(__file__).parents[2],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr == "error: --output '-': cannot write it: standard output is closed\n"


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            lambda src: None,
            "error: --input '{src}': cannot read it: No such file or directory; give a CSV file with the"
            " header timestamp,value",
        ),
        (
            lambda src: src.mkdir(),
            "error: --input '{src}': cannot read it: Is a directory; give a CSV file with the header"
            " timestamp,value",
        ),
        (
            lambda src: src.write_text(""),
            "error: --input '{src}': is empty; write the header timestamp,value",
        ),
        (
            lambda src: src.write_text("timestamp,value\nsoon,1\n"),
            "error: --input '{src}': line 2: 'soon' is not a time;",
        ),
        (
            lambda src: src.write_text("timestamp,value\n2024-01-01 00:00:00,x\n"),
            "error: --input '{src}': line 2: 'x' is not a number",
        ),
        (  # said Python's "'utf-8' codec can't decode byte 0xff in position 0: ...", and no fix
            lambda src: src.write_bytes(b"timestamp,value\n\xff,1\n"),
            "error: --input '{src}': cannot read it: not UTF-8 text (byte 0xff at offset 16); save it as"
            " UTF-8",
        ),
    ],
    ids=["missing", "a-directory", "empty", "bad-time", "bad-value", "not-utf-8"],
)
def test_score_names_a_bad_input_as_every_bad_option_is_named(tmp_path, make, said):
    """``anomaly score`` said ``error: input: cannot read in.csv: ...`` and ``error: timestamp: in.csv line 2:
    ...``: a field name no option has, where every other refusal says ``OPTION VALUE: reason``."""
    src = tmp_path / "in.csv"
    make(src)
    result = runner.invoke(
        app, ["anomaly", "score", "--input", str(src), "--output", str(tmp_path / "o.csv")]
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and output.startswith(said.format(src=src)), output


def test_score_refuses_input_dash_saying_stdin_is_not_read(tmp_path, monkeypatch):
    """``--input -`` was read as a file named ``-`` (``cannot read it: No such file or directory``) while
    ``--output -`` is stdout; it is refused, saying so, and writes nothing."""
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_series(src)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["anomaly", "score", "--input", "-", "--output", str(out)], input=src.read_text()
    )
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and said == (
        "error: --input '-': standard input is not read; give a CSV file with the header timestamp,value "
        "(save it to a file first)"
    ), said
    assert not out.exists()


@pytest.mark.parametrize("given", ["json", "table", "YAML"])
def test_score_refuses_a_format_as_its_output_file_and_writes_nothing(tmp_path, monkeypatch, given):
    """``--output json``, as every other command takes it, wrote the CSV to a file named ``json`` in the
    working directory, and said ``json: 600 rows``: an operator read it as JSON printed somewhere."""
    src = tmp_path / "in.csv"
    write_series(src)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", given])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert said == (
        f"error: --output '{given}': anomaly score's --output is the file to write, always CSV"
        " (- for stdout), not a format; to write a file of that name, give its whole path"
        f" ({tmp_path / given})"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    written = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(tmp_path / given)])
    assert written.exit_code == 0 and (tmp_path / given).read_text().startswith("timestamp,"), written.output
