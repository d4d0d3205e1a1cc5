"""``kept_inventory`` (migration 0026) on a real, throwaway PostgreSQL 15: a node deleted from Kubernetes or
removed from Slurm while its incident is open keeps its place, and the workloads it stopped, across a serve
restart; the migration downgrades and upgrades again."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from alerting.db import make_engine
from alerting.migrate import upgrade
from tests.alerting.kept_scenarios import (
    a_deleted_kubernetes_node_keeps_its_place_and_lost_replica_after_a_restart,
    a_kubernetes_node_deleted_while_serve_was_down_is_judged_at_the_first_read,
    a_removed_slurm_node_keeps_its_place_and_stopped_job_after_a_restart,
    a_slurm_node_removed_while_serve_was_down_keeps_its_place_and_stopped_job,
)
from tests.alerting.migrate_steps import the_kept_inventory_of_0026_downgrades_and_upgrades_again


@pytest.mark.integration
@pytest.mark.parametrize(
    "scenario",
    [
        a_deleted_kubernetes_node_keeps_its_place_and_lost_replica_after_a_restart,
        a_kubernetes_node_deleted_while_serve_was_down_is_judged_at_the_first_read,
        a_removed_slurm_node_keeps_its_place_and_stopped_job_after_a_restart,
        a_slurm_node_removed_while_serve_was_down_keeps_its_place_and_stopped_job,
        the_kept_inventory_of_0026_downgrades_and_upgrades_again,
    ],
    ids=[
        "kubernetes-node-deleted",
        "kubernetes-node-deleted-while-down",
        "slurm-node-removed",
        "slurm-node-removed-while-down",
        "0026-and-back",
    ],
)
def test_on_postgres_a_node_gone_from_its_source_keeps_its_place_across_a_restart(
    postgres_url: str, scenario: Callable[[Engine], None]
) -> None:
    sql = make_engine(postgres_url)  # a database of its own on the module's server
    upgrade(sql)
    try:
        scenario(sql)
    finally:
        sql.dispose()
