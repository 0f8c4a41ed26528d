# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The objects a cron_broadcast installs, as plain dicts. Pure apart from reading our own source files.

ServiceAccount, Role + RoleBinding (pods, pods/log, events, ConfigMaps in the namespace; see
``runner_rules``), ClusterRole + ClusterRoleBinding (nodes: get, list, watch), the immutable,
content-addressed ConfigMap with the runner's code and input (runner.json), and the CronJob, whose
pod checks that ConfigMap against the digest in its own spec before it runs anything. Every object
carries our labels, which is how state=absent and the role find them.

A maintenance window with a time zone ships that zone's rules too (``ZONE_KEY``, the TZif file from
the controller's zone database): the runner's image needs no time zone database of its own.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import hashlib
import json
import os

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import freeze, inputs, pods, pressure, runner, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._presets.base import CLUSTER_IMAGES
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.events import NODE_EVENTS_NAMESPACE
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import (
    KIND_RUNNER_CODE, LABEL_CRON, LABEL_KIND)
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY

CODE_ROOT = "/opt/nodeops"
RUNNER_ENTRY = runner.__name__
INPUT_KEY = "runner.json"
ZONE_KEY = runner.ZONE_FILE
# Set by the node_maintenance role (through ``labels``) on what it installs: what it may remove later.
LABEL_INSTALLED_BY = "nodeops.io/installed-by"
# SIGTERM's grace period for the runner: the abort's parallel log reads and deletes (cancel.ABORT_SECONDS), then
# the clean-up, the events and the history write, each a few requests.
RUNNER_GRACE_SECONDS = 60
# The digest of the runner's manifest: the pod checks its code against it (the CronJob is where it is set).
RUNNER_DIGEST = "nodeops.io/runner-digest"


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


def name_hash(namespace, name):
    """Eight hex digits of (namespace, name): names made of both cannot collide ('a-b'/'c' and 'a'/'b-c')."""
    return hashlib.sha256(("%s/%s" % (namespace, name)).encode("utf-8")).hexdigest()[:8]


def object_names(name, namespace, runner_digest=None):
    """The names of one cron broadcast's objects. The runner's code ConfigMap is content-addressed
    (``runner_digest``): immutable, a change of code is a new ConfigMap."""
    base = "nodeops-" + name
    unique = name_hash(namespace, name)
    names = {"service_account": base, "role": base, "role_binding": base, "config_map_prefix": base + "-runner-",
             "cron_job": name, "history": base + "-history",
             # Cluster-scoped, or in the default namespace: the namespace and a hash of both are in the name.
             "cluster_role": "nodeops-%s-%s-%s-nodes" % (namespace, name, unique),
             "node_events_role": "nodeops-%s-%s-%s-node-events" % (namespace, name, unique)}
    if runner_digest:
        names["config_map"] = names["config_map_prefix"] + runner_digest[:10]
    return names


def runner_sources():
    """{path: source} of the runner and every module it imports (no hand list: see shipping.closure)."""
    return shipping.closure(RUNNER_ENTRY)


def _meta(name, namespace, cron_name):
    meta = {"name": name, "labels": labels(cron_name)}
    if namespace:
        meta["namespace"] = namespace
    return meta


def runner_files(cron, opts, sources=None, zone=None):
    """What the runner reads, as mounted under CODE_ROOT: {path: text or bytes}. Its code, its input
    (``runner.json``) and the window's time zone rules (TZif bytes) when it has one."""
    sources = sources if sources is not None else runner_sources()
    names = object_names(cron["name"], opts["namespace"])
    runner_input = {"cron": cron["name"], "options": opts,
                    "history": {"configmap": names["history"], "keep": cron["history_limit"]}}
    if cron.get("freeze"):   # only when set: a cron broadcast without freezes keeps its runner digest
        runner_input["freeze"] = cron["freeze"]
    files = dict(("%s/%s" % (shipping.PACKAGE_DIR, path), source) for path, source in sources.items())
    time_zone = (opts.get("window") or {}).get("time_zone")
    if time_zone:
        tzif = zone if zone is not None else zone_file(time_zone)
        if tzif:
            files[ZONE_KEY] = tzif
            runner_input["time_zone_file"] = ZONE_KEY
    files[INPUT_KEY] = json.dumps(runner_input, sort_keys=True, indent=1)
    return files


