# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Pod of one (run, node), and the tolerations and placement it carries. Pure: no API calls."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import naming, pressure, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import CLUSTER_IMAGES, CLUSTER_IMAGES_FILE
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import (
    ANNOTATION_NODE,
    LABEL_BROADCAST,
    LABEL_NODE,
    LABEL_NODE_HASH,
    LABEL_RUN,
)

# The preset pods run the node script (``_node`` and the presets) from their run's code ConfigMap,
# mounted here as packages; their argv carries only the integrity check and the manifest's digest (a
# pod carrying the script would count against etcd at thousands of nodes).
NODE_ENTRY = shipping.PACKAGE + "._node.main"
NODE_ROOT = "/opt/nodeops-node"
# Where _node/boot.py copies the checked code to: a volume of the pod's own, so that a read-only root
# filesystem (a common policy) does not stop the node script.
CODE_TMP_MOUNT = {"name": "nodeops-tmp", "mountPath": "/nodeops-tmp"}
CODE_TMP_VOLUME = {"name": "nodeops-tmp", "emptyDir": {"sizeLimit": "64Mi"}}
CODE_TMP_ENV = {"name": "TMPDIR", "value": CODE_TMP_MOUNT["mountPath"]}
# Where a failed container's log tail goes: its termination message (see run.finished_log).
TERMINATION_POLICY = "FallbackToLogsOnError"
# Mounted at the package's own path, so that the volume's items stay short.
NODE_MOUNT = {"name": "nodeops-node", "mountPath": NODE_ROOT + "/" + shipping.PACKAGE_DIR, "readOnly": True}
_NODE_FILES = {}
_NODE_CODE = {}   # node_code without gathered inputs, per (preset, whether it takes cluster_images)
# The cluster_images input, in the run's code ConfigMap, laid next to the node script.
CLUSTER_IMAGES_PATH = "_node/" + CLUSTER_IMAGES_FILE


def node_files(preset):
    """{path: source} of the node script and ``preset``'s module, with all they import. Read once."""
    if preset not in _NODE_FILES:
        _NODE_FILES[preset] = shipping.closure(NODE_ENTRY, "%s._presets.%s" % (shipping.PACKAGE, preset))
    return dict(_NODE_FILES[preset])


def node_code(workload, cluster_images=None):
    """What a run's node pods read, checked by digest: {"files": {path below the package: content},
    "manifest": its text, "digest": the manifest's SHA-256}. ``cluster_images`` is the input the engine
    gathered (a JSON text) when the preset asks for it. Pure but for reading our own source."""
    wants_images = CLUSTER_IMAGES in (workload.get("inputs") or [])
    key = (workload["preset"], wants_images)
    if cluster_images is None and key in _NODE_CODE:
        # build_pod asks for every pod of a run: hash the script once, not once per node.
        return copy.deepcopy(_NODE_CODE[key])
    files = node_files(workload["preset"])
    if wants_images:
        files[CLUSTER_IMAGES_PATH] = cluster_images if cluster_images is not None else "[]"
    text, digest = shipping.manifest(files)
    code = {"files": files, "manifest": text, "digest": digest}
    if cluster_images is None:
        _NODE_CODE[key] = copy.deepcopy(code)
    return code


def code_config_map(opts, run_id, code, owner):
    """The run's code as an immutable ConfigMap owned by the run record (the garbage collector removes
    it with the record). Immutable, so that no one can change it under a running pod. Pure."""
    data = dict((shipping.config_key(path), content) for path, content in code["files"].items())
    data[shipping.MANIFEST_KEY] = code["manifest"]
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_BROADCAST: opts["name"], LABEL_RUN: run_id,
              naming.LABEL_KIND: naming.KIND_RUN_CODE}
    return {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": data,
            "metadata": {"name": naming.code_name(opts["name"], run_id), "namespace": opts["namespace"],
                         "labels": labels, "ownerReferences": [owner]}}


def node_command(digest):
    """The node pod's argv: check the mounted code against ``digest``, then run the node script."""
    return shipping.boot_command(digest, NODE_MOUNT["mountPath"], shipping.PACKAGE_DIR, NODE_ENTRY)


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


def effective_tolerations(opts):
    tolerations = list(opts["tolerations"])
    if opts["tolerate_all_taints"]:
        tolerations.append({"operator": "Exists"})
    if opts["include_control_plane"]:
        tolerations.extend(CONTROL_PLANE_TOLERATIONS)
    if opts["include_cordoned"]:
        tolerations.append(CORDON_TOLERATION)
    if opts["include_not_ready"]:
        tolerations.extend(NOT_READY_TOLERATIONS)
    if pressure.relieves(opts):
        # A pod that frees disk space tolerates the disk-pressure taint, and no other (pressure.py).
        tolerations.append(dict(pressure.TOLERATION))
    return tolerations


