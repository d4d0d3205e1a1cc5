"""Fault injection vocabulary: fault kinds, the validated ``FaultSpec`` and the log record of a fault."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpuwarden.durations import spoken_seconds
from gpuwarden.errors import InputError
from gpuwarden.model import GpuRef, NodeRef
from gpuwarden.numerals import is_finite

# Kinds that need a GPU index, kinds aimed at a whole node, and kinds where a GPU is optional.
GPU_KINDS = (
    "xid",
    "ecc_sbe_storm",
    "thermal_runaway",
    "hw_thermal_slowdown",
    "nvlink_down",
    "nvlink_crc_burst",
    "hung",
    "straggler",
    "memory_leak",
    "gpu_lost",
    "reset_gpu",
)
NODE_KINDS = ("node_down", "reboot_node", "drain_node", "undrain_node")
OPTIONAL_GPU_KINDS = ("power_brake",)
FAULT_KINDS: tuple[str, ...] = GPU_KINDS + OPTIONAL_GPU_KINDS + NODE_KINDS
# Kinds that are recovery actions: they act once and stay in the log as instantaneous entries.
ACTION_KINDS = ("reset_gpu", "reboot_node", "drain_node", "undrain_node")

# Parameters each kind accepts (all numeric). ``duration`` (seconds) ends a fault on its own.
_COMMON_PARAMS = ("duration",)
KIND_PARAMS: dict[str, tuple[str, ...]] = {
    "xid": ("count", "action", "pending"),
    "ecc_sbe_storm": ("rate",),
    "thermal_runaway": ("rate",),
    "hw_thermal_slowdown": ("factor",),
    "power_brake": ("factor",),
    "nvlink_down": (),
    "nvlink_crc_burst": ("rate",),
    "hung": (),
    "straggler": ("factor",),
    "memory_leak": ("rate",),
    "gpu_lost": (),
    "node_down": (),
    "reset_gpu": (),
    "reboot_node": (),
    "drain_node": (),
    "undrain_node": (),
}
_ACTION_NO_PARAMS = frozenset(ACTION_KINDS)

# XIDs whose effect lasts until a reset, reboot or clear; other XIDs are one-off events.
PERSISTENT_XIDS = frozenset({48, 64, 79, 94, 95, 154})
MAX_XID_BURST = 10_000
ALREADY_ENDED = "already ended"  # why an ended fault is not cleared: `sim clear` reads it as done
MAX_RECOVERY_ACTION = 7  # NVML_GPU_RECOVERY_ACTION_SYSTEM_REBOOT, the last of NVML's enum


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One validated fault (or recovery action) to inject."""

    kind: str
    node: str
    gpu: int | None = None
    xid: int | None = None
    link: int | None = None
    params: Mapping[str, float] = field(default_factory=dict)

    def param(self, name: str, default: float) -> float:
        """A numeric parameter or its default."""
        return float(self.params.get(name, default))


@dataclass(slots=True)
class FaultRecord:
    """An injected fault as the log keeps it: ground truth for the anomaly evaluation."""

    id: str
    spec: FaultSpec
    started_at: float
    ended_at: float | None = None
    end_reason: str = ""
    planned_end: float | None = None

    @property
    def kind(self) -> str:
        """The fault kind."""
        return self.spec.kind

    @property
    def active(self) -> bool:
        """True until the fault ended (repaired, cleared or timed out)."""
        return self.ended_at is None

    @property
    def target(self) -> GpuRef | NodeRef:
        """The GPU or node the fault hit."""
        if self.spec.gpu is None:
            return NodeRef(self.spec.node)
        return GpuRef(self.spec.node, self.spec.gpu)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "kind": self.spec.kind,
            "node": self.spec.node,
            "gpu": self.spec.gpu,
            "xid": self.spec.xid,
            "link": self.spec.link,
            "params": dict(self.spec.params),
            "target": str(self.target),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
        }


def reaches(spec: FaultSpec, node: str, gpu: int) -> bool:
    """Whether the fault changes GPU ``gpu`` of ``node``: the GPU it names, or every GPU of its node when it
    names none (``node_down``, a node's ``power_brake``). No other: a GPU heats from its own power against a
    fixed ambient (no shared chassis air), and a downed or erroring NVLink shows only on the GPU it is
    injected on. A training job's other ranks feel a slow or stopped rank through the job, not the fault."""
    return spec.node == node and (spec.gpu is None or spec.gpu == gpu)


_FIELDS = ("kind", "node", "gpu", "xid", "link", "params")
MAX_GPU_INDEX = 255
"""The largest GPU index a fault may name (``sim inject --gpu`` takes the same bounds)."""
MAX_XID = 999
"""The largest XID code a fault may carry (NVIDIA's catalog ends below it)."""
MAX_NVLINK = 35
"""The largest NVLink index a fault may name."""
# Above every meaningful rate, factor or duration (a leak of 1e12 MiB/s, 30,000 years); 1e300 overflowed the
# model.
MAX_PARAM = 1e12


def _int_field(payload: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"must be an integer, got {value!r}", field=name)
    if not low <= value <= high:
        raise InputError(f"must be between {low} and {high}, got {value}", field=name)
    return value