def runner_config_map(cron, opts, files):
    """The runner's code and input: an immutable ConfigMap named after its manifest's digest. Returns
    (the ConfigMap, the digest the runner pod checks it against)."""
    manifest, digest = shipping.manifest(files)
    names = object_names(cron["name"], opts["namespace"], digest)
    data, binary = {shipping.MANIFEST_KEY: manifest}, {}
    for path, content in files.items():
        if isinstance(content, bytes):
            binary[shipping.config_key(path)] = base64.b64encode(content).decode("ascii")
        else:
            data[shipping.config_key(path)] = content
    meta = _meta(names["config_map"], opts["namespace"], cron["name"])
    meta["labels"][LABEL_KIND] = KIND_RUNNER_CODE
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "immutable": True, "data": data}
    if binary:
        config_map["binaryData"] = binary
    return config_map, digest


# What the runner may do in its namespace, and why. ConfigMaps: it creates run records (names it chooses
# at run time, so no resourceNames) and their immutable code, patches the records as the run goes and
# deletes them, one by one; it replaces only its own history (``update`` is limited to that name). That
# ``patch`` reaches every mutable ConfigMap of the namespace: code it runs is never one (immutable, and
# checked by digest).
def runner_rules(history_name):
    return [
        {"apiGroups": [""], "resources": ["pods"],
         "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        # Watched for a pod that can never start; created on the Nodes a run failed on (node_events).
        {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch", "create"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [history_name], "verbs": ["update"]},
    ]


def rbac_objects(name, ns, opts):
    """ServiceAccount, its Role and ClusterRole with their bindings, and the node-events Role (default ns)."""
    names = object_names(name, ns)
    rbac = "rbac.authorization.k8s.io/v1"
    subject = [{"kind": "ServiceAccount", "name": names["service_account"], "namespace": ns}]

    def binding(kind, meta, role_kind, role_name):
        return {"apiVersion": rbac, "kind": kind, "metadata": meta, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}}

    cluster_rules = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
    if CLUSTER_IMAGES in (opts["workload"].get("inputs") or []):
        # keep_images_in_cluster: read-only listing of the workloads' images, only when asked.
        cluster_rules += inputs.RBAC_RULES
    if pressure.critical_possible(opts):
        # disk_pressure (or the user's critical class): a node under DiskPressure gets a critical pod only if it fits
        # beside the node's pods (engine.no_room):
        # listing them is read-only, and cluster-wide as pods of any namespace may run there.
        pod_list = {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
        if pod_list not in cluster_rules:
            cluster_rules.append(pod_list)
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(names["service_account"], ns, name)},
        {"apiVersion": rbac, "kind": "Role", "metadata": _meta(names["role"], ns, name),
         "rules": runner_rules(names["history"])},
        binding("RoleBinding", _meta(names["role_binding"], ns, name), "Role", names["role"]),
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": _meta(names["cluster_role"], None, name),
         "rules": cluster_rules},
        binding("ClusterRoleBinding", _meta(names["cluster_role"], None, name), "ClusterRole", names["cluster_role"]),
    ]
    if opts.get("node_events", "failures") != "none" and ns != NODE_EVENTS_NAMESPACE:
        meta = _meta(names["node_events_role"], NODE_EVENTS_NAMESPACE, name)
        objects += [{"apiVersion": rbac, "kind": "Role", "metadata": dict(meta),
                     "rules": [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]},
                    binding("RoleBinding", dict(meta), "Role", names["node_events_role"])]
    return objects


