"""loadgen warms its HTTP client before the first request it times: httpx imports its network backend at its
first connection, 0.2 to 0.7 s that went into the first latency measured."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest

from exporters import loadgen
from exporters.loadgen import LoadPlan, run_load

ANSWER = {
    "id": "cmpl-1",
    "object": "chat.completion",
    "model": "gpuwarden-toy-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def test_the_client_is_warmed_once_before_the_first_request_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    # How long the first request took cannot be asserted on a loaded machine; the order of the steps can.
    steps: list[str] = []

    async def warm() -> None:
        steps.append("warm")

    def answer(request: httpx.Request) -> httpx.Response:
        steps.append("request")
        return httpx.Response(200, json=ANSWER)

    monkeypatch.setattr(loadgen, "warm_client", warm)
    plan = LoadPlan(url="http://127.0.0.1:8000", requests=3, rate=0, concurrency=1)
    report = asyncio.run(run_load(plan, transport=httpx.MockTransport(answer)))
    assert report.ok == 3
    assert steps == ["warm", "request", "request", "request"]


def test_warming_loads_what_the_first_connection_would_import() -> None:
    # A fresh interpreter: this one imported anyio's asyncio backend long ago.
    probe = (
        "import asyncio, json, sys\n"
        "from exporters.loadgen import warm_client\n"
        "before = '_backends._asyncio' in ' '.join(sys.modules)\n"
        "asyncio.run(warm_client())\n"
        "print(json.dumps([before, 'anyio._backends._asyncio' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == [False, True]
