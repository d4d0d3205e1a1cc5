"""`anomaly score --output` (gpuwarden.cli.output_file): written whole or not at all, checked before work."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from anomaly import scored_csv, univariate
from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.cli.stopping import sigterm_uncaught

runner = BuiltCliRunner()


def write_short_series(path: Path) -> None:
    """Twenty rows: enough to score and write, for tests about the output file rather than the scores."""
    path.write_text("timestamp,value\n" + "".join(f"{1700000000 + 30 * i},{i % 3}\n" for i in range(20)))


def _failing_write_after(rows: int):
    """A ``write_scored_csv`` that writes the header and ``rows`` rows, then fails as a full disk does."""
    real = univariate.write_scored_csv

    def write(scored, path):
        real(scored, path)
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[: rows + 1]))
        full = OSError(errno.ENOSPC, "No space left on device")
        raise univariate.InputError(f"cannot write {path}: {full.strerror}", field="output") from full

    return write


def test_score_that_fails_while_writing_leaves_no_half_written_output_and_keeps_an_old_one(
    tmp_path, monkeypatch
):
    src, fresh, old = tmp_path / "in.csv", tmp_path / "fresh.csv", tmp_path / "old.csv"
    write_short_series(src)
    old.write_text("timestamp,value,anomaly_score,label\nkept,1,0,0\n")
    monkeypatch.setattr(univariate, "write_scored_csv", _failing_write_after(10))
    for out in (fresh, old):
        result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
        said = " ".join(result.stderr.split())
        assert result.exit_code == 1 and f"--output '{out}': cannot write it: No space left" in said, said
    assert not fresh.exists()
    assert old.read_text() == "timestamp,value,anomaly_score,label\nkept,1,0,0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "old.csv"]  # no temporary file left


def test_score_interrupted_while_writing_leaves_no_output(tmp_path, monkeypatch):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_short_series(src)

    def interrupted(scored, path):
        path.write_text("timestamp,value,anomaly_score,label\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(univariate, "write_scored_csv", interrupted)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_score_stopped_by_sigterm_while_writing_exits_143_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """SIGTERM (``timeout``, ``kill``, the end of a batch job) killed it where it stood: the temporary
    output being written, ``.out.csv.XXXX.tmp``, was left beside the output."""
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_short_series(src)
    real = univariate.write_scored_csv

    def terminated(scored, path):
        real(scored, path)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(univariate, "write_scored_csv", terminated)
    with sigterm_uncaught() as uncaught:
        result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 143 and not uncaught, result.output
    # No traceback; one line, where it said nothing (under `timeout` or a batch job: no reason, no result).
    assert result.stderr == (
        f"error: stopped by SIGTERM before it finished; nothing written to {out}"
        " (a file there is as it was)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_score_checks_its_output_directory_before_reading_or_scoring(tmp_path, monkeypatch):
    src = tmp_path / "in.csv"
    write_short_series(src)
    read: list[Path] = []
    monkeypatch.setattr(univariate, "read_series_csv", lambda path, **_: read.append(path))
    result = runner.invoke(
        app, ["anomaly", "score", "--input", str(src), "--output", str(tmp_path / "missing" / "o.csv")]
    )
    said = " ".join(result.stderr.split())
    missing = tmp_path / "missing"
    assert result.exit_code == 1 and f"cannot write in {missing}: it does not exist" in said, said
    assert read == []


def test_score_writes_through_a_symlinked_output_to_the_file_it_names(tmp_path):
    src, target, link = tmp_path / "in.csv", tmp_path / "target.csv", tmp_path / "link.csv"
    write_short_series(src)
    target.write_text("old\n")
    link.symlink_to(target)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and len(pd.read_csv(target)) == 20


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a symlink to another user needs root")
def test_score_does_not_write_through_another_users_symlink_in_a_shared_directory(tmp_path):
    """`--output /tmp/scores.csv`, where another user had made that name a link to a file of the one
    running it: that file was replaced (renamed over), which Linux's fs.protected_symlinks would refuse."""
    src, victim, shared = tmp_path / "in.csv", tmp_path / "victim", tmp_path / "shared"
    write_short_series(src)
    victim.write_text("precious\n")
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "scores.csv").symlink_to(victim)
    os.lchown(shared / "scores.csv", 54321, 54321)
    result = runner.invoke(
        app, ["anomaly", "score", "--input", str(src), "--output", str(shared / "scores.csv")]
    )
    assert result.exit_code == 1
    assert "is a symlink of user 54321" in result.output and "is not followed" in result.output
    assert victim.read_text() == "precious\n"


def test_score_writes_to_a_device_such_as_dev_null_in_place(tmp_path):
    src = tmp_path / "in.csv"
    write_short_series(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", os.devnull])
    assert result.exit_code == 0, result.output
    assert Path(os.devnull).is_char_device()


def test_an_output_named_as_the_refusals_first_word_is_said_whole(tmp_path, monkeypatch):
    """A directory named ``cannot`` was said ``error: --output 'cannot': write a directory; ...``: the
    refusal's own first word was taken for the value said again (``x.csv line 3: ...``) and dropped."""
    monkeypatch.chdir(tmp_path)
    write_short_series(tmp_path / "in.csv")
    (tmp_path / "cannot").mkdir()
    result = runner.invoke(app, ["anomaly", "score", "--input", "in.csv", "--output", "cannot", "-q"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and said == (
        "error: --output 'cannot': cannot write a directory; give a file name in it"
    ), said


def test_score_to_stdout_on_a_full_disk_says_so_naming_the_option(tmp_path, monkeypatch):
    """``--output - > out.csv`` on a full disk ended in a traceback (``OSError: [Errno 28]``)."""
    src = tmp_path / "in.csv"
    write_short_series(src)

    def full(scored, handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scored_csv, "write_scored_rows", full)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", "-"])
    said = " ".join(result.stderr.split())
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, result.exception
    assert said == "error: --output '-': cannot write it: No space left on device", said


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs Linux's /dev/full")
def test_score_to_a_full_device_names_the_option_as_for_a_file(tmp_path):
    """A device written in place was said ``error: output: cannot write /dev/full: ...``, not as every
    other --output is."""
    src = tmp_path / "in.csv"
    write_short_series(src)
    result = runner.invoke(app, ["anomaly", "score", "--input", str(src), "--output", "/dev/full"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and said == (
        "error: --output '/dev/full': cannot write it: No space left on device"
    ), said
