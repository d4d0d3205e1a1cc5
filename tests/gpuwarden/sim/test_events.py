from __future__ import annotations

import threading

from gpuwarden.sim.events import EventQueue, GpuEvent


def test_events_come_out_in_order_and_once() -> None:
    queue = EventQueue()
    for code in (13, 31, 79):
        queue.put(GpuEvent("node-01", 0, 0x8, code))
    assert len(queue) == 3
    got = [queue.get(0) for _ in range(3)]
    assert [e.data for e in got if e is not None] == [13, 31, 79]
    assert queue.get(0) is None


def test_get_waits_for_a_put_from_another_thread() -> None:
    queue = EventQueue()
    timer = threading.Timer(0.05, queue.put, args=(GpuEvent("node-01", 1, 0x8, 48),))
    timer.start()
    event = queue.get(10.0)
    timer.join()
    assert event is not None and event.data == 48


def test_close_wakes_a_waiter_with_nothing() -> None:
    queue = EventQueue()
    result: list[object] = []
    waiter = threading.Thread(target=lambda: result.append(queue.get(30.0)))
    waiter.start()
    queue.close()
    waiter.join(10)
    assert not waiter.is_alive() and result == [None]
