"""A command can ask whether stdout's reader has gone without writing to it: `demo | head -2` stops
within a tick of `head` leaving, not at its next line 40 s later."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from gpuwarden.cli.readers import stdout_reader_gone


def test_a_pipe_whose_reader_left_is_told_without_a_write(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as writer:
        monkeypatch.setattr(sys, "stdout", writer)  # in the test: pytest's capture sets it for each phase
        read = stdout_reader_gone()
        os.close(read_end)
        gone = stdout_reader_gone()
        monkeypatch.undo()
    assert (read, gone) == (False, True)


@pytest.mark.parametrize("where", ["file", "buffer", "none"])
def test_stdout_that_is_no_pipe_is_never_said_gone(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "out.txt").open("w") as file:
        stream = {"file": file, "buffer": io.StringIO(), "none": None}[where]
        monkeypatch.setattr(sys, "stdout", stream)
        gone = stdout_reader_gone()
        monkeypatch.undo()
    assert not gone
