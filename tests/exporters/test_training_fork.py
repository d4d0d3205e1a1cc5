"""Training metrics in a child forked after they were set up (a launcher that forks its ranks): the child
pushes its own ranks, leaves the parent's alone and closes without waiting on the parent's threads."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import warnings
from collections.abc import Callable

import pytest

from exporters import training_export
from exporters.training import TrainingMetrics
from tests.exporters.test_training_export import RecordingGateway


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> RecordingGateway:
    recorder = RecordingGateway()  # in the child too: a fork copies it, and what it records
    monkeypatch.setattr(training_export, "push_to_gateway", recorder)
    return recorder


def in_forked_child(body: Callable[[], object], wait: float = 20.0) -> object:
    """What ``body()`` returns in a forked child; fails when the child does not end within ``wait`` s."""
    reader, writer = multiprocessing.Pipe(duplex=False)

    def child() -> None:
        writer.send(body())
        writer.close()
        os._exit(0)  # no atexit, no pytest teardown in the child

    process = multiprocessing.get_context("fork").Process(target=child)
    with warnings.catch_warnings():  # 3.12 warns of fork() in a process with threads: that is the case here
        warnings.simplefilter("ignore", DeprecationWarning)
        process.start()
    try:
        if not reader.poll(wait):
            pytest.fail(f"the forked child gave no answer in {wait} s (hung)")
        return reader.recv()
    finally:
        process.join(wait)
        if process.is_alive():
            process.kill()
            process.join()


def test_a_rank_forked_after_the_parent_pushed_pushes_its_own_group_and_not_the_parents(
    gateway: RecordingGateway,
) -> None:
    # The parent's pusher thread had started: a child's pushes went to a thread that is not in the child,
    # lost without a word (close() said True). Its copy of the parent's rank 0, pushed, would set the
    # parent's group back, and its close() would mark rank 0 finished while the parent still ran it.
    m = TrainingMetrics("pretrain", rank=0, pushgateway="http://127.0.0.1:9")
    with m.step_timer():
        pass
    assert m.flush(timeout=10)
    gateway.pushes.clear()

    def rank_1() -> object:
        for _ in range(3):
            with m.step_timer(rank=1):
                m.report(samples=8)
            m.push()
        closed = m.close(timeout=10)
        return closed, [(key["rank"], steps) for _, _, key, steps in gateway.pushes]

    closed, pushed = in_forked_child(rank_1)  # type: ignore[misc]
    assert closed
    assert pushed and {rank for rank, _ in pushed} == {"1"}
    assert pushed[-1] == ("1", 3.0)
    assert m.close(timeout=10)
    assert (
        m.rank(0).registry.get_sample_value("gpuwarden_training_finished_timestamp_seconds", {"rank": "0"})
        is not None
    )  # the parent's own close marks it


def test_a_child_forked_after_serve_closes_without_waiting_on_the_parents_server() -> None:
    # close() in the child stopped the parent's server: shutdown() waited for ever on its serving thread,
    # which a fork does not copy.
    m = TrainingMetrics("pretrain", rank=0)
    m.serve(0, 0)

    def close() -> object:
        with m.step_timer(rank=1):
            pass
        return m.close(timeout=5)

    try:
        assert in_forked_child(close) is True
    finally:
        m.close()
