from __future__ import annotations

from exporters import fields
from gpuwarden.mig import device_level, one_per_gpu

GPU = {"gpu": "3", "UUID": "GPU-3", "Hostname": "n1"}


def _instance(i: int, pod: str) -> dict[str, str]:
    return {**GPU, "GPU_I_ID": str(i), "GPU_I_PROFILE": "1g.10gb", "namespace": "ml", "pod": pod}


def test_the_device_level_metrics_are_those_the_exporter_repeats_on_mig_instances() -> None:
    dcgm = [f for f in fields.FAMILIES if f.dcgm]
    assert {f.name for f in dcgm if device_level(f.name)} == {f.name for f in fields.MIG_REPEATED}


def test_a_gpu_served_by_its_instances_only_keeps_one_series_naming_the_gpu_whichever_exist() -> None:
    other = {"gpu": "4", "UUID": "GPU-4", "Hostname": "n1"}
    rows, labels = one_per_gpu([other, _instance(9, "a"), _instance(2, "b"), _instance(13, "c")]) or ([], [])
    assert rows == [0, 2] and labels == [other, GPU]  # instance 2 (the lowest) read, its pod not the GPU's
    # Instance 2 destroyed: the series read is another instance's, under the same labels.
    assert one_per_gpu([other, _instance(9, "a"), _instance(13, "c")]) == ([0, 1], [other, GPU])
    # One workload holds every slice: it is the GPU's too.
    only = one_per_gpu([_instance(1, "a"), _instance(2, "a")])
    assert only is not None and only[1] == [{**GPU, "namespace": "ml", "pod": "a"}]


def test_a_gpu_with_its_whole_gpu_series_keeps_that_one_and_a_fleet_without_mig_is_left_as_it_is() -> None:
    assert one_per_gpu([_instance(1, "a"), GPU, _instance(2, "b")]) == ([1], [GPU])
    assert one_per_gpu([GPU, {**GPU, "gpu": "4", "UUID": "GPU-4"}]) is None
