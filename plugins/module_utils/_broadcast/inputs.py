# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the engine gathers from the cluster for a preset's node side, at the start of a run.

``cluster_images``: every image a Pod, Deployment, DaemonSet, StatefulSet, ReplicaSet, Job or CronJob
refers to, cluster-wide, listed a page at a time and slimmed to the image names as each page comes
(so a large cluster is never held whole). image_prune keeps them with ``keep_images_in_cluster``, even
when nothing runs them now (a Deployment scaled to zero, a suspended CronJob).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import Forbidden
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.watch import list_all

# (path, where the pod spec is) of every kind whose pods' images count.
SOURCES = (
    ("/api/v1/pods", ()),
    ("/apis/apps/v1/deployments", ("spec", "template")),
    ("/apis/apps/v1/daemonsets", ("spec", "template")),
    ("/apis/apps/v1/statefulsets", ("spec", "template")),
    ("/apis/apps/v1/replicasets", ("spec", "template")),
    ("/apis/batch/v1/jobs", ("spec", "template")),
    ("/apis/batch/v1/cronjobs", ("spec", "jobTemplate", "spec", "template")),
)
# The read-only rights listing them needs (the cron runner gets these only when a preset asks).
RBAC_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets", "replicasets"],
     "verbs": ["list"]},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["list"]},
]


def images_of(obj, where):
    """The images an object's pod spec names (containers, init and ephemeral containers). Pure."""
    template = obj
    for key in where:
        template = (template or {}).get(key) or {}
    spec = (template or {}).get("spec") or {}
    return sorted(set(c.get("image") for kind in ("containers", "initContainers", "ephemeralContainers")
                      for c in spec.get(kind) or [] if c.get("image")))


def missing_rights_message(path, refusal):
    """What a refused list means for the user: the option that needs it, the rights, the way out. Pure."""
    kinds = ", ".join(path.rsplit("/", 1)[-1] for path, _where in SOURCES)
    return ("image_prune.keep_images_in_cluster=true needs the read-only right to list %s in every namespace, "
            "and the API server refused to list %s: %s. Grant those rights (cron_broadcast gives them to its runner "
            "by itself), or set keep_images_in_cluster=false" % (kinds, path.rsplit("/", 1)[-1], refusal))


def cluster_images(client):
    """Every image the cluster's workloads refer to, sorted and without repeats. The engine calls it before
    the run's first write, so a missing right stops the run with nothing written (``Forbidden``, saying why)."""
    found = set()
    for path, where in SOURCES:
        try:
            pages = list_all(client, path, slim=lambda obj, where=where: images_of(obj, where))[0]
        except Forbidden as exc:
            raise Forbidden(missing_rights_message(path, exc.msg), status=exc.status, reason=exc.reason)
        for images in pages:
            found.update(images)
    return sorted(found)
