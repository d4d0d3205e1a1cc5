"""The restart fuzz's streams (``restart_fuzz.py``): a seed's configuration, steps and restarts.

A seed draws the engine's configuration and a stream of steps: faults fired (XIDs, node and rack down,
NVLink, thermal, double-bit ECC, exporter stale, a service's error rate, stalled ranks), re-fires,
resolutions, flapping and slow cycles, what people do (acknowledge, note, silence, extend, resolve,
mitigate, approve, matcher silences), inventory refreshes and time passing or brought to a silence's end;
and, each drawn apart from the stream so that its steps stay the ones they were, the restarts, posts
without ``endsAt`` (``_timeout_posts``), records the journal accepts before a silence step acts
(``_accepted_before``) and alerts stored before their fire (``_stored_first``).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from alerting import scenarios as sc

Step = tuple[str, dict[str, Any]]
"""One action of a stream: its kind and arguments (plain values, so a stream prints as JSON)."""

RACKS = (1, 3, 7, 8)  # r01 holds the chat service, r07 and r08 the training job
NODES = (1, 2, 3)
GPUS = (0, 1, 2, 3)
XIDS = (13, 31, 43, 48, 79, 119)


# --- the stream -------------------------------------------------------------------------------------


def _gpu_labels(rng: random.Random) -> dict[str, str]:
    node = sc.node_name(rng.choice(RACKS), rng.choice(NODES))
    gpu = rng.choice(GPUS)
    return {"cluster": sc.CLUSTER, "Hostname": node, "gpu": str(gpu), "UUID": sc.gpu_uuid(node, gpu)}


def _rank_of(rack: int, node: int, gpu: int) -> int:
    return ((rack - 7) * sc.NODES_PER_RACK + node - 1) * sc.GPUS_PER_NODE + gpu


def _fault(rng: random.Random) -> list[tuple[dict[str, str], dict[str, str]]]:
    """One fault as the alerts (labels, annotations) it raises."""
    kind = rng.choice(
        ("xid", "xid", "node", "rack", "nvlink", "thermal", "dbe", "stale", "service", "stall", "stall")
    )
    gpu = _gpu_labels(rng)
    if kind == "xid":
        return [({**gpu, "alertname": "GPUXid", "xid": str(rng.choice(XIDS))}, {})]
    if kind in ("nvlink", "thermal", "dbe", "stale"):
        name = {
            "nvlink": "GPUNVLinkErrors",
            "thermal": "GPUTemperatureHigh",
            "dbe": "GPUDoubleBitEccErrors",
            "stale": "DCGMExporterStale",
        }[kind]
        return [({**gpu, "alertname": name}, {})]
    if kind == "node":
        node = gpu["Hostname"]
        alerts: list[tuple[dict[str, str], dict[str, str]]] = [
            ({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": node}, {})
        ]
        lost = rng.sample(GPUS, rng.randint(0, 2))
        return alerts + [
            ({"cluster": sc.CLUSTER, "alertname": "GPULost", "Hostname": node, "gpu": str(g)}, {})
            for g in lost
        ]
    if kind == "rack":
        rack = rng.choice(RACKS)
        alerts = [({"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": f"r{rack:02d}"}, {})]
        for n in rng.sample(NODES, rng.randint(1, 3)):
            alerts.append(
                ({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": sc.node_name(rack, n)}, {})
            )
        return alerts
    if kind == "service":
        labels = {"cluster": sc.CLUSTER, "alertname": "ChatHighErrorRate", "namespace": "serving"}
        ratio = rng.choice(("0.05", "0.3", "0.6"))
        return [({**labels, "service": "chat"}, {"error_ratio": ratio, "summary": "errors"})]
    ranks = {
        _rank_of(rng.choice((7, 8)), rng.choice(NODES), rng.choice(GPUS)) for _ in range(rng.randint(1, 4))
    }
    base = {"cluster": sc.CLUSTER, "alertname": "TrainingJobStalled", "slurm_job": "llm-70b"}
    return [({**base, "rank": str(r)}, {}) for r in sorted(ranks)]


def stream(seed: int, steps: int) -> tuple[dict[str, float], list[Step], list[int]]:
    """The seed's configuration, its steps, and the steps before which the second run restarts."""
    rng = random.Random(seed)
    config = {
        "announce_delay_seconds": rng.choice((0.0, 10.0, 30.0)),
        "quiet_period_seconds": rng.choice((60.0, 120.0)),
        "reopen_window_seconds": rng.choice((300.0, 86_400.0)),
        "flap_window_seconds": 300.0,
        "priority_settle_seconds": rng.choice((0.0, 120.0)),
    }
    # How old a held reopening's last page must be for it to remind: short enough that a stream's cycles
    # remind; drawn apart from the stream, so the steps are the ones they were without it.
    config["remind_after_seconds"] = random.Random(f"remind-after-{seed}").choice((0.0, 100.0, 300.0))
    fired: list[tuple[dict[str, str], dict[str, str]]] = []
    out: list[Step] = []
    for _ in range(steps):
        out.append(_step(rng, config, fired))
    restarts = set(rng.sample(range(1, steps), rng.randint(1, min(3, steps - 1)))) if steps > 1 else set()
    # A restart within one tick of a silence's end (or of its last half hour), in half of those steps: drawn
    # apart from the stream, so the steps are the ones they were without it.
    near = random.Random(f"near-silence-end-{seed}")
    restarts |= {
        k + 1 for k, (kind, _) in enumerate(out[:-1]) if kind == "to_silence" and near.random() < 0.5
    }
    restarts |= _timeout_posts(random.Random(f"timeout-posts-{seed}"), out)
    restarts |= _accepted_before(random.Random(f"accepted-before-{seed}"), out)
    _stored_first(random.Random(f"stored-first-{seed}"), out)
    return config, out, sorted(restarts)


