# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The objects a cron_broadcast installs, as plain dicts. Pure apart from reading our own source files.

ServiceAccount, Role + RoleBinding (pods, pods/log, ConfigMaps in the
namespace), ClusterRole + ClusterRoleBinding (nodes: get, list, watch only),
the ConfigMap with the runner's code and input (runner.json), and the CronJob. Every object
carries our labels, which is how state=absent and the role find them.

A maintenance window with a time zone ships that zone's rules too (``ZONE_KEY``, the TZif file from
the controller's zone database): the runner's image needs no time zone database of its own.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import json
import os

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import inputs, runner, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import CLUSTER_IMAGES
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.events import NODE_EVENTS_NAMESPACE
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import LABEL_CRON
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY

CODE_ROOT = "/opt/nodeops"
RUNNER_ENTRY = runner.__name__
INPUT_KEY = "runner.json"
ZONE_KEY = runner.ZONE_FILE


def zone_file(name):
    """The TZif rules of time zone ``name`` from this controller's zone database (the system's, then the
    tzdata package's), or None. ``name`` was accepted by zoneinfo already (see limits.parse_window)."""
    import zoneinfo

    for root in zoneinfo.TZPATH:
        path = os.path.join(root, *name.split("/"))
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    try:
        from importlib import resources
        return resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).read_bytes()
    except Exception:   # noqa: BLE001 -- no tzdata package, or it lacks the zone
        return None


def labels(name):
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CRON: name}


def object_names(name, namespace):
    base = "nodeops-" + name
    return {"service_account": base, "role": base, "role_binding": base, "config_map": base + "-runner",
            "cron_job": name, "history": base + "-history",
            # Cluster-scoped: the namespace must be part of the name.
            "cluster_role": "nodeops-%s-%s-nodes" % (namespace, name),
            # In the default namespace, where events about Nodes live (node_events).
            "node_events_role": "nodeops-%s-%s-node-events" % (namespace, name)}


def runner_sources():
    """{path: source} of the runner and every module it imports (no hand list: see shipping.closure)."""
    return shipping.closure(RUNNER_ENTRY)


