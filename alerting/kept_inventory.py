"""What an inventory reader keeps of its source past that source's own view, in the incident store, so that a
restarted ``serve`` (or a standby that took over) still knows it: the place of a node deleted from
Kubernetes or removed from Slurm while work it stopped is kept (its cluster, rack and GPUs, which the
incident's next alert for it needs), and the Kubernetes pods lost with their node (Slurm's stopped jobs have
their own table, ``alerting.kept_jobs``).

Without it a node gone from its source stayed listed in the reader's memory only: after a restart the
node's open incident lost its cluster and rack at its next alert, and the workloads the node stopped. Each
reader saves its rows of a cluster as a whole after a read where they changed, and reads them back on its
first read (rows of another version that no longer read are left out with a warning). Each reader also keeps
each node as it last listed it (``LISTED``; the Kubernetes reader with the GPU pods placed on it,
``alerting.k8s_kept``), so that a node gone from its source while no serve ran is judged at the first read
after a start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import InstrumentedAttribute, Session

from alerting.db import Base
from alerting.inventory import NodeInfo
from alerting.store_models import KeptInventoryRow
from gpuwarden.clock import shown
from gpuwarden.errors import SourceError

logger = logging.getLogger(__name__)

NODE, POD = "node", "pod"
LISTED = "listed"  # a node as the reader last listed it, with what ran on it (``alerting.k8s_kept``)
Kept = Mapping[tuple[str, str], tuple[float, Mapping[str, Any]]]
"""(kind, name) -> since when it is kept (Unix time) and what the reader needs of it, as JSON."""


class KeptRecords(Protocol):
    """Where a reader keeps what it knows past its source's view (``KeptInventoryStore``)."""

    def load(self, cluster: str) -> dict[tuple[str, str], tuple[float, Mapping[str, Any]]]:
        """What is kept for ``cluster``."""
        ...

    def save(self, cluster: str, kept: Kept) -> None:
        """Replace what is kept for ``cluster``."""
        ...

    def drop_others(self, cluster: str | None) -> list[str]:
        """Delete what is kept for every cluster but ``cluster`` (None: every cluster); those clusters."""
        ...


class KeptInventoryStore:
    """The ``kept_inventory`` table of the incident store (migration 0026), for one ``source``."""

    def __init__(self, engine: Engine, source: str) -> None:
        self._engine = engine
        self._source = source

    def load(self, cluster: str) -> dict[tuple[str, str], tuple[float, Mapping[str, Any]]]:
        """What the reader of this source kept for ``cluster``."""
        try:
            with Session(self._engine) as session:
                rows = session.scalars(
                    select(KeptInventoryRow).where(
                        KeptInventoryRow.source == self._source, KeptInventoryRow.cluster == cluster
                    )
                ).all()
        except SQLAlchemyError as exc:
            raise SourceError(
                f"kept {self._source} inventory of cluster {cluster} cannot be read: {exc}", source="store"
            ) from exc
        return {(row.kind, row.name): (row.since, row.data) for row in rows}

    def save(self, cluster: str, kept: Kept) -> None:
        """Replace what the reader of this source keeps for ``cluster`` with ``kept``, in one transaction:
        only the rows that changed are written (the Kubernetes reader keeps a row per node it lists, and a
        read changes few of them)."""
        try:
            with Session(self._engine) as session, session.begin():
                rows = {
                    (row.kind, row.name): row
                    for row in session.scalars(
                        select(KeptInventoryRow).where(
                            KeptInventoryRow.source == self._source, KeptInventoryRow.cluster == cluster
                        )
                    )
                }
                for key, gone in rows.items():
                    if key not in kept:
                        session.delete(gone)
                for (kind, name), (since, data) in kept.items():
                    row = rows.get((kind, name))
                    if row is None:
                        session.add(
                            KeptInventoryRow(
                                source=self._source,
                                cluster=cluster,
                                kind=kind,
                                name=name,
                                since=since,
                                data=dict(data),
                            )
                        )
                    elif row.since != since or row.data != data:
                        row.since, row.data = since, dict(data)
        except SQLAlchemyError as exc:
            raise SourceError(
                f"kept {self._source} inventory of cluster {cluster} cannot be saved: {exc}", source="store"
            ) from exc

    def drop_others(self, cluster: str | None) -> list[str]:
        """Delete what the reader of this source kept for every cluster but ``cluster`` (None: every cluster,
        the source no longer configured); the clusters whose rows were deleted. A reader reads one cluster,
        and rows are only read back for the cluster read: those of a cluster renamed (Slurm's
        ``ClusterName``, ``kubernetes_inventory.cluster``) or no longer read were never deleted, and a
        reader of that name later (renamed back, configured again) took them back as if just written."""
        mine = KeptInventoryRow.source == self._source
        others = mine if cluster is None else mine & (KeptInventoryRow.cluster != cluster)
        what = f"kept {self._source} inventory of other clusters than {cluster}"
        return drop_rows(self._engine, KeptInventoryRow, KeptInventoryRow.cluster, others, what)