_ACCEPTING = ("silence", "extend", "expire_silence", "to_silence")
"""Steps before whose action the journal may accept the next step's fire (``_accepted_before``)."""


def _accepted_before(rng: random.Random, out: list[Step]) -> set[int]:
    """Make some fires that follow a step of ``_ACCEPTING`` accepted by the journal before that step acts,
    drawn from ``rng`` (apart from the stream: its steps and their kinds stay the ones they were): the step
    accepts the record (``accept``: ``gap`` seconds before a silence is set, extended or expired; a
    ``to_silence`` within the last tick before its mark), and the fire applies it at its own time, alone or
    in a batch with a later record (``accepted``), an XID 79 on another GPU of the node of the incident the
    step names in half of them (``beside``). Returns the steps before which to restart: half of those fires
    (between the accept and the apply)."""
    restarts: set[int] = set()
    for k, ((kind, args), (after, then)) in enumerate(itertools.pairwise(out)):
        if kind not in _ACCEPTING or after != "fire" or "timeout" in then or rng.random() >= 0.8:
            continue
        args["accept"] = {"gap": rng.choice((1.0, 3.0)), "beside": rng.random() < 0.5}
        then["accepted"] = {"later": rng.random() < 0.5}
        if rng.random() < 0.5:
            restarts.add(k + 1)
    return restarts


def _stored_first(rng: random.Random, out: list[Step]) -> None:
    """Make some fires of several alerts find some of them, not the first, stored already (``stored_first``:
    posted resolved at the start of the step when the store does not hold them), drawn from ``rng`` (apart
    from the stream): they join in the order posted, and the store holds them in another."""
    for kind, args in out:
        if kind == "fire" and len(args["alerts"]) > 1 and "accepted" not in args and rng.random() < 0.4:
            later = range(1, len(args["alerts"]))
            args["stored_first"] = sorted(rng.sample(later, rng.randint(1, len(later))))


