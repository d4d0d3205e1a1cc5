"""The kubelet pod-resources client, against a stand-in kubelet gRPC server on a unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from exporters.attribution import PodRef
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
