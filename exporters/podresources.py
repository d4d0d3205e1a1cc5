"""The kubelet pod-resources API (gRPC ``v1.PodResourcesLister/List`` on a unix socket): GPU -> pod.

The kubelet tells which container each GPU (device id = GPU or MIG UUID, as NVIDIA's device plugin
reports it) is assigned to; that gives the ``namespace``, ``pod`` and ``container`` labels. The response
is decoded by hand (a few fields of four messages) rather than with generated protobuf code.

Messages used (kubelet ``pkg/apis/podresources/v1``)::

    ListPodResourcesResponse { repeated PodResources pod_resources = 1; }
    PodResources            { string name = 1; string namespace = 2;
                              repeated ContainerResources containers = 3; }
    ContainerResources      { string name = 1; repeated ContainerDevices devices = 2; ... }
    ContainerDevices        { string resource_name = 1; repeated string device_ids = 2; ... }
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc

from exporters.attribution import PodRef
from gpuwarden.clock import Clock
from gpuwarden.errors import SourceError

logger = logging.getLogger(__name__)

LIST_METHOD = "/v1.PodResourcesLister/List"
GPU_RESOURCE_PREFIXES = ("nvidia.com/",)


@dataclass(frozen=True, slots=True)
class ContainerDevices:
    """Devices of one resource assigned to a container."""

    resource_name: str
    device_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ContainerResources:
    """One container and its devices."""

    name: str
    devices: tuple[ContainerDevices, ...]


@dataclass(frozen=True, slots=True)
class PodResources:
    """One pod and its containers."""

    name: str
    namespace: str
    containers: tuple[ContainerResources, ...]


# --- protobuf wire format (only what these messages need) ------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) for each field; length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated field")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _strings(buf: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for number, wire, value in _fields(buf):
        if wire == 2 and isinstance(value, bytes):
            out.setdefault(number, []).append(value)
    return out


def _str(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def decode_list_response(buf: bytes) -> list[PodResources]:
    """Decode a ``ListPodResourcesResponse``."""
    pods = []
    for pod_buf in _strings(buf).get(1, []):
        pod = _strings(pod_buf)
        containers = []
        for c_buf in pod.get(3, []):
            container = _strings(c_buf)
            devices = []
            for d_buf in container.get(2, []):
                dev = _strings(d_buf)
                resource = _str(dev.get(1, [b""])[0])
                devices.append(ContainerDevices(resource, tuple(_str(i) for i in dev.get(2, []))))
            name = _str(container.get(1, [b""])[0])
            containers.append(ContainerResources(name, tuple(devices)))
        pods.append(PodResources(_str(pod.get(1, [b""])[0]), _str(pod.get(2, [b""])[0]), tuple(containers)))
    return pods


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _enc_bytes(number: int, payload: bytes) -> bytes:
    return _enc_varint(number << 3 | 2) + _enc_varint(len(payload)) + payload


def encode_list_response(pods: Sequence[PodResources]) -> bytes:
    """Encode a ``ListPodResourcesResponse`` (for stand-in kubelets in tests and demos)."""
    out = bytearray()
    for pod in pods:
        body = _enc_bytes(1, pod.name.encode()) + _enc_bytes(2, pod.namespace.encode())
        for container in pod.containers:
            cbody = _enc_bytes(1, container.name.encode())
            for dev in container.devices:
                dbody = _enc_bytes(1, dev.resource_name.encode())
                for device_id in dev.device_ids:
                    dbody += _enc_bytes(2, device_id.encode())
                cbody += _enc_bytes(2, dbody)
            body += _enc_bytes(3, cbody)
        out += _enc_bytes(1, body)
    return bytes(out)


# --- the client ---------------------------------------------------------------------------------------


def list_pod_resources(socket_path: str, timeout: float = 2.0) -> list[PodResources]:
    """Call ``List`` on the kubelet socket once."""
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        call = channel.unary_unary(
            LIST_METHOD, request_serializer=lambda _: b"", response_deserializer=lambda raw: raw
        )
        try:
            raw = call(None, timeout=timeout)
        except grpc.RpcError as exc:
            raise SourceError(f"pod-resources List failed: {exc.code().name}", source=socket_path) from exc
    try:
        return decode_list_response(raw)
    except ValueError as exc:
        raise SourceError(f"pod-resources response is malformed: {exc}", source=socket_path) from exc


class PodResourcesMap:
    """GPU UUID -> containers, refreshed from the kubelet at most every ``refresh_seconds``."""

    def __init__(self, socket_path: str, clock: Clock, *, refresh_seconds: float = 30.0) -> None:
        self.socket_path = socket_path
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._fetched_at: float | None = None
        self._by_device: dict[str, tuple[PodRef, ...]] = {}
        self._lock = threading.Lock()
        self.errors = 0
        """Failed reads, exported as ``gpuwarden_pod_resources_errors_total`` (it was kept here alone)."""
        self._failing: str | None = None  # the error last said, until a read works again

    def refresh(self) -> None:
        """Fetch now; on failure keep the previous map and count the error, said once until it changes
        (a kubelet down for a day was a warning every 30 s)."""
        try:
            pods = list_pod_resources(self.socket_path)
        except SourceError as exc:
            self.errors += 1
            if str(exc) != self._failing:
                logger.warning(
                    "pod-resources refresh failed error=%s; pod labels stay as last read, failures counted"
                    " in gpuwarden_pod_resources_errors_total",
                    exc,
                )
            self._failing = str(exc)
            return
        finally:
            self._fetched_at = self._clock.monotonic()
        if self._failing is not None:
            logger.info("pod-resources answering again socket=%s", self.socket_path)
            self._failing = None
        by_device: dict[str, list[PodRef]] = {}
        for pod in pods:
            for container in pod.containers:
                for dev in container.devices:
                    if not dev.resource_name.startswith(GPU_RESOURCE_PREFIXES):
                        continue
                    for device_id in dev.device_ids:
                        ref = PodRef(pod.namespace, pod.name, container.name)
                        by_device.setdefault(device_id, []).append(ref)
        self._by_device = {k: tuple(v) for k, v in by_device.items()}

    def pods_for(self, uuid: str) -> Sequence[PodRef]:
        """Containers holding this GPU (refreshing first when the map is old)."""
        with self._lock:
            now = self._clock.monotonic()
            if self._fetched_at is None or now - self._fetched_at >= self._refresh_seconds:
                self.refresh()
        return self._by_device.get(uuid, ())