def _timeout_posts(rng: random.Random, out: list[Step]) -> set[int]:
    """Make some posts of ``out`` come as Alertmanager's API takes them without ``endsAt``, drawn from
    ``rng`` (apart from the stream: its steps and their kinds stay the ones they were): a fire without an
    end is posted without one in about half of them (``ingest.parse_postable_alerts`` ends it the resolve
    timeout after it was received, ``Alert.timeout``), half of those applied as the journal applies them, in
    a batch with a later record (the batch's time is the later one). In half of them, the next re-fire of
    one alert within 8 steps re-fires that alert instead, with an ``endsAt`` of its own: earlier than the
    timeout end, which stands (``spans.merged_ends``), or later, which a timeout post there next (the
    re-fire after, likewise) keeps, as a timeout. Returns the steps before which to restart: half of those
    explicit ends, so that the mark is read back from the store."""
    restarts: set[int] = set()
    follow: tuple[Any, str, int] | None = None  # (the alert, what its next post is, the step it was drawn)
    for k, (kind, args) in enumerate(out):
        if kind != "fire" or args["ends_in"] is not None:
            continue
        refire = len(args["alerts"]) == 1 and args["started"] == 0.0
        if follow is not None and refire and k - follow[2] <= 8 and rng.random() < 0.5:
            alert, then, _ = follow
            args["alerts"] = [alert]
            if then == "explicit":
                args["ends_in"] = rng.choice((30.0, 120.0, 900.0))  # resolve_timeout is 300 s
                if rng.random() < 0.5:
                    restarts.add(k)
                follow = (alert, "timeout", k) if args["ends_in"] > 300 else None
            else:
                args["timeout"] = "journal" if rng.random() < 0.5 else "api"
                follow = (alert, "explicit", k)
        elif rng.random() < 0.5:
            args["timeout"] = "journal" if rng.random() < 0.5 else "api"
            follow = (args["alerts"][0], "explicit", k)
    return restarts


def _step(
    rng: random.Random, config: dict[str, float], fired: list[tuple[dict[str, str], dict[str, str]]]
) -> Step:
    roll = rng.random()
    pick = rng.random()  # which incident, alert or silence an action names (of those there are then)
    if roll < 0.25 or not fired:
        alerts = _fault(rng)
        fired.extend(alerts)
        ttl = rng.choice((None, None, None, 60.0, 200.0))
        back = rng.choice((0.0, 0.0, 30.0, 90.0))
        return "fire", {"alerts": alerts, "ends_in": ttl, "started": back}
    if roll < 0.40:
        labels, annotations = fired[int(pick * len(fired))]
        if rng.random() < 0.3 and "error_ratio" in annotations:
            annotations = {**annotations, "error_ratio": rng.choice(("0.05", "0.3", "0.6"))}
        return "fire", {"alerts": [(labels, annotations)], "ends_in": None, "started": 0.0}
    if roll < 0.52:
        return "resolve", {"alerts": [fired[int(pick * len(fired))][0]]}
    if roll < 0.57:
        labels = fired[int(pick * len(fired))][0]
        if rng.random() < 0.5:
            # A slow cycle, too slow to flag as flapping: resolved for less than the quiet period, so its
            # quiet and firing again repeat (folded after the first: ``alerting.flapping.folded``), or for
            # longer, so it resolves and reopens each time (held as cycling after the first reopening:
            # ``alerting.flapping.repeats_reopening``). Which, from the pick's fraction: no new draw, so
            # the stream draws what it drew before.
            longer = (pick * len(fired)) % 1 >= 0.5
            off = config["quiet_period_seconds"] + (10 if longer else -10)
            return "cycle", {"labels": labels, "times": rng.randint(2, 4), "on": 100.0, "off": off}
        return "flap", {"labels": labels, "times": rng.randint(3, 7), "every": rng.choice((5.0, 20.0))}
    if roll < 0.61:
        return "to_silence", {
            "pick": pick,
            "mark": rng.choice(("end", "end", "half_hour")),
            "offset": rng.choice((-1.0, 0.0, 1.0)),
            "tick": rng.random() < 0.5,
        }
    if roll < 0.75:
        windows = (
            5.0,
            15.0,
            config["announce_delay_seconds"] + 1,
            config["quiet_period_seconds"] + 5,
            config["flap_window_seconds"] + 5,
            config["priority_settle_seconds"] + 5,
            config["reopen_window_seconds"] + 10,
        )
        weights = (6, 4, 3, 4, 2, 1, 1)
        return "wait", {"seconds": rng.choices(windows, weights)[0]}
    if roll < 0.90:
        action = rng.choice(("ack", "note", "silence", "extend", "resolve_incident", "mitigate", "approve"))
        return action, {"pick": pick, "seconds": rng.choice((60.0, 300.0, 900.0))}
    if roll < 0.96:
        if rng.random() < 0.3:
            return "expire_silence", {"pick": pick}
        labels = fired[int(pick * len(fired))][0]
        name = rng.choice(sorted(set(labels) - {"cluster"}))
        return "matcher_silence", {
            "matcher": f'{name}="{labels[name]}"',
            "seconds": rng.choice((60.0, 600.0)),
        }
    return "inventory", {"variant": rng.choice(("fleet", "spare", "kept", "gone"))}
