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

from ansible_collections.nodeops.kubernetes.plugins.module_utils import broadcast_spec
from ansible_collections.nodeops.kubernetes.plugins.module_utils.selectors import (
    matches,
    taint_str,
    term_matches,
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


RECORD_PREFIX = "nodeops-run-"


def record_name(name, run_id):
    """The run record: the ConfigMap that owns a run's pods and holds the node script."""
    return RECORD_PREFIX + "%s-%s" % (name, run_id)


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


def template_constraints(spec):
    """What the pod's own template adds to where it may run: tolerations, nodeSelector and the
    required node-affinity terms. Plain dict; empty for presets. Pure.

    Eligibility is judged on the pod that will be created, as the Kruise BroadcastJob
    controller does, so a template that tolerates a taint or selects nodes is respected.
    """
    task = spec["task"]
    if task["kind"] != "pod_template":
        return {"tolerations": [], "node_selector": {}, "terms": []}
    pod_spec = task["template"].get("spec") or {}
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    return {"tolerations": list(pod_spec.get("tolerations") or []),
            "node_selector": dict(pod_spec.get("nodeSelector") or {}),
            "terms": list(required.get("nodeSelectorTerms") or [])}


def pod_tolerations(spec):
    """Every toleration the built pod carries: the template's, then the options'."""
    return template_constraints(spec)["tolerations"] + effective_tolerations(spec)


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


def skip_reason(node, spec, tolerations, constraints=None):
    """Why ``node`` is not eligible, or None. Checks run from most to least specific.

    ``tolerations`` are the built pod's (``pod_tolerations``); ``constraints`` the template's
    own (``template_constraints``).
    """
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = meta.get("name")
    for key, value in spec["node_selector"].items():
        if labels.get(key) != str(value):
            return "selector mismatch: node_selector %s=%s" % (key, value)
    if spec["label_requirements"] and not matches(spec["label_requirements"], labels):
        return "selector mismatch: node_label_selector"
    constraints = constraints or {}
    for key, value in sorted((constraints.get("node_selector") or {}).items()):
        if labels.get(key) != str(value):
            return "template nodeSelector %s=%s not matched" % (key, value)
    terms = constraints.get("terms") or []
    if terms and not any(term_matches(term, name, labels) for term in terms):
        return "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched"
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
    tolerations = pod_tolerations(spec)
    constraints = template_constraints(spec)
    eligible, skipped = [], {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        if spec["nodes"] is not None and name not in spec["nodes"]:
            continue  # an explicit list is the whole universe of the run; others are not reported
        reason = skip_reason(node, spec, tolerations, constraints)
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


def pin_affinity(affinity, node_name):
    """The template's affinity with the pod pinned to ``node_name``. Pure.

    The pin is ANDed into every required nodeSelectorTerm the template has (terms are ORed,
    so the pin must hold in each); preferred terms, podAffinity and podAntiAffinity are kept.
    """
    pin = {"key": "metadata.name", "operator": "In", "values": [node_name]}
    merged = copy.deepcopy(affinity or {})
    node_affinity = merged.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    required["nodeSelectorTerms"] = [dict(term, matchFields=list(term.get("matchFields") or []) + [pin])
                                     for term in terms]
    return merged


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
        volumes = copy.deepcopy(task.get("volumes") or [])
        if task.get("script"):
            key = broadcast_spec.SCRIPT_KEY
            volumes.append({"name": broadcast_spec.SCRIPT_MOUNT["name"], "configMap": {
                "name": record_name(spec["name"], run_id), "items": [{"key": key, "path": key}]}})
        if volumes:
            pod_spec["volumes"] = volumes
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
        pod_spec["affinity"] = pin_affinity(pod_spec.get("affinity"), node_name)
    metadata = {"name": pod_name(spec["name"], run_id, node_name), "namespace": spec["namespace"],
                "labels": labels, "annotations": annotations}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
