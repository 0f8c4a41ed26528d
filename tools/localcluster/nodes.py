"""Manifests for simulated (kwok) nodes that look like real ones.

Shared by ``cluster.py up`` and the pytest helpers, so both make the same
kind of node. Standard library only.
"""

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
CONTROL_PLANE_NAME = "kwok-control-plane"
WORKER_PREFIX = "kwok-worker-"
ZONES = ("zone-a", "zone-b", "zone-c")
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def node_manifest(name, zone="zone-a", instance_type="sim.large", cpu="8", memory="32Gi", pods="110",
                  labels=None, taints=None, control_plane=False, unschedulable=False):
    """Return a Node the kwok controller will manage, with realistic labels and capacity."""
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": zone,
        "topology.kubernetes.io/region": "local",
        "node.kubernetes.io/instance-type": instance_type,
        "type": "kwok",
    }
    node_taints = list(taints or [])
    if control_plane:
        node_labels["node-role.kubernetes.io/control-plane"] = ""
        node_taints.append(dict(CONTROL_PLANE_TAINT))
    node_labels.update(labels or {})
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    spec = {}
    if node_taints:
        spec["taints"] = node_taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": {KWOK_ANNOTATION: "fake"}},
        "spec": spec,
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


def default_node_set(workers):
    """One tainted control-plane node plus ``workers`` workers spread over three zones."""
    nodes = [node_manifest(CONTROL_PLANE_NAME, instance_type="sim.xlarge", control_plane=True)]
    for i in range(1, workers + 1):
        nodes.append(node_manifest("%s%d" % (WORKER_PREFIX, i), zone=ZONES[(i - 1) % len(ZONES)]))
    return nodes


def is_ready(node):
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False
