from __future__ import annotations

import random

import pytest

from alerting.topology import UNKNOWN, Path, common_ancestor


def _shared_prefix(paths: list[Path]) -> Path:
    """The definition: the elements every path has at each depth, from the top, until one differs or a path
    ends; an unknown rack left last is dropped."""
    prefix: list[str] = []
    for depth in range(min(len(p) for p in paths)):
        if len({p[depth] for p in paths}) > 1:
            break
        prefix.append(paths[0][depth])
    return tuple(prefix[:-1] if prefix[-1:] == [UNKNOWN] else prefix)


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ([], ()),
        ([("c1", "r07", "n1", "3")], ("c1", "r07", "n1", "3")),
        ([("c1", "r07", "n1", "3"), ("c1", "r07", "n2", "0")], ("c1", "r07")),
        ([("c1", "r07", "n1"), ("c1", "r07", "n1", "4")], ("c1", "r07", "n1")),
        ([("c1", UNKNOWN, "n1"), ("c1", UNKNOWN, "n2")], ("c1",)),
        ([("c1", UNKNOWN, "n1", "0"), ("c1", UNKNOWN, "n1", "5")], ("c1", UNKNOWN, "n1")),
        ([("c1", "r07"), ("c2", "r07")], ()),
    ],
    ids=[
        "none",
        "one",
        "two-nodes",
        "node-and-its-gpu",
        "unknown-racks",
        "one-node-unknown-rack",
        "clusters",
    ],
)
def test_the_common_ancestor_of_paths_is_their_shared_prefix(paths: list[Path], expected: Path) -> None:
    assert common_ancestor(paths) == expected
    assert common_ancestor(reversed(paths)) == expected


@pytest.mark.parametrize("seed", range(5))
def test_the_common_ancestor_of_random_paths_is_their_shared_prefix(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(2000):
        paths = [
            tuple(
                rng.choice(values)
                for values in (["c1", "c2"], ["r1", UNKNOWN], ["n1", "n2"], ["0", "1"])[: rng.randint(1, 4)]
            )
            for _ in range(rng.randint(1, 5))
        ]
        assert common_ancestor(paths) == _shared_prefix(paths), paths
