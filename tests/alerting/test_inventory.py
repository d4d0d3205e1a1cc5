from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alerting import scenarios
from alerting.inventory import inventory_data, load_inventory, workloads_on
from gpuwarden.errors import ConfigError


def test_inventory_file_round_trips_nodes_workloads_and_spare(tmp_path: Path) -> None:
    original = scenarios.fleet_inventory(racks=8, spare_gpus=12)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(original)))
    loaded = load_inventory(path)
    assert loaded.node("r07-n03") == original.node("r07-n03")
    assert loaded.gpu_by_uuid(scenarios.gpu_uuid("r07-n03", 5)) == ("r07-n03", 5)
    assert {w.ref for w in workloads_on(loaded, [("r07-n01", 0)])} == {scenarios.TRAINING_JOB}
    assert loaded.spare_gpus("c1") == 12
    assert len(loaded.nodes_in("c1", "r07")) == 8


def test_bad_gpu_reference_in_inventory_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        yaml.safe_dump({"workloads": [{"kind": "training_job", "name": "j", "units": [["nocolon"]]}]})
    )
    with pytest.raises(ConfigError, match=r"workloads\.units"):
        load_inventory(path)


def test_unknown_inventory_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("nodes: []\nrackz: []\n")
    with pytest.raises(ConfigError, match=r"inventory.yaml:2: rackz"):
        load_inventory(path)