def template_constraints(opts):
    """What the pod's own template adds to where it may run: tolerations, nodeSelector and the
    required node-affinity terms. Plain dict; empty for presets. Pure.

    Eligibility is judged on the pod that will be created, as the Kruise BroadcastJob
    controller does, so a template that tolerates a taint or selects nodes is respected.
    """
    workload = opts["workload"]
    if workload["kind"] != "pod_template":
        return {"tolerations": [], "node_selector": {}, "terms": []}
    pod_spec = workload["template"].get("spec") or {}
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    return {"tolerations": list(pod_spec.get("tolerations") or []),
            "node_selector": dict(pod_spec.get("nodeSelector") or {}),
            "terms": list(required.get("nodeSelectorTerms") or [])}


def pod_tolerations(opts):
    """Every toleration the built pod carries: the template's, then the options'."""
    return template_constraints(opts)["tolerations"] + effective_tolerations(opts)


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


def build_pod(opts, run_id, node_name, owner=None, active_deadline=None, code_digest=None, name=None,
              pressured=False):
    """The Pod for one node of one run. Pure. ``code_digest`` is the run's ``node_code`` digest; without
    it (a plan, a dry run) the digest of the node script with empty inputs stands in. ``name``: the pod's name
    from the run's ``naming.pod_names`` (default: the node's own, ``naming.pod_name``). ``pressured``: the node
    is under DiskPressure, so a pod that frees disk space is a critical one (``pressure.priority_class``)."""
    workload = opts["workload"]
    labels = dict(opts["pod_labels"])
    labels.update({LABEL_MANAGED_BY: MANAGED_BY, LABEL_BROADCAST: opts["name"], LABEL_RUN: run_id,
                   # The pod name's node part (``naming.pod_names``: its node's hash, another where two collide).
                   LABEL_NODE_HASH: (name or naming.pod_name(opts["name"], run_id, node_name)).rsplit("-", 1)[1]})
    if len(node_name) <= 63:
        # Node names are DNS subdomains (up to 253 characters); most fit a label value.
        labels[LABEL_NODE] = node_name
    annotations = dict(opts["pod_annotations"])
    annotations[ANNOTATION_NODE] = node_name
    if workload["kind"] == "pod_template":
        template = copy.deepcopy(workload["template"])
        pod_spec = template.get("spec") or {}
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {}, **labels)
        annotations = dict(tmeta.get("annotations") or {}, **annotations)
    else:
        container = copy.deepcopy(workload["container"])
        if opts["resources"]:
            container["resources"] = copy.deepcopy(opts["resources"])
        pod_spec = {"containers": [container]}
        if workload.get("host_pid"):
            pod_spec["hostPID"] = True
        volumes = copy.deepcopy(workload.get("volumes") or [])
        if workload.get("node_script"):
            code = node_code(workload)
            items = shipping.mount_items(code["files"], under_package=True)
            items.append({"key": shipping.MANIFEST_KEY, "path": shipping.MANIFEST_KEY})
            volumes.append({"name": NODE_MOUNT["name"], "configMap": {
                "name": naming.code_name(opts["name"], run_id), "items": items}})
            volumes.append(copy.deepcopy(CODE_TMP_VOLUME))
            container["command"] = node_command(code_digest or code["digest"])
            if workload.get("init_containers"):
                pod_spec["initContainers"] = [dict(copy.deepcopy(init), command=list(container["command"]))
                                              for init in workload["init_containers"]]
        if volumes:
            pod_spec["volumes"] = volumes
    for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        # A failed container's last log lines reach the pod status: its tail costs no log read.
        container.setdefault("terminationMessagePolicy", TERMINATION_POLICY)
    pod_spec["restartPolicy"] = opts["restart_policy"]
    pod_spec.setdefault("terminationGracePeriodSeconds", 10)
    pod_spec["tolerations"] = list(pod_spec.get("tolerations") or []) + effective_tolerations(opts)
    priority_class = pressure.priority_class(opts, pressured)
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    if opts["service_account"]:
        pod_spec["serviceAccountName"] = opts["service_account"]
    if workload["kind"] == "preset":
        # Preset pods need no API access.
        pod_spec["automountServiceAccountToken"] = False
    if active_deadline:
        # If the module dies, the pod still stops when the run would have timed out.
        pod_spec["activeDeadlineSeconds"] = int(active_deadline)
    if opts["pin"] == "node_name":
        pod_spec["nodeName"] = node_name
    else:
        pod_spec["affinity"] = pin_affinity(pod_spec.get("affinity"), node_name)
    metadata = {"name": name or naming.pod_name(opts["name"], run_id, node_name), "namespace": opts["namespace"],
                "labels": labels, "annotations": annotations}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
