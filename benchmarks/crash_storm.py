"""The crash fuzz's storm (``crash_fuzz.py``): the steps a seed draws, and where its kills go.

A seed draws ``post`` steps (batches of XIDs, NodeDown, GPULost and thermal alerts on several GPUs of several
nodes, firing, resolving, firing again), matcher ``silence`` steps and their ``expire``; apart from those
(so that the rest of the storm is the one drawn without them) repeats of firing alerts with other advice
(``advise``: a ``reassessed`` update the webhook holds), incident silences (``isilence``) and their end
(``iexpire``); and, apart again, before which steps ``serve`` is killed and how (``kill_plan``).
"""

from __future__ import annotations

import random
from typing import Any

Step = tuple[str, dict[str, Any]]
NODES = ("n1", "n2", "n3", "n4")
GPUS = (0, 1, 2, 3)
KILLS = ("batch", "tick", "send", "start", "hold", "early")
ADVISE_AFTER = 0.3
"""How often a post is followed by an ``advise`` step."""


# --- the storm ---------------------------------------------------------------------------------------


def _alert(rng: random.Random) -> dict[str, str]:
    node = rng.choice(NODES)
    kind = rng.choice(("xid", "xid", "thermal", "node", "lost"))
    if kind == "node":
        return {"alertname": "NodeDown", "cluster": "c1", "node": node}
    gpu = str(rng.choice(GPUS))
    if kind == "lost":
        return {"alertname": "GPULost", "cluster": "c1", "Hostname": node, "gpu": gpu}
    if kind == "thermal":
        return {"alertname": "GPUTemperatureHigh", "cluster": "c1", "Hostname": node, "gpu": gpu}
    return {
        "alertname": "GPUXid",
        "cluster": "c1",
        "Hostname": node,
        "gpu": gpu,
        "xid": rng.choice(("13", "48", "79")),
    }


MUTE_AFTER = 0.5
"""How often an ``advise`` step is followed by an incident silence of the first alert it repeated."""
UNMUTE_AFTER = 0.15
"""How often, after a step, one of the incident silences set is expired (``iexpire``)."""
ADVICE = ("reset_gpu", "restart_node", "investigate", "drain_and_reset")
"""What an ``advise`` step's repeats recommend (their ``recommended_action`` annotation)."""


def _advise(rng: random.Random, firing: list[dict[str, str]]) -> Step:
    """A batch repeating one or two firing alerts with another ``recommended_action``: what their incident
    recommends changes and nothing else does, a ``reassessed`` update, which the webhook holds
    (``edit_interval_seconds``)."""
    picked = rng.sample(firing, min(len(firing), rng.randint(1, 2)))
    alerts = [{"labels": labels, "resolved": False, "advice": rng.choice(ADVICE)} for labels in picked]
    return "post", {"alerts": alerts}


def stream(seed: int, steps: int) -> list[Step]:
    """The seed's steps: ``post`` (a batch of alerts, each firing or resolved), ``silence`` (a matcher
    silence on one node, named by its comment) and ``expire`` (of a silence set earlier); after some posts
    (drawn apart, so the rest of the storm is the one drawn without them), a post that repeats firing
    alerts with other advice (``_advise``), maybe followed by a silence of its incident (``_muted``); and
    now and then the end of one of those (``iexpire``)."""
    rng = random.Random(seed)
    advice = random.Random(f"advice-{seed}")
    muting = random.Random(f"muting-{seed}")  # incident silences: drawn apart too
    muted: list[str] = []  # incident silences set and not expired
    out: list[Step] = []
    fired: list[dict[str, str]] = []
    firing: list[dict[str, str]] = []  # fired and not resolved since, each once
    silences: list[str] = []
    for k in range(steps):
        roll = rng.random()
        if roll < 0.1:
            name = f"crash-fuzz-{seed}-{k}"
            silences.append(name)
            out.append(("silence", {"comment": name, "node": rng.choice(NODES)}))
        elif roll < 0.15 and silences:
            out.append(("expire", {"comment": silences.pop(rng.randrange(len(silences)))}))
        else:
            batch = []
            for _ in range(rng.randint(1, 6)):
                resolve = fired and rng.random() < 0.35
                labels = rng.choice(fired) if resolve else _alert(rng)
                fired.append(labels)
                batch.append({"labels": labels, "resolved": bool(resolve)})
                firing = [a for a in firing if a != labels] + ([] if resolve else [labels])
            out.append(("post", {"alerts": batch}))
            if firing and advice.random() < ADVISE_AFTER:
                out.append(_advise(advice, firing))
                out += _muted(muting, out[-1], f"crash-fuzz-{seed}-{k}", muted, firing)
        if muted and muting.random() < UNMUTE_AFTER:
            out.append(("iexpire", {"name": muted.pop(muting.randrange(len(muted)))}))
    return out


def _muted(
    rng: random.Random, advised: Step, name: str, muted: list[str], firing: list[dict[str, str]]
) -> list[Step]:
    """Maybe silence the incident of an alert an ``advise`` step just repeated (``isilence``, named
    ``name``, noted in ``muted`` for a later ``iexpire``), and maybe then resolve the alerts ``firing`` on
    its node (its incident's, most often): the silence is told behind the update the webhook holds, and
    cannot take its place (the update goes early), and the resolution told under it is POSTed (to a
    receiver told of the incident), the one change told under a silence that is. The storm's ``firing``
    is left as it was (drawn apart): a later advice may fire one of them again."""
    if rng.random() >= MUTE_AFTER:
        return []
    labels = advised[1]["alerts"][0]["labels"]
    muted.append(name)
    steps: list[Step] = [("isilence", {"name": name, "labels": labels})]
    if rng.random() < 0.6:
        node = _node(labels)
        ended = [{"labels": alert, "resolved": True} for alert in firing if _node(alert) == node]
        steps.append(("post", {"alerts": ended}))
    return steps


def _node(labels: dict[str, str]) -> str:
    return labels.get("Hostname") or labels["node"]


def kill_plan(seed: int, steps: int, kills: int) -> dict[int, str]:
    """Before which steps serve is killed, and how: drawn apart from the stream."""
    rng = random.Random(f"kills-{seed}")
    at = rng.sample(range(steps), min(kills, steps))
    return {k: rng.choice(KILLS) for k in sorted(at)}
