# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dangling_job_ttl's scheduled sweep (``sweep_schedule``): the objects it installs, as plain dicts (pure
apart from reading our own source files), and its removal.

A ServiceAccount whose rights are the sweep's and nothing more (``sweep_rules``): list Jobs, and delete
them (``sweep_action=delete``) or patch them (``set_ttl``), in the included namespaces when they are given
(a Role and RoleBinding in each), else cluster-wide (a ClusterRole and ClusterRoleBinding); and get and
update its own history ConfigMap, which the install creates. The runner's code and input in an immutable,
content-addressed ConfigMap, checked by the pod against the digest in the CronJob before it runs anything,
and the CronJob. Every object carries our labels and ``LABEL_SWEEP`` (the policy name).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import hashlib
import json

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pods, shipping
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import LABEL_KIND
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron.install import mounted_by_active_jobs
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling import sweep_runner
from ansible_collections.nodeops.kubernetes.plugins.module_utils._dangling.policy import LABEL_POLICY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import apply
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Forbidden

CODE_ROOT = "/opt/nodeops"
RUNNER_ENTRY = sweep_runner.__name__
INPUT_KEY = "runner.json"
LABEL_SWEEP = "nodeops.io/dangling-job-sweep"
KIND_SWEEP_CODE = "sweep-code"
KIND_SWEEP_HISTORY = "sweep-history"
RUNNER_DIGEST = "nodeops.io/runner-digest"
# A CronJob's name is at most 52 characters; ours is <policy_name>-sweep.
POLICY_NAME_MAX = 52 - len("-sweep")
# SIGTERM's grace: the writes in flight finish (none is retried once a stop is asked; a list is retried for
# 10 s at most), then the history is written (its update retried for up to 30 s).
GRACE_SECONDS = 90
RBAC = "rbac.authorization.k8s.io/v1"
WRITE_VERB = {"delete": "delete", "set_ttl": "patch"}


def labels(policy_name):
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SWEEP: policy_name, LABEL_POLICY: policy_name}


def object_names(policy_name, namespace, digest=None):
    """The names of one scheduled sweep's objects (``namespace``: where its CronJob runs)."""
    base = policy_name + "-sweep"
    unique = hashlib.sha256(("%s/%s" % (namespace, policy_name)).encode("utf-8")).hexdigest()[:8]
    names = {"service_account": base, "cron_job": base, "history": base + "-history",
             "history_role": base + "-history", "code_prefix": base + "-code-",
             # In each included namespace, which sweeps of the same policy name in other namespaces may include
             # too: the namespace and a hash of both are in the name, so two never share (or remove) one.
             "jobs_role": "%s-jobs-%s-%s" % (base, namespace, unique),
             # Cluster-scoped: the namespace and a hash of both are in the name.
             "cluster_role": "nodeops-%s-%s-%s" % (namespace, base, unique)}
    if digest:
        names["code"] = names["code_prefix"] + digest[:10]
    return names


def _meta(name, namespace, policy_name, kind=None):
    meta = {"name": name, "labels": labels(policy_name)}
    if namespace:
        meta["namespace"] = namespace
    if kind:
        meta["labels"][LABEL_KIND] = kind
    return meta


def sweep_rules(action):
    """What the sweep may do to Jobs: list them, and delete (or, for set_ttl, patch) them. Pure."""
    return [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", WRITE_VERB[action]]}]


def history_rules(history_name):
    """Its own history ConfigMap, by name: read it and replace it (the install creates it). Pure."""
    return [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [history_name],
             "verbs": ["get", "update"]}]


def rbac_objects(sched, opts):
    """The ServiceAccount and its rights (see the module docstring). Pure."""
    name, ns = opts["policy_name"], sched["namespace"]
    names = object_names(name, ns)
    subject = [{"kind": "ServiceAccount", "name": names["service_account"], "namespace": ns}]

    def binding(kind, meta, role_kind, role_name):
        return {"apiVersion": RBAC, "kind": kind, "metadata": meta, "subjects": subject,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}}

    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(names["service_account"], ns, name)},
        {"apiVersion": RBAC, "kind": "Role", "metadata": _meta(names["history_role"], ns, name),
         "rules": history_rules(names["history"])},
        binding("RoleBinding", _meta(names["history_role"], ns, name), "Role", names["history_role"]),
    ]
    rules = sweep_rules(sched["action"])
    if opts["include_namespaces"]:
        for included in opts["include_namespaces"]:
            objects += [{"apiVersion": RBAC, "kind": "Role", "metadata": _meta(names["jobs_role"], included, name),
                         "rules": copy.deepcopy(rules)},
                        binding("RoleBinding", _meta(names["jobs_role"], included, name), "Role", names["jobs_role"])]
    else:
        objects += [{"apiVersion": RBAC, "kind": "ClusterRole", "metadata": _meta(names["cluster_role"], None, name),
                     "rules": rules},
                    binding("ClusterRoleBinding", _meta(names["cluster_role"], None, name), "ClusterRole",
                            names["cluster_role"])]
    return objects


