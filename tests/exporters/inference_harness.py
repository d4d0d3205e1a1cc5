"""What the toy inference server's tests share: its model, a chat request, a GPU whose speed the test sets,
the server on it, and a stream's events."""

from __future__ import annotations

from exporters.inference_server import ServedGpu, build_inference_app
from gpuwarden.clock import FakeClock
from tests.exporters.asgi_client import AsgiClient

MODEL = "gpuwarden-toy-1"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "why is my gpu slow"}], "max_tokens": 5}


class FakeGpu:
    """A GPU whose speed the test sets; it may drop to a new speed after ``after_calls`` calls."""

    def __init__(self) -> None:
        self.speed = 1.0
        self.after_calls: tuple[int, float] | None = None
        self.calls = 0

    def gpu_speed_factor(self, node: str, index: int) -> float:
        self.calls += 1
        if self.after_calls and self.calls > self.after_calls[0]:
            self.speed = self.after_calls[1]
        return self.speed


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.gpu = FakeGpu()
        self.slept = 0.0
        app = build_inference_app(
            ServedGpu(self.gpu, "node-01", 0, 0.01), model=MODEL, clock=self.clock, sleep=self.sleep
        )
        self.client = AsgiClient(app)

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.clock.advance(seconds)