def runner_pod_spec(cron, config_map, paths, digest):
    """The runner's pod: it checks its files (``paths``, as mounted) against ``digest`` (see
    _node/boot.py), then runs its code from the checked copy."""
    names = object_names(cron["name"], config_map["metadata"]["namespace"])
    items = [{"key": shipping.MANIFEST_KEY, "path": shipping.MANIFEST_KEY}]
    items += [{"key": shipping.config_key(path), "path": path} for path in sorted(paths)]
    container = {
        "name": "runner", "image": cron["runner_image"],
        "command": shipping.boot_command(digest, CODE_ROOT, "", RUNNER_ENTRY, python_flags=("-u",)),
        "env": [{"name": "NODEOPS_JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
                dict(pods.CODE_TMP_ENV)],
        "volumeMounts": [{"name": "runner", "mountPath": CODE_ROOT, "readOnly": True}, dict(pods.CODE_TMP_MOUNT)],
        # The runner writes its summary there; a crash (or a failed integrity check) leaves its last log lines.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65532,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    pod_spec = {"serviceAccountName": names["service_account"], "restartPolicy": "Never",
                "terminationGracePeriodSeconds": RUNNER_GRACE_SECONDS, "containers": [container],
                "volumes": [{"name": "runner", "configMap": {"name": config_map["metadata"]["name"], "items": items}},
                            copy.deepcopy(pods.CODE_TMP_VOLUME)]}
    if cron.get("runner_node_selector"):
        pod_spec["nodeSelector"] = dict(cron["runner_node_selector"])
    if cron.get("runner_tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in cron["runner_tolerations"]]
    return pod_spec


def cron_job(cron, opts, pod_spec, digest):
    name = cron["name"]
    cron_spec = {
        "schedule": cron["schedule"], "concurrencyPolicy": cron["concurrency_policy"], "suspend": cron["suspend"],
        "successfulJobsHistoryLimit": cron["successful_jobs_history_limit"],
        "failedJobsHistoryLimit": cron["failed_jobs_history_limit"],
        "jobTemplate": {"metadata": {"labels": labels(name)}, "spec": {
            # The runner decides the outcome; a retry would be a second run.
            "backoffLimit": 0,
            "activeDeadlineSeconds": opts["timeout"] + 300,
            "template": {"metadata": {"labels": labels(name), "annotations": {RUNNER_DIGEST: digest}},
                         "spec": pod_spec}}},
    }
    if cron.get("time_zone"):
        cron_spec["timeZone"] = cron["time_zone"]
    if cron.get("starting_deadline_seconds") is not None:
        cron_spec["startingDeadlineSeconds"] = cron["starting_deadline_seconds"]
    meta = _meta(object_names(name, opts["namespace"])["cron_job"], opts["namespace"], name)
    if cron.get("freeze"):
        # For broadcast_info's next_runs (the runner reads its own copy, in runner.json).
        meta["annotations"] = {freeze.ANNOTATION: json.dumps(cron["freeze"], sort_keys=True, separators=(",", ":"))}
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": cron_spec}


def build_objects(cron, opts, sources=None, zone=None):
    """Every object of one cron broadcast, in the order they are applied (the CronJob last). ``cron`` holds
    the CronJob options, ``opts`` the validated broadcast options. Pure but for ``sources`` and ``zone``
    (the window's TZif bytes), read when not given."""
    files = runner_files(cron, opts, sources, zone)
    config_map, digest = runner_config_map(cron, opts, files)
    pod_spec = runner_pod_spec(cron, config_map, files, digest)
    objects = rbac_objects(cron["name"], opts["namespace"], opts) + [config_map, cron_job(cron, opts, pod_spec, digest)]
    for obj in objects:
        # The user's labels never replace ours: ours are how state=absent and the role find what is theirs.
        obj["metadata"]["labels"] = dict(cron.get("labels") or {}, **obj["metadata"]["labels"])
    return objects


def runner_pod(desired):
    """The CronJob's pod template as a Pod to dry-run. Pure.

    Without its ServiceAccount: that is one of the objects written later, admission refuses a pod
    whose ServiceAccount does not exist, and Pod Security does not look at it.
    """
    cron_job = [o for o in desired if o["kind"] == "CronJob"][0]
    template = cron_job["spec"]["jobTemplate"]["spec"]["template"]
    meta = template.get("metadata") or {}
    spec = copy.deepcopy(template["spec"])
    spec.pop("serviceAccountName", None)
    return {"apiVersion": "v1", "kind": "Pod", "spec": spec,
            "metadata": {"name": cron_job["metadata"]["name"] + "-preflight",
                         "namespace": cron_job["metadata"]["namespace"],
                         "labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {})}}


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