def _meta(name, namespace, cron_name):
    meta = {"name": name, "labels": labels(cron_name)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def build_objects(cron, opts, sources=None, zone=None):
    """Every object of one cron broadcast. ``cron`` holds the CronJob options, ``opts`` the validated
    broadcast options. Pure but for ``sources`` and ``zone`` (the window's TZif bytes), read when not given."""
    name, ns = cron["name"], opts["namespace"]
    names = object_names(name, ns)
    sources = sources if sources is not None else runner_sources()
    runner_input = {"cron": name, "options": opts,
                    "history": {"configmap": names["history"], "keep": cron["history_limit"]}}
    binary = {}
    time_zone = (opts.get("window") or {}).get("time_zone")
    if time_zone:
        tzif = zone if zone is not None else zone_file(time_zone)
        if tzif:
            binary[ZONE_KEY] = base64.b64encode(tzif).decode("ascii")
            runner_input["time_zone_file"] = ZONE_KEY
    data = dict((shipping.config_key(path), source) for path, source in sources.items())
    data[INPUT_KEY] = json.dumps(runner_input, sort_keys=True, indent=1)
    # The CronJob's pod template carries a hash of the code and input, so a change shows in its diff.
    digest = hashlib.sha256(json.dumps([data, binary], sort_keys=True).encode("utf-8")).hexdigest()[:16]
    items = shipping.mount_items(sources) + [{"key": INPUT_KEY, "path": INPUT_KEY}]
    items += [{"key": key, "path": key} for key in sorted(binary)]
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(names["service_account"], ns, name)}
    role_rules = [
        {"apiGroups": [""], "resources": ["pods"],
         "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        # Watched for a pod that can never start; created on the Nodes a run failed on (node_events).
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch", "create"]},
        # Run records (owners of the node pods) and the run history.
        {"apiGroups": [""], "resources": ["configmaps"],
         "verbs": ["create", "get", "list", "update", "patch", "delete", "deletecollection"]},
    ]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(names["role"], ns, name),
            "rules": role_rules}
    subject = [{"kind": "ServiceAccount", "name": names["service_account"], "namespace": ns}]
    role_binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                    "metadata": _meta(names["role_binding"], ns, name),
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names["role"]},
                    "subjects": subject}
    cluster_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": _meta(names["cluster_role"], None, name),
                    "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
                    # keep_images_in_cluster: read-only listing of the workloads' images, only when asked.
                    + (inputs.RBAC_RULES if CLUSTER_IMAGES in (opts["workload"].get("inputs") or []) else [])}
    cluster_binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                       "metadata": _meta(names["cluster_role"], None, name),
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                   "name": names["cluster_role"]},
                       "subjects": subject}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(names["config_map"], ns, name),
                  "data": data}
    if binary:
        config_map["binaryData"] = binary
    container = {
        "name": "runner", "image": cron["runner_image"],
        "command": ["python3", "-u", "-m", RUNNER_ENTRY],
        "env": [{"name": "PYTHONPATH", "value": CODE_ROOT},
                {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                {"name": "NODEOPS_RUNNER_INPUT", "value": CODE_ROOT + "/" + INPUT_KEY},
                {"name": "NODEOPS_JOB_NAME",
                 "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}}],
        "volumeMounts": [{"name": "runner", "mountPath": CODE_ROOT, "readOnly": True}],
        # The runner writes its summary there; a crash leaves its last log lines there instead.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65532,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    pod_spec = {"serviceAccountName": names["service_account"], "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 30, "containers": [container],
                "volumes": [{"name": "runner", "configMap": {"name": names["config_map"], "items": items}}]}
    if cron.get("runner_node_selector"):
        pod_spec["nodeSelector"] = dict(cron["runner_node_selector"])
    if cron.get("runner_tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in cron["runner_tolerations"]]
    cron_spec = {
        "schedule": cron["schedule"], "concurrencyPolicy": cron["concurrency_policy"], "suspend": cron["suspend"],
        "successfulJobsHistoryLimit": cron["successful_jobs_history_limit"],
        "failedJobsHistoryLimit": cron["failed_jobs_history_limit"],
        "jobTemplate": {"metadata": {"labels": labels(name)}, "spec": {
            # The runner decides the outcome; a retry would be a second run.
            "backoffLimit": 0,
            "activeDeadlineSeconds": opts["timeout"] + 300,
            "template": {"metadata": {"labels": labels(name), "annotations": {"nodeops.io/runner-digest": digest}},
                         "spec": pod_spec}}},
    }
    if cron.get("time_zone"):
        cron_spec["timeZone"] = cron["time_zone"]
    if cron.get("starting_deadline_seconds") is not None:
        cron_spec["startingDeadlineSeconds"] = cron["starting_deadline_seconds"]
    cron_job = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta(names["cron_job"], ns, name),
                "spec": cron_spec}
    node_events = []
    if opts.get("node_events", "failures") != "none" and ns != NODE_EVENTS_NAMESPACE:
        node_events = [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": dict(_meta(names["node_events_role"], NODE_EVENTS_NAMESPACE, name)),
             "rules": [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": dict(_meta(names["node_events_role"], NODE_EVENTS_NAMESPACE, name)),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names["node_events_role"]},
             "subjects": subject}]
    return [sa, role, role_binding, cluster_role, cluster_binding] + node_events + [config_map, cron_job]


def job_from_cron(cron_job, job_name):
    """A Job made from a CronJob, as ``kubectl create job --from=cronjob/...`` makes it."""
    template = cron_job["spec"]["jobTemplate"]
    meta = {"name": job_name, "namespace": cron_job["metadata"]["namespace"],
            "labels": dict(template.get("metadata", {}).get("labels") or {}),
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cron_job["metadata"]["name"],
                                 "uid": cron_job["metadata"]["uid"], "controller": True,
                                 "blockOwnerDeletion": True}]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]}