def drop_rows(
    engine: Engine,
    table: type[Base],
    cluster: InstrumentedAttribute[str],
    where: ColumnElement[bool],
    what: str,
) -> list[str]:
    """Delete the rows of ``table`` that ``where`` selects; the clusters (``cluster``, its column) they were
    of, sorted. A store that cannot do it raises ``SourceError`` saying ``what`` cannot be deleted."""
    try:
        with Session(engine) as session, session.begin():
            names = sorted(set(session.scalars(select(cluster).where(where))))
            if names:
                session.execute(delete(table).where(where))
    except SQLAlchemyError as exc:
        raise SourceError(f"{what} cannot be deleted: {exc}", source="store") from exc
    return names


def node_data(node: NodeInfo) -> dict[str, Any]:
    """A node's place, as kept: what its incident's alerts need once its source no longer lists it."""
    return {
        "name": node.name,
        "cluster": node.cluster,
        "rack": node.rack,
        "gpus": node.gpu_count,
        "gpu_uuids": list(node.gpu_uuids),
        "partitions": list(node.partitions),
        "addresses": list(node.addresses),
        "features": sorted(node.features),
    }


def node_from_data(data: Mapping[str, Any]) -> NodeInfo:
    """A node ``node_data`` wrote, taking no work; ``ValueError`` when it does not read."""
    try:
        names = {key: [str(v) for v in data.get(key, ())] for key in ("gpu_uuids", "partitions", "addresses")}
        node = NodeInfo(
            str(data["name"]),
            str(data["cluster"]),
            str(data["rack"]),
            int(data["gpus"]),
            tuple(names["gpu_uuids"]),
            usable=False,
            free=0,
            partitions=tuple(names["partitions"]),
            addresses=tuple(names["addresses"]),
            features=frozenset(str(f) for f in data.get("features", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a kept node does not read: {exc!r}") from exc
    if not node.name or node.gpu_count < 0:
        raise ValueError(f"a kept node does not read: {dict(data)!r}")
    return node


def kept_nodes(
    kept: Mapping[tuple[str, str], tuple[float, Mapping[str, Any]]], source: str
) -> dict[str, NodeInfo]:
    """The nodes among what a reader kept, by name: the places of nodes kept work ran on, and the nodes as it
    last listed them (``LISTED``); one that does not read is left out with a warning."""
    out: dict[str, NodeInfo] = {}
    for (kind, name), (_, data) in sorted(kept.items(), key=lambda row: row[0][0] == NODE):
        if kind not in (NODE, LISTED):
            continue
        try:
            out[name] = node_from_data(data)
        except ValueError as exc:
            logger.warning("%s inventory: kept node %s left out: %s", source, name, exc)
    return out


class KeptSync:
    """A reader's side of ``KeptRecords``: read back once, on the first read that can (a store that cannot
    be read now is asked at the next), and saved after a read where it changed (one that cannot be written
    now is tried at the next)."""

    def __init__(self, records: KeptRecords, source: str) -> None:
        self._records, self._source = records, source
        self._loaded = False
        self._saved: dict[tuple[str, str], tuple[float, Mapping[str, Any]]] = {}

    def restore(self, cluster: str) -> Kept:
        """What the store keeps for ``cluster`` the first time it can be read; nothing after."""
        if self._loaded:
            return {}
        try:
            stored = self._records.load(cluster)
        except SourceError as exc:
            logger.warning("%s inventory: %s; asking again at the next read", self._source, exc)
            return {}
        self._loaded, self._saved = True, dict(stored)
        drop_other_clusters(self._records, self._source, cluster)
        return stored

    def persist(self, cluster: str, kept: Kept) -> None:
        """Save ``kept`` for ``cluster`` where it changed, once what was kept before was read back."""
        if not self._loaded or kept == self._saved:
            return
        try:
            self._records.save(cluster, kept)
        except SourceError as exc:
            logger.warning("%s inventory: %s; trying again at the next read", self._source, exc)
            return
        self._saved = dict(kept)


class OtherClusters(Protocol):
    """A store of what a reader keeps per cluster, which drops the rows of other clusters."""

    def drop_others(self, cluster: str | None) -> list[str]:
        """Delete what is kept for every cluster but ``cluster``; those clusters."""
        ...


def drop_other_clusters(
    records: OtherClusters, source: str, cluster: str | None, what: str = "what it kept"
) -> None:
    """Drop what a reader of ``source`` kept for clusters other than the one it reads now (``cluster``; None:
    every cluster, ``source`` no longer configured), said in a warning; a store that cannot do it now is
    asked again at the next start."""
    unread = "not configured; " if cluster is None else ""
    try:
        dropped = records.drop_others(cluster)
    except SourceError as exc:
        logger.warning("%s inventory: %s%s; tried again at the next start", source, unread, exc)
        return
    if dropped and cluster is None:
        logger.warning(
            "%s inventory: not configured; %s for cluster %s dropped", source, what, ", ".join(dropped)
        )
    elif dropped:
        logger.warning(
            "%s inventory: %s for cluster %s dropped: it reads cluster %s now (renamed, or another cluster)",
            source,
            what,
            ", ".join(dropped),
            cluster,
        )


def node_places(
    nodes: Mapping[str, NodeInfo], ran: Mapping[str, float]
) -> dict[tuple[str, str], tuple[float, Mapping[str, Any]]]:
    """The kept rows of the nodes kept work ran on (``ran``: node -> since when), as ``nodes`` lists them."""
    return {(NODE, name): (since, node_data(nodes[name])) for name, since in ran.items() if name in nodes}


def listed_places(
    nodes: Iterable[NodeInfo], since: Mapping[str, float], now: float
) -> dict[tuple[str, str], tuple[float, Mapping[str, Any]]]:
    """Each node as a reader lists it now (``LISTED`` rows), listed since ``since`` says (else ``now``): what
    a reader started later judges its first read against, a node gone from its source meanwhile included."""
    return {(LISTED, n.name): (since.get(n.name, now), node_data(n)) for n in nodes}


def left_while_down(
    source: str, listed: Iterable[str], names: Iterable[str], now: float, pods_on: Iterable[str] | None = None
) -> list[str]:
    """The nodes a reader before this one listed (``listed``) that are not listed now (``names``), said in a
    warning: they left while gpuwarden was down, as seen ``now``; with ``pods_on`` (the node of each GPU pod
    last seen), how many of those pods are lost with them as of then."""
    left = sorted(set(listed) - set(names))
    if left:
        lost = sum(1 for node in pods_on if node in left) if pods_on is not None else None
        logger.warning(
            "%s inventory: nodes %s left while gpuwarden was down (not listed at the first read since it"
            " started, %s)%s",
            source,
            ", ".join(left),
            shown(datetime.fromtimestamp(now, UTC)),
            "" if lost is None else f"; the {lost} GPU pods last seen on them are lost as of then",
        )
    return left
