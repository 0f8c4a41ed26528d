# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cron_broadcast's steps around ``apply.ensure``: the pods' dry run before any write, what a new install
leaves behind, and state=absent. Explicit arguments, no ``module.params``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast import pressure
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.engine import Engine, new_run_id
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.events import NODE_EVENTS_NAMESPACE
from ansible_collections.nodeops.kubernetes.plugins.module_utils._broadcast.naming import LABEL_CRON
from ansible_collections.nodeops.kubernetes.plugins.module_utils._cron import manifests
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ApiError, InvalidInput
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube import apply

# The node a node pod is built for in the install's dry run (any name does: it is not scheduled).
PREFLIGHT_NODE = "nodeops-preflight"


def preflight(client, desired, opts):
    """Dry-run a node pod and the runner pod, before any write and in check mode too. Returns the API
    server's warnings about them.

    Pod Security enforces a namespace's level on Pods only: it takes a CronJob whose pods it would
    refuse, which then fails at its first run, at night. So the pods themselves are asked now. A
    missing namespace fails here (NamespaceMissing), in check mode too: every object's dry run
    needs it, so this only says it first and plainly.
    """
    engine = Engine(client)
    # Any node name does: a dry-run pod is not scheduled. A fresh run id, as a run would have.
    run_id = new_run_id()
    engine.preflight(opts, run_id, PREFLIGHT_NODE)
    warnings = list(engine.preflight_warnings)
    if pressure.priority_class(opts, True) != pressure.priority_class(opts, False):
        # The critical pod a node under DiskPressure gets, which a ResourceQuota may refuse on its own. No node need
        # be under DiskPressure now: a warning, and a run that finds one under it then fails before its first write.
        try:
            engine.preflight(opts, run_id, PREFLIGHT_NODE, pressured=True)
            warnings.extend(engine.preflight_warnings)
        except (InvalidInput, ApiError) as exc:   # a ResourceQuota, a policy engine's rule, ...
            warnings.append("a run that finds a node under DiskPressure will fail before its first write, as the "
                            "API server refuses the critical pod it would get there (%s); disk_pressure: false skips "
                            "such nodes instead" % exc.msg)
    # The runner's pod is the collection's own (it fits restricted): what a user changes in it, and what
    # an image policy's webhook refuses, is its image.
    runner = manifests.runner_pod(desired)
    return list(dict.fromkeys(warnings)) + engine.dry_run_pod(
        runner, "runner_image", runner["spec"]["containers"][0]["image"], "the runner pods of this cron broadcast")


NAMESPACED = [("batch/v1", "CronJob"), ("v1", "ConfigMap"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
              ("rbac.authorization.k8s.io/v1", "Role"), ("v1", "ServiceAccount")]
CLUSTER = [("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ("rbac.authorization.k8s.io/v1", "ClusterRole")]
# The Role that lets the runner post events about Nodes, which live in the default namespace.
NODE_EVENTS = [("rbac.authorization.k8s.io/v1", "RoleBinding"), ("rbac.authorization.k8s.io/v1", "Role")]


def legacy_names(name, namespace):
    """The cluster-scoped (and default-namespace) names before they carried a hash: an earlier version's."""
    return {"nodeops-%s-%s-nodes" % (namespace, name), "nodeops-%s-%s-node-events" % (namespace, name)}


def _ours_by_name(names):
    """Which of a cron broadcast's labelled objects are its own by name: a label is anyone's to set, and
    ``delete_labelled`` also wants them created by us."""
    fixed = {names["service_account"], names["role"], names["role_binding"], names["cron_job"], names["history"]}
    return lambda kind, n: n in fixed or (kind == "ConfigMap" and n.startswith(names["config_map_prefix"]))


def remove(client, name, namespace, check_mode):
    """state=absent: every object of this cron broadcast that we created, by name, and its runs' leftovers."""
    names = manifests.object_names(name, namespace)
    selector = "%s=%s" % (LABEL_CRON, name)
    legacy = legacy_names(name, namespace)
    deleted = apply.delete_labelled(client, NAMESPACED, selector, namespace, check_mode,
                                    name_filter=_ours_by_name(names))
    deleted += apply.delete_labelled(client, CLUSTER, selector, None, check_mode,
                                     name_filter=lambda kind, n: n == names["cluster_role"] or n in legacy)
    if namespace != NODE_EVENTS_NAMESPACE:
        deleted += apply.delete_labelled(client, NODE_EVENTS, selector, NODE_EVENTS_NAMESPACE, check_mode,
                                         name_filter=lambda kind, n: n == names["node_events_role"] or n in legacy)
    leftovers = Engine(client).delete_runs(name, namespace, check_mode=check_mode)
    deleted += [{"kind": "Pod", "name": p, "namespace": namespace} for p in leftovers["pods"]]
    deleted += [{"kind": "ConfigMap", "name": c, "namespace": namespace} for c in leftovers["records"]]
    return deleted


def mounted_by_active_jobs(client, name, namespace, selector=None):
    """The ConfigMaps that this cron broadcast's unfinished Jobs mount (or those ``selector`` picks, e.g. a
    scheduled sweep's): a Job made just before an update may not have started its pod yet, and must still
    find its runner's code."""
    jobs = client.get(apply.path_for(client, "batch/v1", "Job", namespace), {"labelSelector": selector or "%s=%s" % (
        LABEL_CRON, name)}).get("items") or []
    mounted = set()
    for job in jobs:
        conditions = (job.get("status") or {}).get("conditions") or []
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
            continue
        for volume in job["spec"]["template"]["spec"].get("volumes") or []:
            if volume.get("configMap"):
                mounted.add(volume["configMap"]["name"])
    return mounted


def stale_objects(client, name, namespace, desired, check_mode):
    """What an install leaves behind, deleted once the CronJob points at the new code: the runner code
    ConfigMaps of earlier versions (content-addressed: a change of code or options is a new one) that no
    unfinished Job mounts, and the cluster-scoped RBAC under the names an earlier version used (else its
    rights, e.g. keep_images_in_cluster's, would outlive the options). Returns their refs."""
    names = manifests.object_names(name, namespace)
    keep = set(o["metadata"]["name"] for o in desired if o["kind"] == "ConfigMap")
    keep |= mounted_by_active_jobs(client, name, namespace)
    old_single = names["config_map_prefix"].rstrip("-")   # one mutable ConfigMap, before code was content-addressed
    selector = "%s=%s" % (LABEL_CRON, name)
    stale = apply.delete_labelled(client, [("v1", "ConfigMap")], selector, namespace, check_mode,
                                  name_filter=lambda kind, n: n not in keep and (
                                      n.startswith(names["config_map_prefix"]) or n == old_single))
    legacy = legacy_names(name, namespace)
    stale += apply.delete_labelled(client, CLUSTER, selector, None, check_mode, name_filter=lambda kind, n: n in legacy)
    if namespace != NODE_EVENTS_NAMESPACE:
        stale += apply.delete_labelled(client, NODE_EVENTS, selector, NODE_EVENTS_NAMESPACE, check_mode,
                                       name_filter=lambda kind, n: n in legacy)
    return stale