def fault_params(kind: str, raw: Any) -> dict[str, float]:
    """The parameters of a fault of ``kind`` (a valid kind), checked; ``InputError`` naming the first bad
    one (``sim inject --param`` checks each with this before posting, as the exporter will)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InputError("must be an object of name -> number", field="params")
    allowed = _COMMON_PARAMS + KIND_PARAMS[kind] if kind not in _ACTION_NO_PARAMS else ()
    out: dict[str, float] = {}
    for key, value in raw.items():
        if key not in allowed:
            valid = ", ".join(allowed) or "none"
            raise InputError(f"unknown parameter {key!r} for kind {kind}; valid: {valid}", field="params")
        seconds = spoken_seconds(value) if key == "duration" and isinstance(value, str) else None
        if seconds is not None:  # `--param duration=5min`: said as config validate says it
            raise InputError(
                f"{value!r} is not a number; write the seconds as a number: {seconds:g}",
                field=f"params.{key}",
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not is_finite(value):
            raise InputError(f"must be a finite number, got {value!r}", field=f"params.{key}")
        # What the parameter means first: "between 0 and 1e+12" told `duration=-5` and `count=-1` a bound
        # that 0 itself breaks.
        if key == "duration" and not 0 < value <= MAX_PARAM:  # the fleet reads 0 as no duration: never ended
            forever = "; leave it out for a fault that lasts until it is cleared (gpuwarden sim clear ID:"
            raise InputError(
                f"must be more than 0 seconds and at most {MAX_PARAM:g}, got {value:g}"
                + (f"{forever} DELETE /sim/faults/ID)" if value <= 0 else ""),
                field="params.duration",
            )
        _check_meaning(str(key), value)
        if not 0 <= value <= MAX_PARAM:
            raise InputError(f"must be between 0 and {MAX_PARAM:g}, got {value}", field=f"params.{key}")
        out[str(key)] = float(value)
    return out


# What a fault's parameter means past "a number from 0 to MAX_PARAM": taken as that, a factor of 0 did
# nothing (the effect reads 0 as off) while the fault was listed active, a factor over 1 sped the GPU up,
# an action of 1e12 was exported wrapped to 3567587328, and a count of 2.5 was 2 XIDs.
_FACTOR = "more than 0 and less than 1 (the share of its clock or speed the GPU keeps)"
_WHOLE = {"count": (1, MAX_XID_BURST), "action": (0, MAX_RECOVERY_ACTION), "pending": (0, 1)}
_WHOLE_SAYS = {
    "action": " (NVML's recovery action: 0 none, 1 GPU reset, 2 node reboot, ... 7 system reboot)",
    "pending": " (1: a row remap pending, 0: none)",
}


def _check_meaning(key: str, value: float) -> None:
    """Refuse a parameter value in bounds but meaningless for ``key`` (``InputError``)."""
    if key == "factor" and not 0 < value < 1:
        raise InputError(f"must be {_FACTOR}, got {value:g}", field="params.factor")
    if key == "rate" and value <= 0:
        raise InputError(
            f"must be more than 0 (a rate of 0 changes nothing), got {value:g}", field="params.rate"
        )
    if key in _WHOLE:
        low, high = _WHOLE[key]
        if value != int(value) or not low <= value <= high:
            raise InputError(
                f"must be a whole number from {low} to {high}{_WHOLE_SAYS.get(key, '')}, got {value:g}",
                field=f"params.{key}",
            )


class TargetChecker(Protocol):
    """What ``parse_fault`` needs from a fleet to check that a target exists."""

    def check_target(self, spec: FaultSpec) -> object:
        """Raise ``InputError`` when the spec's node, GPU or link does not exist."""
        ...


def parse_fault(payload: Mapping[str, Any], fleet: TargetChecker | None = None) -> FaultSpec:
    """Validate a fault payload such as ``{"kind": "xid", "node": "node-01", "gpu": 3, "xid": 79}``.

    Raises ``InputError`` naming the field and the fix. With ``fleet``, an unknown node, GPU or link is
    reported too, listing valid ones (``Fleet.inject`` checks that again in any case).
    """
    if not isinstance(payload, Mapping):
        raise InputError(
            'the fault must be a JSON object such as {"kind": "hung", "node": "node-01", "gpu": 0}'
        )
    for key in payload:
        if key not in _FIELDS:
            raise InputError(f"unknown field; valid fields: {', '.join(_FIELDS)}", field=str(key))
    kind = payload.get("kind")
    if kind is None:
        raise InputError(f"required; one of: {', '.join(FAULT_KINDS)}", field="kind")
    if not isinstance(kind, str) or kind not in FAULT_KINDS:
        raise InputError(f"unknown kind {kind!r}; valid kinds: {', '.join(FAULT_KINDS)}", field="kind")
    node = payload.get("node")
    if node is None:
        raise InputError(f'required for kind {kind}, e.g. "node-01"', field="node")
    if not isinstance(node, str) or not node:
        raise InputError(f'must be a node name such as "node-01", got {node!r}', field="node")
    gpu = _int_field(payload, "gpu", 0, MAX_GPU_INDEX)
    if kind in GPU_KINDS and gpu is None:
        raise InputError(f"required for kind {kind}: the GPU index on the node, e.g. 0", field="gpu")
    if kind in NODE_KINDS and gpu is not None:
        raise InputError(f"kind {kind} acts on the whole node; remove gpu", field="gpu")
    xid = _int_field(payload, "xid", 1, MAX_XID)
    if kind == "xid" and xid is None:
        raise InputError("required for kind xid: the XID code, e.g. 79", field="xid")
    if kind != "xid" and xid is not None:
        raise InputError(f"only valid for kind xid, not {kind}; remove it", field="xid")
    link = _int_field(payload, "link", 0, MAX_NVLINK)
    if link is not None and kind not in ("nvlink_down", "nvlink_crc_burst"):
        raise InputError(f"only valid for nvlink_down and nvlink_crc_burst, not {kind}", field="link")
    if kind in ("nvlink_down", "nvlink_crc_burst") and link is None:
        link = 0
    params = fault_params(kind, payload.get("params"))
    spec = FaultSpec(kind=kind, node=node, gpu=gpu, xid=xid, link=link, params=params)
    if fleet is not None:
        fleet.check_target(spec)
    return spec
