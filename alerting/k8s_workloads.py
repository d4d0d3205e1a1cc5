"""Which workload runs a Kubernetes pod: its controller (Deployment or Argo Rollout through the ReplicaSet,
StatefulSet, Job and training operators) or the labels of KServe, LeaderWorkerSet, JobSet and Kubeflow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuwarden.model import WorkloadKind, WorkloadRef

SERVICE_OWNERS = frozenset({"StatefulSet", "ReplicaSet"})
TRAINING_OWNERS = frozenset({"Job", "JobSet", "PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob"})
# Labels that name the training job above a pod's direct owner (a JobSet's Job, an operator's replica).
TRAINING_NAME_LABELS = ("jobset.sigs.k8s.io/jobset-name", "training.kubeflow.org/job-name")
SERVICE_ALIAS_LABELS = ("app.kubernetes.io/name", "app")
HASH_LABELS = ("pod-template-hash", "rollouts-pod-template-hash")  # Deployment's, Argo Rollout's
LWS_NAME, LWS_GROUP = "leaderworkerset.sigs.k8s.io/name", "leaderworkerset.sigs.k8s.io/group-index"
KSERVE_NAME = "serving.kserve.io/inferenceservice"
NOTEBOOK_NAME = "notebook-name"  # Kubeflow notebooks: one-replica StatefulSets, not services


def _controller(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    refs = meta.get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return str(ref.get("kind", "")), str(ref.get("name", ""))
    return (str(refs[0].get("kind", "")), str(refs[0].get("name", ""))) if refs else None


def workload_of(pod: Mapping[str, Any]) -> tuple[WorkloadRef, str, tuple[str, ...]]:
    """The workload that runs a pod, the unit of it the pod belongs to, and the other names it answers to."""
    meta = pod.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name", ""))
    labels = meta.get("labels") or {}
    aliases = tuple(dict.fromkeys(str(labels[k]) for k in SERVICE_ALIAS_LABELS if labels.get(k)))
    if labels.get(LWS_NAME):  # leader and workers of a group serve one replica together
        group = f"group {labels.get(LWS_GROUP, name)}"
        return WorkloadRef(WorkloadKind.INFERENCE_SERVICE, namespace, str(labels[LWS_NAME])), group, aliases
    if labels.get(KSERVE_NAME):  # one Deployment per revision: the InferenceService is the service
        return WorkloadRef(WorkloadKind.INFERENCE_SERVICE, namespace, str(labels[KSERVE_NAME])), name, aliases
    owner = _controller(meta)
    if labels.get(NOTEBOOK_NAME) or owner is None:
        return WorkloadRef(WorkloadKind.POD, namespace, name), name, ()
    kind, owner_name = owner
    if kind in TRAINING_OWNERS or kind.endswith("Job"):
        job = next((str(labels[k]) for k in TRAINING_NAME_LABELS if labels.get(k)), owner_name)
        return WorkloadRef(WorkloadKind.TRAINING_JOB, namespace, job), name, ()
    if kind == "ReplicaSet":  # a Deployment's or Rollout's ReplicaSet is "<name>-<pod-template-hash>"
        for label in HASH_LABELS:
            suffix = f"-{labels.get(label, '')}"
            if labels.get(label) and owner_name.endswith(suffix):
                owner_name = owner_name[: -len(suffix)]
                break
    if kind in SERVICE_OWNERS:
        return WorkloadRef(WorkloadKind.INFERENCE_SERVICE, namespace, owner_name), name, aliases
    return WorkloadRef(WorkloadKind.POD, namespace, name), name, ()  # DaemonSets and the rest
