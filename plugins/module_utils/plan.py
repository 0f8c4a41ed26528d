# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide where a broadcast runs, and build its pods. Pure: no API calls.

``plan(nodes, pods, spec, run_id)`` is keyed by node name: it returns the
eligible nodes, the skipped ones with a reason, the pods that already exist
for this run (to adopt on resume) and the stray pods to delete.
``build_pod`` returns the Pod for one (run, node); its name is derived from
both, so a node can never hold two pods of one run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import hashlib

from ansible_collections.nodeops.kubernetes.plugins.module_utils.selectors import (
    matches,
    taint_str,
    untolerated_taints,
)

MANAGED_BY = "nodeops.kubernetes"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_BROADCAST = "nodeops.io/broadcast"
LABEL_RUN = "nodeops.io/run-id"
LABEL_NODE_HASH = "nodeops.io/node-hash"
LABEL_NODE = "nodeops.io/node"
ANNOTATION_NODE = "nodeops.io/node"
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")

# Tolerations a broadcast adds for the nodes the user opted into, as the
# DaemonSet controller does for its pods.
CONTROL_PLANE_TOLERATIONS = [{"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in CONTROL_PLANE_LABELS]
CORDON_TOLERATION = {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
NOT_READY_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
]


def node_hash(node_name):
    return hashlib.sha256(node_name.encode("utf-8")).hexdigest()[:8]


def pod_name(name, run_id, node_name):
    return "%s-%s-%s" % (name, run_id, node_hash(node_name))


def run_selector(name, run_id=None):
    sel = "%s=%s,%s=%s" % (LABEL_MANAGED_BY, MANAGED_BY, LABEL_BROADCAST, name)
    if run_id:
        sel += ",%s=%s" % (LABEL_RUN, run_id)
    return sel


def effective_tolerations(spec):
    tolerations = list(spec["tolerations"])
    if spec["tolerate_all_taints"]:
        tolerations.append({"operator": "Exists"})
    if spec["include_control_plane"]:
        tolerations.extend(CONTROL_PLANE_TOLERATIONS)
    if spec["include_cordoned"]:
        tolerations.append(CORDON_TOLERATION)
    if spec["include_not_ready"]:
        tolerations.extend(NOT_READY_TOLERATIONS)
    return tolerations


def _ready(node):
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def slim_node(node):
    """The part of a Node that ``skip_reason`` reads. Lists of thousands of nodes are kept this small."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    conditions = (node.get("status") or {}).get("conditions") or []
    return {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
            "spec": {"unschedulable": spec.get("unschedulable"), "taints": spec.get("taints") or []},
            "status": {"conditions": [{"type": c.get("type"), "status": c.get("status")}
                                      for c in conditions if c.get("type") == "Ready"]}}


def skip_reason(node, spec, tolerations):
    """Why ``node`` is not eligible, or None. Checks run from most to least specific."""
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = meta.get("name")
    for key, value in spec["node_selector"].items():
        if labels.get(key) != str(value):
            return "selector mismatch: node_selector %s=%s" % (key, value)
    if spec["label_requirements"] and not matches(spec["label_requirements"], labels):
        return "selector mismatch: node_label_selector"
    if any(k in labels for k in CONTROL_PLANE_LABELS) and not spec["include_control_plane"]:
        return "control plane"
    if (node.get("spec") or {}).get("unschedulable") and not spec["include_cordoned"]:
        return "cordoned"
    if not _ready(node) and not spec["include_not_ready"]:
        return "NotReady"
    # Taints the node lifecycle controller puts on cordoned/NotReady nodes are
    # reported as such above; what is left is the user's.
    blocking = untolerated_taints((node.get("spec") or {}).get("taints"), tolerations)
    if blocking:
        return "untolerated taint %s" % ", ".join(taint_str(t) for t in blocking)
    return None


def plan(nodes, pods, spec, run_id):
    """Plan a run. Pure.

    nodes: Node dicts. pods: the pods already labeled with this broadcast.
    Returns {"eligible": [names], "skipped": {name: reason}, "existing": {node: pod},
    "to_delete": [pod names]} where ``existing`` are this run's pods to adopt
    and ``to_delete`` this run's pods on nodes that are no longer eligible.
    """
    tolerations = effective_tolerations(spec)
    eligible, skipped = [], {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        if spec["nodes"] is not None and name not in spec["nodes"]:
            continue  # an explicit list is the whole universe of the run; others are not reported
        reason = skip_reason(node, spec, tolerations)
        if reason:
            skipped[name] = reason
        else:
            eligible.append(name)
    if spec["nodes"] is not None:
        known = {n["metadata"]["name"] for n in nodes}
        for missing in spec["nodes"]:
            if missing not in known:
                skipped[missing] = "no such node"
    wanted = {pod_name(spec["name"], run_id, n): n for n in eligible}
    existing, to_delete = {}, []
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get(LABEL_RUN) != run_id:
            continue
        node = wanted.get(pod["metadata"]["name"])
        if node is not None:
            existing[node] = pod
        elif not pod["metadata"].get("deletionTimestamp"):
            to_delete.append(pod["metadata"]["name"])
    return {"eligible": eligible, "skipped": skipped, "existing": existing, "to_delete": sorted(to_delete)}


def build_pod(spec, run_id, node_name, owner=None, active_deadline=None):
    """The Pod for one node of one run. Pure."""
    task = spec["task"]
    labels = dict(spec["pod_labels"])
    labels.update({LABEL_MANAGED_BY: MANAGED_BY, LABEL_BROADCAST: spec["name"], LABEL_RUN: run_id,
                   LABEL_NODE_HASH: node_hash(node_name)})
    if len(node_name) <= 63:
        # Node names are DNS subdomains (up to 253 characters); most fit a label value.
        labels[LABEL_NODE] = node_name
    annotations = dict(spec["pod_annotations"])
    annotations[ANNOTATION_NODE] = node_name
    if task["kind"] == "pod_template":
        template = copy.deepcopy(task["template"])
        pod_spec = template.get("spec") or {}
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {}, **labels)
        annotations = dict(tmeta.get("annotations") or {}, **annotations)
    else:
        container = copy.deepcopy(task["container"])
        if spec["resources"]:
            container["resources"] = copy.deepcopy(spec["resources"])
        pod_spec = {"containers": [container]}
        if task.get("host_pid"):
            pod_spec["hostPID"] = True
        if task.get("volumes"):
            pod_spec["volumes"] = copy.deepcopy(task["volumes"])
    pod_spec["restartPolicy"] = spec["restart_policy"]
    pod_spec.setdefault("terminationGracePeriodSeconds", 10)
    pod_spec["tolerations"] = list(pod_spec.get("tolerations") or []) + effective_tolerations(spec)
    if spec["priority_class_name"]:
        pod_spec["priorityClassName"] = spec["priority_class_name"]
    if spec["service_account"]:
        pod_spec["serviceAccountName"] = spec["service_account"]
    if task["kind"] == "preset":
        # Preset pods need no API access.
        pod_spec["automountServiceAccountToken"] = False
    if active_deadline:
        # If the module dies, the pod still stops when the run would have timed out.
        pod_spec["activeDeadlineSeconds"] = int(active_deadline)
    if spec["pin"] == "node_name":
        pod_spec["nodeName"] = node_name
    else:
        pod_spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}}
    metadata = {"name": pod_name(spec["name"], run_id, node_name), "namespace": spec["namespace"],
                "labels": labels, "annotations": annotations}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
