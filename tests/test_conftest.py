"""tests/conftest.py's set-up for every test: the loggers as they were after each test.

``serve`` (and ``anomaly run``, the exporter, ``demo``) set up the root logger with the ``sys.stderr`` of
the process (the exporter's uvicorn, ``exporters.server.server_config``, logs through it); invoked through
click's ``CliRunner``, that is the runner's stream, which it closes when the command ends. A handler left
there writes every later test's log lines to a closed file ("--- Logging error ---" on stderr, lines lost).
The two tests run in file order, as their module always does: the second checks what the first left.
"""

from __future__ import annotations

import logging
import sys

# httpx's logger, which serve quiets, is made at its import: the fixture restores the level of a logger there
# was before the test (one made in it keeps its level, and no handler on a closed stream).
import httpx  # noqa: F401 - imported for its logger
import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from exporters.server import server_config
from gpuwarden.cli.logs import configure_logging

_LEFT_BY_THE_FIRST: dict[str, list[logging.Handler]] = {}
_LEVELS_BEFORE_THE_FIRST: dict[str, int] = {}


def _handlers() -> dict[str, list[logging.Handler]]:
    names = ("", "uvicorn")  # uvicorn's is made by its logging set-up, unless a test before had it served
    return {name: logging.getLogger(name).handlers[:] for name in names}


def test_logging_set_up_in_a_cli_runner_is_left_bound_to_the_streams_the_runner_closed() -> None:
    before = _handlers()
    _LEVELS_BEFORE_THE_FIRST.update(root=logging.root.level, httpx=logging.getLogger("httpx").level)
    with CliRunner().isolation():  # what CliRunner.invoke runs a command in
        configure_logging(logging.INFO, handler=logging.StreamHandler(sys.stderr))  # as serve does
        server_config(Starlette())  # as the exporter and inference-server do
    # uvicorn's loggers keep no handler of their own (``log_config=None``: its lines go through the root's, in
    # the command's format); the root's is on the stream the runner closed.
    expected = {"": [True], "uvicorn": []}
    for name, handlers in _handlers().items():
        added = [handler for handler in handlers if handler not in before[name]]
        assert [isinstance(h, logging.StreamHandler) and h.stream.closed for h in added] == expected[name], (
            name
        )
        _LEFT_BY_THE_FIRST[name] = added
    assert logging.root.level == logging.INFO and logging.getLogger("httpx").level == logging.WARNING


def test_the_handlers_and_levels_the_test_before_set_are_gone_after_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _LEFT_BY_THE_FIRST, "runs after the test above, as its module does"
    for name, handlers in _handlers().items():
        assert not set(_LEFT_BY_THE_FIRST[name]) & set(handlers), name
    assert logging.root.level == _LEVELS_BEFORE_THE_FIRST["root"]
    assert logging.getLogger("httpx").level == _LEVELS_BEFORE_THE_FIRST["httpx"]
    for name in ("tests.test_conftest", "uvicorn.error"):
        logging.getLogger(name).warning("a line after the test that set up logging")
    assert "Logging error" not in capsys.readouterr().err