def runner_files(sched, opts, sources=None):
    """{path as mounted: text}: the runner's code (``shipping.closure`` of sweep_runner) and runner.json."""
    sources = sources if sources is not None else shipping.closure(RUNNER_ENTRY)
    names = object_names(opts["policy_name"], sched["namespace"])
    files = dict(("%s/%s" % (shipping.PACKAGE_DIR, path), source) for path, source in sources.items())
    files[INPUT_KEY] = json.dumps({
        "sweep": opts["policy_name"], "options": opts, "action": sched["action"], "page_size": sched["page_size"],
        "concurrency": sched["concurrency"], "rate": sched.get("rate"), "max_names": sched["max_names"],
        "history": {"namespace": sched["namespace"], "configmap": names["history"], "keep": sched["history_limit"],
                    "labels": dict(labels(opts["policy_name"]), **{LABEL_KIND: KIND_SWEEP_HISTORY})}},
        sort_keys=True, indent=1)
    return files


def code_config_map(sched, opts, files):
    """(the immutable ConfigMap of the runner's code and input, the digest its pod checks it against)."""
    manifest, digest = shipping.manifest(files)
    names = object_names(opts["policy_name"], sched["namespace"], digest)
    data, binary = {shipping.MANIFEST_KEY: manifest}, {}
    for path, content in files.items():
        if isinstance(content, bytes):
            binary[shipping.config_key(path)] = base64.b64encode(content).decode("ascii")
        else:
            data[shipping.config_key(path)] = content
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "immutable": True, "data": data,
                  "metadata": _meta(names["code"], sched["namespace"], opts["policy_name"], KIND_SWEEP_CODE)}
    if binary:
        config_map["binaryData"] = binary
    return config_map, digest


def history_config_map(sched, opts):
    """The history, created empty by the install (the runner may only read and replace it). Its data is the
    runner's: the install never sets any, so applying it again keeps the runs."""
    names = object_names(opts["policy_name"], sched["namespace"])
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(names["history"], sched["namespace"], opts["policy_name"], KIND_SWEEP_HISTORY)}


