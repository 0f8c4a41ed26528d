# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide where a broadcast runs. Pure: no API calls.

``plan(nodes, pods, opts, run_id)`` is keyed by node name: it returns the eligible nodes, the
skipped ones with a reason, the pods that already exist for this run (to adopt on resume) and the
stray pods to delete. Eligibility is judged on the pod that will be created (``pods``), as the
Kruise BroadcastJob controller does.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming, pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import LABEL_RUN
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.pods import CONTROL_PLANE_LABELS, pod_tolerations, template_constraints
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.selectors import (
    matches,
    taint_str,
    term_matches,
    untolerated_taints,
)


def is_ready(node):
    """Whether a Node's Ready condition is True (a slim node's too)."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def slim_node(node):
    """The part of a Node that ``skip_reason`` reads. Lists of thousands of nodes are kept this small."""
    meta = node.get("metadata") or {}
    opts = node.get("spec") or {}
    conditions = (node.get("status") or {}).get("conditions") or []
    slim = {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}},
            "spec": {"unschedulable": opts.get("unschedulable"), "taints": opts.get("taints") or []},
            "status": {"conditions": [{"type": c.get("type"), "status": c.get("status")}
                                      for c in conditions if c.get("type") in ("Ready", pressure.CONDITION)]}}
    if pressure.under_pressure(node):
        slim["status"].update(pressure.slim_status(node))   # what pressure.room reads, for these nodes only
    return slim


def skip_reason(node, opts, tolerations, constraints=None):
    """Why ``node`` is not eligible, or None. Checks run from most to least specific.

    ``tolerations`` are the built pod's (``pod_tolerations``); ``constraints`` the template's
    own (``template_constraints``).
    """
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    name = meta.get("name")
    for key, value in opts["node_selector"].items():
        if labels.get(key) != str(value):
            return "selector mismatch: node_selector %s=%s" % (key, value)
    if opts["label_requirements"] and not matches(opts["label_requirements"], labels):
        return "selector mismatch: node_label_selector"
    constraints = constraints or {}
    for key, value in sorted((constraints.get("node_selector") or {}).items()):
        if labels.get(key) != str(value):
            return "template nodeSelector %s=%s not matched" % (key, value)
    terms = constraints.get("terms") or []
    if terms and not any(term_matches(term, name, labels) for term in terms):
        return "template affinity requiredDuringSchedulingIgnoredDuringExecution not matched"
    if any(k in labels for k in CONTROL_PLANE_LABELS) and not opts["include_control_plane"]:
        return "control plane"
    if (node.get("spec") or {}).get("unschedulable") and not opts["include_cordoned"]:
        return "cordoned"
    if not is_ready(node) and not opts["include_not_ready"]:
        return "NotReady"
    if pressure.under_pressure(node):
        why = pressure.refusal(opts)   # else its pod is critical, and tolerates the disk-pressure taint
        if why:
            return why
    # Taints the node lifecycle controller puts on cordoned/NotReady nodes are
    # reported as such above; what is left is the user's.
    blocking = untolerated_taints((node.get("spec") or {}).get("taints"), tolerations)
    if blocking:
        return "untolerated taint %s" % ", ".join(taint_str(t) for t in blocking)
    return None


def plan(nodes, pods, opts, run_id):
    """Plan a run. Pure.

    nodes: Node dicts. pods: the pods already labeled with this broadcast.
    Returns {"eligible": [names], "skipped": {name: reason}, "existing": {node: pod},
    "to_delete": [pod names], "pod_names": {node: pod name}, "ready": {node: bool}, "fallen": [node],
    "had_pod": [node], "pressure": {node: slim node}} where ``existing`` are this run's pods to adopt,
    ``to_delete`` this run's pods on nodes that are no longer eligible, and ``pressure`` the nodes of the run
    (eligible or skipped) under DiskPressure (``pressure.py``).
    """
    tolerations = pod_tolerations(opts)
    constraints = template_constraints(opts)
    eligible, skipped, pressured = [], {}, {}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        if opts["nodes"] is not None and name not in opts["nodes"]:
            continue  # an explicit list is the whole universe of the run; others are not reported
        if pressure.under_pressure(node):
            pressured[name] = node
        reason = skip_reason(node, opts, tolerations, constraints)
        if reason:
            skipped[name] = reason
        else:
            eligible.append(name)
    if opts["nodes"] is not None:
        known = {n["metadata"]["name"] for n in nodes}
        for missing in opts["nodes"]:
            if missing not in known:
                skipped[missing] = "no such node"
    # This run's pods (a resumed run) go with the node their annotation names, whatever their name: names are
    # made per run (naming.pod_names), and a node that joined or left since could shift them. A pod of a node
    # no longer eligible, or a second pod of one node, is deleted. (Before the annotation, by the plain name.)
    eligible_set, plain = set(eligible), dict((naming.pod_name(opts["name"], run_id, n), n) for n in eligible)
    ready = dict((n["metadata"]["name"], is_ready(n)) for n in nodes)
    existing, to_delete, fallen, had_pod = {}, [], [], set()
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        meta = pod["metadata"]
        if (meta.get("labels") or {}).get(LABEL_RUN) != run_id:
            continue
        node = (meta.get("annotations") or {}).get(naming.ANNOTATION_NODE) or plain.get(meta["name"])
        # A resumed run's health gate: a node whose pod of this run finished and that is NotReady now went
        # NotReady after it (as far as anyone can tell), whether it is still eligible or not.
        ran_on = node or (pod.get("spec") or {}).get("nodeName")
        had_pod.update(n for n in (node, (pod.get("spec") or {}).get("nodeName")) if n)
        if ((pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and ready.get(ran_on) is False
                and ran_on not in fallen):
            fallen.append(ran_on)
        if node in eligible_set and node not in existing:
            existing[node] = pod
        elif not meta.get("deletionTimestamp"):
            to_delete.append(meta["name"])
    names = naming.pod_names(opts["name"], run_id, eligible,
                             keep=dict((node, pod["metadata"]["name"]) for node, pod in existing.items()))
    # Every node of the cluster, Ready or not, and the nodes this run's finished pods left NotReady: the health
    # gate's starting point (limits.health_check). Every node a pod of this run was for or ran on (``had_pod``): a
    # resumed run never follows one of them (observe.follow), whose pod it may be deleting.
    return {"eligible": eligible, "skipped": skipped, "existing": existing, "to_delete": sorted(to_delete),
            "pod_names": names, "ready": ready, "fallen": fallen, "had_pod": sorted(had_pod), "pressure": pressured}
