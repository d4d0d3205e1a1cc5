"""The NAB harnesses find their corpus from the repository, not the current directory, and refuse a missing
one naming the option."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.benchmarks.harness import harness_module, run_script

CORPUS = Path("shared") / "data" / "nab"


@pytest.fixture
def inputs(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``benchmarks/nab_inputs.py``, imported as the harnesses import it (their folder on the path)."""
    return harness_module(monkeypatch, "nab_inputs")


def _corpus(root: Path) -> Path:
    (root / CORPUS / "data").mkdir(parents=True)
    return root / CORPUS


def _worktree(main: Path, worktree: Path) -> None:
    """What `git worktree add` leaves: a .git file naming the worktree's git dir, which names the main one."""
    gitdir = main / ".git" / "worktrees" / worktree.name
    gitdir.mkdir(parents=True)
    (gitdir / "commondir").write_text("../..\n")
    worktree.mkdir(parents=True)
    (worktree / ".git").write_text(f"gitdir: {gitdir}\n")


def test_the_corpus_inside_the_repository_comes_before_the_one_beside_it(
    tmp_path: Path, inputs: ModuleType
) -> None:
    (tmp_path / "repo").mkdir()
    beside = _corpus(tmp_path)  # ../shared: the development machines' layout
    assert inputs.default_corpus(tmp_path / "repo") == beside
    inside = _corpus(tmp_path / "repo")
    assert inputs.default_corpus(tmp_path / "repo") == inside


def test_a_worktree_finds_the_corpus_beside_its_main_checkout(tmp_path: Path, inputs: ModuleType) -> None:
    main = tmp_path / "work" / "main"
    main.mkdir(parents=True)
    shared = _corpus(tmp_path / "work")
    _worktree(main, tmp_path / "elsewhere" / "wt")
    assert inputs.main_checkout(tmp_path / "elsewhere" / "wt") == main
    assert inputs.default_corpus(tmp_path / "elsewhere" / "wt") == shared
    assert inputs.default_corpus(tmp_path / "lonely") is None


@pytest.mark.parametrize("script", ["nab_cv.py", "nab_vs_htm.py"])
def test_a_missing_corpus_is_refused_naming_the_option_without_a_traceback(
    tmp_path: Path, script: str
) -> None:
    windows = tmp_path / "windows.json"
    windows.write_text('{"realTraffic/occupancy_6005.csv": []}')
    (tmp_path / "empty").mkdir()
    cases = [
        (
            [f"--data={tmp_path / 'none'}", f"--windows={windows}"],
            f"--data {tmp_path / 'none'}: not a directory",
        ),
        ([f"--data={tmp_path}", f"--windows={tmp_path / 'none.json'}"], "--windows"),
        ([f"--data={tmp_path / 'empty'}", f"--windows={windows}"], f"--data {tmp_path / 'empty'}"),
    ]
    for args, said in cases:
        done = run_script(script, *args, cwd=tmp_path)
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_no_corpus_found_from_the_repository_is_refused_naming_both_options_and_the_paths_tried(
    tmp_path: Path, inputs: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="nab_cv.py")
    inputs.add_corpus_options(parser)
    with pytest.raises(SystemExit) as stopped:
        inputs.load_checked_corpus(parser, parser.parse_args([]), repo=tmp_path / "repo")
    said = capsys.readouterr().err
    assert stopped.value.code == 2
    assert "--data/--windows: no NAB corpus found relative to the repository" in said
    assert str(tmp_path / "repo" / CORPUS) in said and "pass --data DIR and --windows FILE" in said


def test_a_windows_file_that_is_not_an_object_is_named_once(
    tmp_path: Path, inputs: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse  # noqa: PLC0415

    windows = tmp_path / "windows.json"
    windows.write_text('["realTraffic/occupancy_6005.csv"]')
    parser = argparse.ArgumentParser(prog="nab_cv.py")
    inputs.add_corpus_options(parser)
    with pytest.raises(SystemExit) as stopped:
        inputs.load_checked_corpus(parser, parser.parse_args([f"--data={tmp_path}", f"--windows={windows}"]))
    said = capsys.readouterr().err
    assert stopped.value.code == 2
    assert f"error: --windows {windows}: expected an object of file name -> windows" in said, said


def test_a_data_folder_lacking_files_the_windows_name_is_refused_naming_them(
    tmp_path: Path, inputs: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # The harnesses scored the files they found without a word: a partial corpus' figures read as the whole
    # corpus'. c/x.csv is there, c/y.csv is not.
    import argparse  # noqa: PLC0415

    (tmp_path / "data" / "c").mkdir(parents=True)
    rows = ["timestamp,value"] + [f"2020-01-01 00:{m:02d}:00,{m}" for m in range(60)]
    (tmp_path / "data" / "c" / "x.csv").write_text("\n".join(rows))
    windows = tmp_path / "windows.json"
    windows.write_text('{"c/x.csv": [], "c/y.csv": []}')
    parser = argparse.ArgumentParser(prog="nab_cv.py")
    inputs.add_corpus_options(parser)
    args = parser.parse_args([f"--data={tmp_path / 'data'}", f"--windows={windows}"])
    with pytest.raises(SystemExit) as stopped:
        inputs.load_checked_corpus(parser, args)
    said = " ".join(capsys.readouterr().err.split())
    assert stopped.value.code == 2
    assert f"error: --data {tmp_path / 'data'}: lacks 1 of the 2 files {windows} names (c/y.csv);" in said, (
        said
    )
