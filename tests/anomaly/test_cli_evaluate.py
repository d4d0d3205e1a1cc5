"""``anomaly evaluate nab``: its JSON and progress, the config, windows and data folder it reads or refuses,
and a corpus with files missing."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from gpuwarden.cli import anomaly_score, app
from gpuwarden.cli.consoles import CliConsole
from tests.anomaly.cli_runs import evaluate_args, runner, write_series


def test_evaluate_nab_prints_json_with_splits_profiles_and_f1(tmp_path):
    windows = {"c/x.csv": [["2024-01-02 08:00:00.000000", "2024-01-02 11:00:00.000000"]]}  # rows 384-420
    args = evaluate_args(tmp_path, windows)
    result = runner.invoke(app, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert json.loads(runner.invoke(app, [*args, "--json"]).output) == report  # the older spelling
    overall = report["splits"]["all"]
    assert set(overall["scores"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert overall["windows"] == 1
    assert overall["window_recall"] == 1.0
    assert overall["scores"]["standard"] > 50
    assert report["files"]["c/x.csv"]["detected"] == 1


def test_evaluate_nab_at_an_80_column_terminal_folds_each_file_name_and_cuts_none(tmp_path):
    """At the terminal's default 80 columns rich cut every file to ``artificialNoAnomaly…``: no row said which
    file it scored (README: a table folds a long cell onto more lines)."""
    name = "realKnownCause/machine_temperature_system_failure.csv"
    args = evaluate_args(tmp_path, {name: []})
    (tmp_path / "data" / "realKnownCause").mkdir()
    shutil.move(tmp_path / "data" / "c" / "x.csv", tmp_path / "data" / name)
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout, result.stdout
    rows = result.stdout.split("└")[0].splitlines()  # the files' table, before the sets'
    assert "".join(line.split("│")[1].strip() for line in rows if "│" in line) == name, result.stdout


@pytest.mark.parametrize(
    ("terminal", "flags", "shown"), [(True, [], True), (True, ["-q"], False), (False, [], False)]
)
def test_evaluate_nab_shows_its_progress_on_a_terminal_only(tmp_path, monkeypatch, terminal, flags, shown):
    # The 41 files here took 18 s with nothing on the screen until the tables; a pipe or a log gets no noise.
    args = evaluate_args(tmp_path, {"c/x.csv": [], "c/y.csv": []})
    write_series(tmp_path / "data" / "c" / "y.csv", spike_at=None)  # two files: scored together, in steps
    stderr = io.StringIO()
    monkeypatch.setattr(
        anomaly_score, "err_console", CliConsole(file=stderr, force_terminal=terminal, width=100)
    )
    result = runner.invoke(app, [*args, "-o", "json", *flags])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["splits"]["all"]["files"] == 2
    assert ("scoring 2 files" in stderr.getvalue() and "600/600" in stderr.getvalue()) is shown
    assert stderr.getvalue() == "" or shown


def test_evaluate_nab_of_one_file_says_scoring_1_file_on_a_terminal(tmp_path, monkeypatch):
    args = evaluate_args(tmp_path, {"c/x.csv": []})
    stderr = io.StringIO()
    monkeypatch.setattr(anomaly_score, "err_console", CliConsole(file=stderr, force_terminal=True, width=100))
    result = runner.invoke(app, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    assert "scoring 1 file " in stderr.getvalue(), stderr.getvalue()  # "scoring 1 files"


@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_score_and_evaluate_name_every_problem_of_their_config(tmp_path, command):
    # A --config with two mistakes said the first and "(and 1 more problem)", naming only one to fix.
    config = tmp_path / "gw.yaml"
    config.write_text("anomaly:\n  thresholds:\n    kk: 1\n  infer_every_seconds: 30s\n")
    if command == "score":
        write_series(tmp_path / "in.csv")
        args = [
            "anomaly",
            "score",
            "--input",
            str(tmp_path / "in.csv"),
            "--output",
            str(tmp_path / "out.csv"),
        ]
    else:
        args = evaluate_args(tmp_path, {"c/x.csv": []})
    result = runner.invoke(app, [*args, "--config", str(config)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, result.output
    assert f"{config}:3: anomaly.thresholds.kk: unknown field" in said
    assert f"{config}:4: anomaly.infer_every_seconds: '30s' is not a number" in said
    assert "more problem" not in said


@pytest.mark.parametrize(
    ("windows", "message"),
    [
        ({"c/x.csv": "x"}, "expected a list of [start, end] pairs"),
        ({"c/x.csv": [["soon", "2024-01-02 11:00:00"]]}, "'soon' is not a time"),
        (["c/x.csv"], "expected an object"),
    ],
    ids=["not-pairs", "bad-time", "not-an-object"],
)
def test_evaluate_nab_names_a_bad_windows_file(tmp_path, windows, message):
    args = evaluate_args(tmp_path, windows)
    result = runner.invoke(app, args)
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and message in output and "Traceback" not in output, output


def test_evaluate_nab_reads_a_windows_file_that_starts_with_a_byte_order_mark(tmp_path):
    """Saved by Notepad or PowerShell, combined_windows.json starts with a UTF-8 byte-order mark: it was
    refused, ``is not JSON: Unexpected UTF-8 BOM (decode using utf-8-sig)``, advice for Python code."""
    args = evaluate_args(tmp_path, {"c/x.csv": [["2024-01-02 08:00:00", "2024-01-02 11:00:00"]]})
    plain = runner.invoke(app, [*args, "-o", "json"])
    windows = tmp_path / "w.json"
    windows.write_bytes(b"\xef\xbb\xbf" + windows.read_bytes().replace(b"\n", b"\r\n"))
    marked = runner.invoke(app, [*args, "-o", "json"])
    assert marked.exit_code == 0 and plain.exit_code == 0, marked.output
    assert json.loads(marked.stdout) == json.loads(plain.stdout)


def _data_as_a_file(tmp: Path) -> None:
    shutil.rmtree(tmp / "data")
    (tmp / "data").touch()


@pytest.mark.parametrize(
    ("windows", "change", "said"),
    [
        (
            {},
            lambda tmp: (tmp / "w.json").unlink(),
            "--windows '{w}': cannot read file: No such file or directory; give NAB's window file, its"
            " labels/combined_windows.json",
        ),
        (
            {},
            lambda tmp: ((tmp / "w.json").unlink(), (tmp / "w.json").mkdir()),
            "--windows '{w}': cannot read file: Is a directory; give NAB's window file, its"
            " labels/combined_windows.json",
        ),
        ({}, lambda tmp: (tmp / "w.json").write_text("{"), "--windows '{w}': is not JSON: "),
        (  # said "--data 'D': holds none of the 0 files w.json names": the wrong option blamed
            {},
            None,
            "--windows '{w}': names no files; give NAB's window file, its labels/combined_windows.json",
        ),
        (["c/x.csv"], None, "--windows '{w}': expected an object of file name -> windows"),
        (
            {"c/x.csv": [["soon", "2024-01-02"]]},
            None,
            "--windows '{w}': c/x.csv window 0: 'soon' is not a time",
        ),
        (
            {"c/nope.csv": [], "c/zz.csv": []},
            None,
            "--data '{d}': holds none of the 2 files {w} names (such as c/nope.csv); {give}",
        ),
        ({"c/x.csv": []}, lambda tmp: shutil.rmtree(tmp / "data"), "--data '{d}': no such folder; {give}"),
        ({"c/x.csv": []}, _data_as_a_file, "--data '{d}': not a folder; {give}"),
        (
            {"c/x.csv": []},
            lambda tmp: (tmp / "data" / "c" / "x.csv").write_text("timestamp,value\nsoon,1\n"),
            "--data '{d}': c/x.csv line 2: 'soon' is not a time;",  # said "--data '{d}': {d}/c/x.csv"
        ),
    ],
    ids=[
        "missing-windows",
        "windows-a-directory",
        "windows-not-json",
        "windows-names-no-files",
        "windows-not-an-object",
        "bad-window",
        "no-data",
        "missing-data",
        "data-not-a-folder",
        "bad-data-file",
    ],
)
def test_evaluate_nab_names_a_bad_file_as_every_bad_option_is_named(tmp_path, windows, change, said):
    """``anomaly evaluate nab`` said ``error: windows: cannot read windows file w.json: ...`` and ``error:
    input: ...`` for a file of ``--data``; a ``--data`` that does not exist, is no folder or holds none of
    the files said "no data file named in W exists under D", neither the reason nor what to give."""
    args = evaluate_args(tmp_path, windows)
    if change is not None:
        change(tmp_path)
    result = runner.invoke(app, [*args, "-q"])
    output = " ".join(result.output.split())
    give = "give the folder of NAB's data files (category/file.csv), its data/"
    expected = "error: " + said.format(w=tmp_path / "w.json", d=tmp_path / "data", give=give)
    assert result.exit_code == 1 and output.startswith(expected), output


NAB_GIVE_ALL = "give the whole corpus, or --allow-missing to score the 1 it holds"


def test_evaluate_nab_refuses_a_data_folder_that_lacks_files_the_windows_name(tmp_path):
    # It scored the files it found without a word: a partial download gave a score that looked like the
    # whole corpus's. c/x.csv is there, c/y.csv and c/z.csv are not.
    args = evaluate_args(tmp_path, {"c/x.csv": [], "c/y.csv": [], "c/z.csv": []})
    result = runner.invoke(app, [*args, "-q"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1, said
    assert said.startswith(
        f"error: --data '{tmp_path / 'data'}': lacks 2 of the 3 files {tmp_path / 'w.json'} names"
        f" (c/y.csv, c/z.csv); {NAB_GIVE_ALL}"
    ), said


@pytest.mark.parametrize("output", ["json", "text"])
def test_evaluate_nab_scores_what_the_data_folder_holds_when_allowed_and_says_what_it_lacks(tmp_path, output):
    args = evaluate_args(tmp_path, {"c/x.csv": [], "c/y.csv": [], "c/z.csv": []})
    result = runner.invoke(app, [*args, "-q", "--allow-missing", "-o", output])
    assert result.exit_code == 0, result.output
    assert "scored 1 of 3 files; --data lacks c/y.csv, c/z.csv" in " ".join(result.stderr.split())
    if output == "json":
        report = json.loads(result.stdout)
        assert report["splits"]["all"]["files"] == 1
        assert report["missing_files"] == ["c/y.csv", "c/z.csv"]
    whole = runner.invoke(app, [*evaluate_args(tmp_path / "whole", {"c/x.csv": []}), "-q", "-o", "json"])
    assert json.loads(whole.stdout)["missing_files"] == [] and whole.stderr == ""


@pytest.mark.parametrize(
    ("missing", "refused"),
    [("c/y.csv", False), ("c/z.csv", True)],
    ids=["held-out-file-missing", "tuning-file-missing"],
)
def test_evaluate_nab_tune_only_minds_only_the_tuning_files_missing(tmp_path, missing, refused):
    # --tune-only leaves the held-out files out on purpose: one missing changes nothing it scores. c/x.csv
    # and c/z.csv are of the tuning split, c/y.csv held out.
    args = evaluate_args(tmp_path, {"c/x.csv": [], missing: []})
    result = runner.invoke(app, [*args, "-q", "--tune-only", "-o", "json"])
    said = " ".join(result.output.split())
    if refused:
        assert result.exit_code == 1, said
        assert f"lacks 1 of the 2 tuning files {tmp_path / 'w.json'} names (c/z.csv);" in said
        return
    assert result.exit_code == 0 and result.stderr == "", said
    report = json.loads(result.stdout)
    assert report["splits"]["all"]["files"] == 1 and report["missing_files"] == []


def test_evaluate_nab_stopped_by_sigterm_says_so_and_exits_143(tmp_path, monkeypatch):
    """SIGTERM (``timeout``, a batch job's end) killed it where it stood, nothing said, as Ctrl-C ended it
    with exit 130 and nothing said: a CI log showed no score and no reason."""
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from anomaly import nab  # noqa: PLC0415
    from tests.gpuwarden.cli.stopping import sigterm_uncaught  # noqa: PLC0415

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("went on past SIGTERM")

    monkeypatch.setattr(nab, "evaluate", terminated)
    args = evaluate_args(tmp_path, {"c/x.csv": []})
    with sigterm_uncaught() as uncaught:
        result = runner.invoke(app, [*args, "-o", "json"])
    assert result.exit_code == 143 and not uncaught, result.output
    assert result.stdout == ""
    assert result.stderr == "error: stopped by SIGTERM before it finished; no score is printed\n"
