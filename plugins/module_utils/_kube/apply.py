# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make objects match their desired state, idempotently, with check mode and diff.

Each object is compared by a *server-side dry-run apply*: the API server
computes what the object would become (defaults, admission, our field
manager's ownership) without storing it. Only a real difference leads to a
real apply; check mode stops at the comparison, so it writes nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import ForeignObject, Invalid, TamperedCode

# Who we are in the cluster: the field manager of our applies, and the managed-by label of our objects.
FIELD_MANAGER = "nodeops.kubernetes"
MANAGED_BY = FIELD_MANAGER
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
# Written only when we create an object: what state=absent may delete, and what we may change.
ANNOTATION_CREATED_BY = "nodeops.io/created-by"

# (apiVersion, kind) -> (plural, namespaced)
KINDS = {
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Namespace"): ("namespaces", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("batch/v1", "CronJob"): ("cronjobs", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("kyverno.io/v1", "ClusterPolicy"): ("clusterpolicies", False),
    ("policies.kyverno.io/v1", "MutatingPolicy"): ("mutatingpolicies", False),
    ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicy"): ("mutatingadmissionpolicies", False),
    ("admissionregistration.k8s.io/v1", "MutatingAdmissionPolicyBinding"): ("mutatingadmissionpolicybindings", False),
    ("admissionregistration.k8s.io/v1beta1", "MutatingAdmissionPolicy"): ("mutatingadmissionpolicies", False),
    ("admissionregistration.k8s.io/v1beta1", "MutatingAdmissionPolicyBinding"):
        ("mutatingadmissionpolicybindings", False),
}
VOLATILE_META = ("resourceVersion", "managedFields", "generation", "creationTimestamp", "uid", "selfLink")


def path_for(client, api_version, kind, namespace=None, name=None):
    plural, namespaced = KINDS[(api_version, kind)]
    ns = namespace if namespaced else None
    if api_version == "v1":
        return client.core_path(plural, ns, name)
    return client.group_path(api_version, plural, ns, name)


def object_path(client, obj):
    meta = obj["metadata"]
    return path_for(client, obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])


def normalize(obj):
    """The parts of an object that describe what we asked for: no status, no bookkeeping."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in VOLATILE_META:
        meta.pop(key, None)
    return out


def ref(obj):
    meta = obj["metadata"]
    return {"kind": obj["kind"], "name": meta["name"], "namespace": meta.get("namespace")}


def created_by_us(obj):
    """Whether this collection created ``obj``: our created-by annotation, which we write only on create.
    Objects written before that annotation existed carry our field manager (every request of ours,
    applies and creates alike, is made as ``nodeops.kubernetes``) and our managed-by label. Pure."""
    meta = (obj or {}).get("metadata") or {}
    if (meta.get("annotations") or {}).get(ANNOTATION_CREATED_BY) == MANAGED_BY:
        return True
    # Status is written by controllers and the kubelet; anyone else who wrote the object's own fields means
    # it was someone's before an earlier version of ours took it over (it applied with force), so not ours.
    writers = set(entry.get("manager") for entry in meta.get("managedFields") or [] if not entry.get("subresource"))
    return (meta.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY and writers == {FIELD_MANAGER}


def foreign(obj):
    meta = obj["metadata"]
    where = "%s/%s" % (meta["namespace"], meta["name"]) if meta.get("namespace") else meta["name"]
    return ForeignObject("%s %s exists and was not created by %s: refusing to change it. Remove it, or choose "
                         "another name" % (obj["kind"], where, MANAGED_BY), object=ref(obj))


def with_created_by(obj):
    """``obj`` carrying our created-by annotation (kept by every later apply: the field stays ours)."""
    out = copy.deepcopy(obj)
    out["metadata"].setdefault("annotations", {})[ANNOTATION_CREATED_BY] = MANAGED_BY
    return out


def ensure(client, desired, check_mode):
    """Apply each desired object if it differs. Returns (changed refs, diff before/after, resulting objects).

    Every object goes through the server-side dry run before the first one is written, so an
    object the apiserver refuses (a schedule it cannot parse) leaves nothing half-installed. An object
    of the same name that we did not create stops it, before any write: we never take over what is not ours.
    """
    planned = []
    for obj in desired:
        path = object_path(client, obj)
        current = client.get_or_none(path)
        if current is not None and not created_by_us(current):
            raise foreign(obj)
        obj = with_created_by(obj)
        try:
            would = client.apply(path, obj, FIELD_MANAGER, dry_run=True)
        except Invalid as exc:
            if current is not None and current.get("immutable") and "immutable" in exc.msg:
                # Our immutable objects are named after their content: another content under that name
                # was put there by someone else.
                raise TamperedCode("%s %s is immutable and does not hold what its name says: someone made it "
                                   "again with other content. Nothing was changed; delete it to install again"
                                   % (obj["kind"], object_path(client, obj).rsplit("/", 1)[-1])) from exc
            raise
        planned.append((obj, path, current, would))
    changed, before, after, results = [], [], [], []
    for obj, path, current, would in planned:
        if current is not None and normalize(would) == normalize(current):
            results.append(current)
            continue
        changed.append(ref(obj))
        before.append(normalize(current))
        after.append(normalize(would))
        results.append(would if check_mode else client.apply(path, obj, FIELD_MANAGER))
    return changed, {"before": before, "after": after}, results


def delete_labelled(client, kinds, selector, namespace, check_mode, name_filter=None):
    """Delete every object of ``kinds`` matching ``selector`` that we created (``created_by_us``: a label
    alone is not enough, anyone can set one); return refs of what is (or would be) deleted."""
    deleted = []
    for api_version, kind in kinds:
        plural, namespaced = KINDS[(api_version, kind)]
        listing = client.get(path_for(client, api_version, kind, namespace if namespaced else None),
                             {"labelSelector": selector})
        for item in listing.get("items") or []:
            if name_filter and not name_filter(kind, item["metadata"]["name"]):
                continue
            if not created_by_us(item):
                continue
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            deleted.append(ref(item))
            if not check_mode:
                client.delete(object_path(client, item))
    return deleted