def cron_job(sched, opts, config_map, paths, digest):
    names = object_names(opts["policy_name"], sched["namespace"])
    items = [{"key": shipping.MANIFEST_KEY, "path": shipping.MANIFEST_KEY}]
    items += [{"key": shipping.config_key(path), "path": path} for path in sorted(paths)]
    container = {
        "name": "sweep", "image": sched["runner_image"],
        "command": shipping.boot_command(digest, CODE_ROOT, "", RUNNER_ENTRY, python_flags=("-u",)),
        "env": [{"name": "NODEOPS_JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
                dict(pods.CODE_TMP_ENV)],
        "volumeMounts": [{"name": "runner", "mountPath": CODE_ROOT, "readOnly": True}, dict(pods.CODE_TMP_MOUNT)],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65532,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    pod_spec = {"serviceAccountName": names["service_account"], "restartPolicy": "Never",
                "terminationGracePeriodSeconds": GRACE_SECONDS, "containers": [container],
                "volumes": [{"name": "runner", "configMap": {"name": config_map["metadata"]["name"], "items": items}},
                            copy.deepcopy(pods.CODE_TMP_VOLUME)]}
    if sched.get("runner_node_selector"):
        pod_spec["nodeSelector"] = dict(sched["runner_node_selector"])
    if sched.get("runner_tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in sched["runner_tolerations"]]
    template_labels = labels(opts["policy_name"])
    spec = {"schedule": sched["schedule"], "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": dict(template_labels)}, "spec": {
                # A failed sweep is not retried: the next one takes what it left.
                "backoffLimit": 0, "activeDeadlineSeconds": sched["deadline_seconds"],
                # The runner's Jobs have an owner (the CronJob) and go with its history limits.
                "template": {"metadata": {"labels": dict(template_labels), "annotations": {RUNNER_DIGEST: digest}},
                             "spec": pod_spec}}}}
    if sched.get("time_zone"):
        spec["timeZone"] = sched["time_zone"]
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": _meta(names["cron_job"], sched["namespace"], opts["policy_name"]), "spec": spec}


def build_objects(sched, opts, sources=None):
    """Every object of one scheduled sweep, in the order they are applied (the CronJob last). ``sched``: the
    schedule's options; ``opts``: the validated dangling_job_ttl options. Pure but for ``sources``."""
    files = runner_files(sched, opts, sources)
    config_map, digest = code_config_map(sched, opts, files)
    return rbac_objects(sched, opts) + [history_config_map(sched, opts), config_map,
                                        cron_job(sched, opts, config_map, files, digest)]


def runner_pod(desired):
    """The CronJob's pod template as a Pod to dry-run (without its ServiceAccount, written later). Pure."""
    cron = [o for o in desired if o["kind"] == "CronJob"][0]
    template = cron["spec"]["jobTemplate"]["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec.pop("serviceAccountName", None)
    return {"apiVersion": "v1", "kind": "Pod", "spec": spec,
            "metadata": {"name": cron["metadata"]["name"] + "-preflight", "namespace": cron["metadata"]["namespace"],
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": dict(template["metadata"]["annotations"])}}


# Every kind a scheduled sweep may have written, where to look, for removal and for stale code.
NAMESPACED = [("batch/v1", "CronJob"), ("v1", "ConfigMap"), (RBAC, "RoleBinding"), (RBAC, "Role"),
              ("v1", "ServiceAccount")]
CLUSTER = [(RBAC, "ClusterRoleBinding"), (RBAC, "ClusterRole")]


def _ours_by_name(names):
    fixed = {names["service_account"], names["cron_job"], names["history"], names["history_role"]}
    return lambda kind, n: n in fixed or (kind == "ConfigMap" and n.startswith(names["code_prefix"]))


def remove(client, policy_name, namespace, check_mode, keep=()):
    """Every object of this scheduled sweep that we created, found by label and by name (a label alone is
    anyone's to set): in its namespace, the Roles of the included namespaces wherever they are, and the
    cluster-scoped RBAC. ``keep``: refs ((kind, namespace, name)) not to delete (what an install keeps).
    Returns the refs of what is, or would be, deleted."""
    names = object_names(policy_name, namespace)
    selector = "%s=%s" % (LABEL_SWEEP, policy_name)
    kept = set(keep)

    def wanted(ns, test):
        return lambda kind, n: test(kind, n) and (kind, ns, n) not in kept

    ours = _ours_by_name(names)
    # The history goes last: while it is there, ``installed`` finds what a removal cut short left.
    deleted = apply.delete_labelled(client, NAMESPACED, selector, namespace, check_mode, name_filter=wanted(
        namespace, lambda kind, n: ours(kind, n) and not (kind == "ConfigMap" and n == names["history"])))
    # The jobs Roles of the included namespaces (any namespace: include_namespaces may have changed).
    for item_ns in _namespaces_with_jobs_roles(client, selector, names["jobs_role"]):
        deleted += apply.delete_labelled(client, [(RBAC, "RoleBinding"), (RBAC, "Role")], selector, item_ns,
                                         check_mode, name_filter=wanted(item_ns, lambda kind, n: n == names["jobs_role"]))
    deleted += apply.delete_labelled(client, CLUSTER, selector, None, check_mode,
                                     name_filter=wanted(None, lambda kind, n: n == names["cluster_role"]))
    deleted += apply.delete_labelled(client, [("v1", "ConfigMap")], selector, namespace, check_mode, name_filter=wanted(
        namespace, lambda kind, n: n == names["history"]))
    return deleted


def installed(client, policy_name, namespace, strict=False):
    """Whether a scheduled sweep of ``policy_name`` is (or was partly) installed in ``namespace``: its CronJob or
    its history is there. Two reads, so that a removal asks for no more rights than it did before scheduled
    sweeps existed where none was ever installed. A 403 counts as none, unless ``strict``: then it is raised
    (a removal that cannot look must not say there was nothing)."""
    names = object_names(policy_name, namespace)
    for path in (apply.path_for(client, "batch/v1", "CronJob", namespace, names["cron_job"]),
                 apply.path_for(client, "v1", "ConfigMap", namespace, names["history"])):
        try:
            if client.get_or_none(path) is not None:
                return True
        except Forbidden:
            if strict:
                raise
            continue
    return False


def _namespaces_with_jobs_roles(client, selector, role_name):
    listing = client.get("/apis/%s/roles" % RBAC, {"labelSelector": selector})
    return sorted(set(i["metadata"]["namespace"] for i in listing.get("items") or []
                      if i["metadata"]["name"] == role_name))


def stale(client, policy_name, namespace, desired, check_mode):
    """What an install leaves behind: the code ConfigMaps of earlier versions that no unfinished Job mounts,
    and the rights the options no longer need (Roles of namespaces no longer included, or the ClusterRole
    when namespaces are now given, and the other way round)."""
    keep = set((o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in desired)
    names = object_names(policy_name, namespace)
    for mounted in mounted_by_active_jobs(client, None, namespace, selector="%s=%s" % (LABEL_SWEEP, policy_name)):
        keep.add(("ConfigMap", namespace, mounted))
    # Never the history or the fixed objects: only code and rights are ever stale.
    for fixed in ("service_account", "cron_job", "history", "history_role"):
        for kind in ("ServiceAccount", "CronJob", "ConfigMap", "Role", "RoleBinding"):
            keep.add((kind, namespace, names[fixed]))
    return remove(client, policy_name, namespace, check_mode, keep=keep)
