"""The kubelet pod-resources client, against a stand-in kubelet gRPC server on a unix socket."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from exporters.attribution import PodRef
from exporters.nvml_collector import NvmlCollector
from exporters.podresources import (
    ContainerDevices,
    ContainerResources,
    PodResources,
    PodResourcesMap,
    decode_list_response,
    encode_list_response,
    list_pod_resources,
)
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from gpuwarden.sim import SimNvml, build_fleet
from tests.exporters.nvml_scrapes import scrape

GPU_A = "GPU-1c980d69-06a7-4247-b474-c5aac56d5bd5"
GPU_B = "GPU-4545864a-7c4f-4485-b964-50f71cabddeb"
PODS = [
    PodResources(
        "vllm-0",
        "llm",
        (
            ContainerResources(
                "server",
                (
                    ContainerDevices("nvidia.com/gpu", (GPU_A,)),
                    ContainerDevices("example.com/nic", ("eth1",)),
                ),
            ),
            ContainerResources("sidecar", ()),
        ),
    ),
    PodResources(
        "trainer-3",
        "research",
        (ContainerResources("main", (ContainerDevices("nvidia.com/gpu", (GPU_B,)),)),),
    ),
]


class Kubelet:
    """A stand-in kubelet: answers v1.PodResourcesLister/List with whatever ``pods`` holds."""

    def __init__(self) -> None:
        self.pods = list(PODS)
        self.calls = 0

    def list(self, request: bytes, context: Any) -> bytes:
        self.calls += 1
        return encode_list_response(self.pods)


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[Kubelet, str]]:
    stand_in = Kubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "v1.PodResourcesLister",
        {
            "List": grpc.unary_unary_rpc_method_handler(
                stand_in.list, request_deserializer=lambda b: b, response_serializer=lambda b: b
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    socket_path = str(tmp_path / "kubelet.sock")
    server.add_insecure_port(f"unix://{socket_path}")
    server.start()
    try:
        yield stand_in, socket_path
    finally:
        server.stop(grace=None).wait()


def test_the_wire_format_round_trips() -> None:
    assert decode_list_response(encode_list_response(PODS)) == PODS


def test_list_over_a_unix_socket_returns_every_pod(kubelet: tuple[Kubelet, str]) -> None:
    _, socket_path = kubelet
    assert list_pod_resources(socket_path) == PODS


def test_gpus_map_to_the_container_that_holds_them(kubelet: tuple[Kubelet, str]) -> None:
    stand_in, socket_path = kubelet
    clock = FakeClock()
    pods = PodResourcesMap(socket_path, clock, refresh_seconds=30)
    assert list(pods.pods_for(GPU_A)) == [PodRef("llm", "vllm-0", "server")]
    assert list(pods.pods_for(GPU_B)) == [PodRef("research", "trainer-3", "main")]
    assert list(pods.pods_for("eth1")) == []  # not a GPU resource
    stand_in.pods = []
    clock.advance(10)
    assert list(pods.pods_for(GPU_A)) == [PodRef("llm", "vllm-0", "server")]  # not refreshed yet
    clock.advance(30)
    assert list(pods.pods_for(GPU_A)) == []
    assert stand_in.calls == 2


def test_an_unreachable_kubelet_is_a_source_error_and_the_map_keeps_going(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.sock")
    with pytest.raises(SourceError, match="pod-resources List failed"):
        list_pod_resources(missing, timeout=0.5)
    pods = PodResourcesMap(missing, FakeClock())
    assert list(pods.pods_for(GPU_A)) == []
    assert pods.errors == 1


def test_a_malformed_response_is_rejected() -> None:
    with pytest.raises(ValueError, match="truncated"):
        decode_list_response(b"\x0a\x05ab")


def test_a_kubelet_not_answering_is_counted_in_a_metric_and_said_once_until_it_answers(
    tmp_path: Path, kubelet: tuple[Kubelet, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Its failures were counted in memory alone, no metric, and warned of at every refresh (every 30 s)."""
    _, socket_path = kubelet
    clock = FakeClock()
    fleet = build_fleet(1, 2, seed=7, clock=clock)
    nvml = SimNvml(fleet, "node-01")
    nvml.nvmlInit()
    pods = PodResourcesMap(str(tmp_path / "gone.sock"), clock)  # the kubelet restarting: no socket
    collector = NvmlCollector(nvml, hostname="node-01", pods=pods)
    host = {"Hostname": "node-01"}
    with caplog.at_level(logging.INFO, logger="exporters.podresources"):
        for _ in range(3):
            registry = scrape(collector)
            clock.advance(31)
        assert registry.get_sample_value("gpuwarden_pod_resources_errors_total", host) == 3.0
        pods.socket_path = socket_path  # back
        registry = scrape(collector)
    assert registry.get_sample_value("gpuwarden_pod_resources_errors_total", host) == 3.0
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert "pod-resources refresh failed" in said[0] and "gone.sock" in said[0]
    assert said[1] == f"pod-resources answering again socket={socket_path}"
