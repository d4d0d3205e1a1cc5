"""Slurm jobs kept after they stopped abnormally, in the incident store, so that a restarted ``serve`` (or a
standby that took over) still knows where they ran.

A job that a node failure requeued is PENDING again and ``squeue`` names no node for it; without this, a
``serve`` that started after the failure no longer knew the job, and the node's open incident stopped
naming it. The Slurm reader saves what it keeps (``save``) after each read where that changed, and reads
it back (``load``) on its first read. Rows of a cluster are replaced as a whole: what the reader forgot
(its keep window over, the job running again) is gone from the store too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import Engine, delete, select, true
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerting.inventory import WorkloadInfo
from alerting.inventory_file import workload_data, workload_from_data
from alerting.kept_inventory import drop_rows
from alerting.store_models import KeptJobRow
from gpuwarden.errors import SourceError

logger = logging.getLogger(__name__)

Kept = Mapping[str, tuple[float, WorkloadInfo]]
"""Job id -> since when it is kept (Unix time) and its placement, as the Slurm reader keeps it."""


class KeptJobStore:
    """The ``kept_jobs`` table of the incident store (migration 0008)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def load(self, cluster: str) -> dict[str, tuple[float, WorkloadInfo]]:
        """The jobs kept for ``cluster``; a row that no longer reads (written by another version) is left
        out with a warning naming it."""
        out: dict[str, tuple[float, WorkloadInfo]] = {}
        try:
            with Session(self._engine) as session:
                rows = session.scalars(select(KeptJobRow).where(KeptJobRow.cluster == cluster)).all()
        except SQLAlchemyError as exc:
            raise SourceError(
                f"kept jobs of cluster {cluster} cannot be read: {exc}", source="store"
            ) from exc
        for row in rows:
            try:
                out[row.job_id] = (row.since, workload_from_data(row.workload))
            except ValueError as exc:
                logger.warning("kept jobs: job %s of cluster %s does not read: %s", row.job_id, cluster, exc)
        return out

    def save(self, cluster: str, kept: Kept) -> None:
        """Replace the jobs kept for ``cluster`` with ``kept``, in one transaction."""
        try:
            with Session(self._engine) as session, session.begin():
                session.execute(delete(KeptJobRow).where(KeptJobRow.cluster == cluster))
                session.add_all(
                    KeptJobRow(cluster=cluster, job_id=job_id, since=since, workload=workload_data(info))
                    for job_id, (since, info) in kept.items()
                )
        except SQLAlchemyError as exc:
            raise SourceError(
                f"kept jobs of cluster {cluster} cannot be saved: {exc}", source="store"
            ) from exc

    def drop_others(self, cluster: str | None) -> list[str]:
        """Delete the jobs kept for every cluster but ``cluster`` (None: every cluster, no Slurm inventory
        configured); the clusters whose jobs were deleted (one renamed: ``ClusterName``)."""
        others = KeptJobRow.cluster != cluster if cluster is not None else true()
        what = f"kept jobs of other clusters than {cluster}"
        return drop_rows(self._engine, KeptJobRow, KeptJobRow.cluster, others, what)
