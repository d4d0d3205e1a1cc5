"""The renderer: DCGM names kept exactly, both formats parse, label values escaped."""

from __future__ import annotations

import math

from prometheus_client import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.samples import Sample

from exporters.collected import Gpu
from exporters.exposition import Exposition, LabelTexts, merge, render

LABELS = {"gpu": "0", "UUID": "GPU-1", "Hostname": 'node "a"\\b\nc'}


def families() -> list[Metric]:
    energy = Metric("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Total energy (in mJ).", "counter")
    energy.samples.append(Sample("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", LABELS, 123456789.0))
    xids = Metric("gpuwarden_xid_errors", "XIDs.", "counter")
    xids.samples.append(Sample("gpuwarden_xid_errors_total", {**LABELS, "xid": "79"}, 2.0))
    temp = Metric("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge")
    temp.samples.append(Sample("DCGM_FI_DEV_GPU_TEMP", LABELS, 41.5))
    temp.samples.append(Sample("DCGM_FI_DEV_GPU_TEMP", {**LABELS, "gpu": "1"}, math.nan))
    empty = Metric("gpuwarden_gpu_up", "up", "gauge")
    return [energy, xids, temp, empty]


def test_text_format_keeps_dcgm_counter_names_and_suffixes_gpuwarden_counters() -> None:
    text = render(families()).decode()
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n" in text
    assert "# TYPE gpuwarden_xid_errors_total counter\n" in text
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{" in text and "} 123456789\n" in text
    assert "gpuwarden_gpu_up" not in text  # a family without samples is left out
    parsed = {f.name: f for f in parse_text(text)}
    sample = parsed["DCGM_FI_DEV_GPU_TEMP"].samples[0]
    assert sample.labels == LABELS and sample.value == 41.5
    assert math.isnan(parsed["DCGM_FI_DEV_GPU_TEMP"].samples[1].value)


def test_openmetrics_is_valid_and_declares_unsuffixed_counters_unknown() -> None:
    text = render(families(), openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    parsed = {f.name: f for f in parse_openmetrics(text)}
    assert parsed["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].type == "unknown"
    assert (
        parsed["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].samples[0].name
        == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
    )
    assert parsed["gpuwarden_xid_errors"].type == "counter"
    assert parsed["gpuwarden_xid_errors"].samples[0].value == 2.0


def test_merging_hosts_gives_one_family_per_name() -> None:
    a, b = families(), families()
    merged = merge([a, b])
    names = [m.name for m in merged]
    assert len(names) == len(set(names))
    temp = next(m for m in merged if m.name == "DCGM_FI_DEV_GPU_TEMP")
    assert len(temp.samples) == 4


def test_openmetrics_is_rendered_once_per_snapshot() -> None:
    snapshot = Exposition.build(families())
    assert snapshot.openmetrics is snapshot.openmetrics
    assert snapshot.text == render(families())


def _gpu_family(labels: dict[str, str]) -> list[Metric]:
    temp = Metric("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge")
    temp.samples.append(Sample("DCGM_FI_DEV_GPU_TEMP", labels, 41.0))
    return [temp]


def test_label_texts_kept_between_renders_never_show_an_old_label_value() -> None:
    texts = LabelTexts()
    kept = {"gpu": "0", "pod": "train-1"}
    render(_gpu_family(kept), texts=texts)
    moved = {"gpu": "0", "pod": "train-2"}  # a new collection's dict: the GPU went to another pod
    assert render(_gpu_family(moved), texts=texts) == render(_gpu_family(moved))
    assert b'pod="train-2"' in render(_gpu_family(moved), texts=texts)


def test_label_texts_hold_only_the_label_sets_of_the_last_render() -> None:
    texts = LabelTexts()
    for pod in ("a", "b", "c"):
        render(_gpu_family({"gpu": "0", "pod": pod}), texts=texts)
    assert list(texts.last) == [(("gpu", "0"), ("pod", "c"))]
    render(_gpu_family({"gpu": "0", "pod": "c"}), openmetrics=True, texts=texts)  # reads, keeps nothing new
    assert list(texts.last) == [(("gpu", "0"), ("pod", "c"))]


def test_a_gpus_derived_label_sets_are_the_same_dicts_while_their_base_reads_the_same() -> None:
    gpu = Gpu(index=0, handle=None, uuid="GPU-1", labels={}, own={})
    first = gpu.label_sets({"gpu": "0", "pod": "a"}, "link", ("0", "1"))
    assert first == [{"gpu": "0", "pod": "a", "link": "0"}, {"gpu": "0", "pod": "a", "link": "1"}]
    again = gpu.label_sets({"gpu": "0", "pod": "a"}, "link", ("0", "1"))  # a new but equal base
    assert all(a is b for a, b in zip(again, first, strict=True))
    moved = gpu.label_sets({"gpu": "0", "pod": "b"}, "link", ("0", "1"))
    assert moved[1] is not first[1] and moved[1] == {"gpu": "0", "pod": "b", "link": "1"}
    assert first[1] == {"gpu": "0", "pod": "a", "link": "1"}  # what an earlier render formatted is unchanged
    fewer = gpu.label_sets({"gpu": "0", "pod": "b"}, "link", ("0",))  # the GPU now reports one link
    assert fewer == [{"gpu": "0", "pod": "b", "link": "0"}]
