"""Whether several wants can be met at once from shared pools: each want drawing only on the pools open to it,
no unit of a pool given twice (a maximum flow through a small bipartite graph). Stopped training jobs that
compete for the free GPUs of the nodes each may use (``alerting.capacity``) are the case it serves."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet


def all_met(wants: Sequence[int], pools: Mapping[frozenset[int], int]) -> bool:
    """Whether every ``wants[i]`` can be met at once from the ``pools`` whose key holds ``i`` (a pool: which
    wants may draw on it -> how much it holds)."""
    needed = sum(w for w in wants if w > 0)
    usable = [(users, amount) for users, amount in pools.items() if amount > 0 and users]
    if needed == 0:
        return True
    if sum(amount for _, amount in usable) < needed:
        return False
    return _max_flow(wants, usable) >= needed


def _max_flow(wants: Sequence[int], pools: Sequence[tuple[AbstractSet[int], int]]) -> int:
    """Edmonds-Karp from a source through the wants and the pools to a sink. Vertices: 0 the source, then
    the wants, then the pools, then the sink; a want reaches a pool without limit."""
    sink = 1 + len(wants) + len(pools)
    residual: list[dict[int, int]] = [{} for _ in range(sink + 1)]

    def edge(a: int, b: int, capacity: int) -> None:
        residual[a][b] = residual[a].get(b, 0) + capacity
        residual[b].setdefault(a, 0)

    unlimited = sum(w for w in wants if w > 0)
    for i, want in enumerate(wants):
        if want > 0:
            edge(0, 1 + i, want)
    for j, (users, amount) in enumerate(pools):
        pool = 1 + len(wants) + j
        for i in users:
            if 0 <= i < len(wants) and wants[i] > 0:
                edge(1 + i, pool, unlimited)
        edge(pool, sink, amount)
    flow = 0
    while (path := _augmenting_path(residual, sink)) is not None:
        pushed = min(residual[a][b] for a, b in path)
        for a, b in path:
            residual[a][b] -= pushed
            residual[b][a] += pushed
        flow += pushed
    return flow


def _augmenting_path(residual: Sequence[Mapping[int, int]], sink: int) -> list[tuple[int, int]] | None:
    """The shortest path from the source (0) to ``sink`` with room left on every edge, or None."""
    came_from: dict[int, int] = {0: 0}
    queue = deque([0])
    while queue and sink not in came_from:
        a = queue.popleft()
        for b, room in residual[a].items():
            if room > 0 and b not in came_from:
                came_from[b] = a
                queue.append(b)
    if sink not in came_from:
        return None
    path = []
    b = sink
    while b != 0:
        path.append((came_from[b], b))
        b = came_from[b]
    return path[::-1]
