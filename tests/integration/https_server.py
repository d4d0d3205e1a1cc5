"""Run a server of ours that serves over TLS, behind basic auth (``--web.config.file``), until it answers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.servers import READY_SECONDS, stop


@contextmanager
def running_https(
    argv: Sequence[str], url: str, log: Path, **client: Any
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with output to ``log`` until ``url`` answers 200 to an httpx client built with
    ``client`` (``verify=`` its CA, ``auth=``); always stop it."""
    with log.open("wb") as out, httpx.Client(**client) as probe:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_SECONDS
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if probe.get(url, timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                pytest.fail(f"{argv[1]} did not serve {url}:\n{log.read_text(errors='replace')[-3000:]}")
            yield proc
        finally:
            stop(proc)
