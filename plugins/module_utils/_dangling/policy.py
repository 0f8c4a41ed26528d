# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The admission policy that gives new ownerless Jobs a TTL, for each engine (pure builders), which engine to
use (pure), and which objects are ours.

Three engines can add ``spec.ttlSecondsAfterFinished`` at admission: the API server itself (a
MutatingAdmissionPolicy: v1 on Kubernetes 1.36+, v1beta1 on 1.34 and 1.35 where the feature gate and the
runtime config are on), Kyverno's MutatingPolicy, and Kyverno's deprecated ClusterPolicy. Each acts on
CREATE only, on Jobs without ownerReferences and without a TTL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.errors import PolicyEngineUnavailable
from ansible_collections.nodeops.kubernetes.plugins.module_utils._kube.apply import LABEL_MANAGED_BY, MANAGED_BY, created_by_us

# Markers of Jobs that a GitOps tool or Helm owns without an ownerReference.
GITOPS_ANNOTATIONS = ("argocd.argoproj.io/tracking-id", "helm.sh/hook")
GITOPS_LABELS = ("argocd.argoproj.io/instance", "app.kubernetes.io/instance")

# Where each engine's objects live: (apiVersion, kinds, the resource discovery must list).
ENGINES = {
    "native": ("admissionregistration.k8s.io/v1", ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"),
               "mutatingadmissionpolicies"),
    "kyverno": ("policies.kyverno.io/v1", ("MutatingPolicy",), "mutatingpolicies"),
    "kyverno_legacy": ("kyverno.io/v1", ("ClusterPolicy",), "clusterpolicies"),
}
# The native engine's API versions, the first served taken: the same fields exist in both.
NATIVE_API_VERSIONS = ("admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1")
ENGINE_ORDER = ("native", "kyverno", "kyverno_legacy")
ENGINE_CHOICES = ("auto",) + ENGINE_ORDER
# Which policy name an object belongs to: switching engines finds the old objects by it.
LABEL_POLICY = "nodeops.io/dangling-job-ttl"
RULE_NAME = "add-ttl-to-ownerless-jobs"
DESCRIPTION = ("Jobs created without ownerReferences are never garbage collected. This adds "
               "spec.ttlSecondsAfterFinished=%d when it is not set, so the TTL controller deletes them "
               "after they finish. Opt out with the label %s.")


NATIVE_NEEDS = ("the apiserver serves mutatingadmissionpolicies: admissionregistration.k8s.io/v1 (Kubernetes 1.36 "
                "or newer), or admissionregistration.k8s.io/v1beta1 (Kubernetes 1.34 and 1.35 with the "
                "MutatingAdmissionPolicy feature gate and --runtime-config=admissionregistration.k8s.io/v1beta1=true)")


def choose_engine(requested, served):
    """(engine, why) for ``policy_engine``. Pure.

    ``served`` maps each engine to the apiVersion of its API the cluster serves (for native, v1 or v1beta1),
    or to a false value. Raises PolicyEngineUnavailable when the engine asked for (or, with auto, every
    engine) is missing.
    """
    needs = {
        "native": NATIVE_NEEDS,
        "kyverno": "Kyverno's policies.kyverno.io/v1 MutatingPolicy CRD is served (Kyverno 1.15 or newer)",
        "kyverno_legacy": "Kyverno's kyverno.io/v1 ClusterPolicy CRD is served",
    }

    def chosen(engine):
        if engine == "native":
            return "the apiserver serves %s mutatingadmissionpolicies (%s)" % (served[engine], (
                "Kubernetes 1.36 or newer" if served[engine] == NATIVE_API_VERSIONS[0]
                else "beta: Kubernetes 1.34 or 1.35 with the MutatingAdmissionPolicy feature gate on"))
        return needs[engine]
    if requested != "auto":
        if served.get(requested):
            return requested, "asked for; " + chosen(requested)
        raise PolicyEngineUnavailable(
            "policy_engine=%s cannot be used here: it needs %s, and this cluster does not. Use "
            "policy_engine=auto to take what the cluster has, or policy=false to only sweep." % (
                requested, needs[requested]), policy_engine=requested)
    for engine in ENGINE_ORDER:
        if served.get(engine):
            return engine, "auto: " + chosen(engine)
    raise PolicyEngineUnavailable(
        "policy_engine=auto found no way to add the TTL at admission. There are three: native needs "
        "Kubernetes 1.36 or newer (MutatingAdmissionPolicy in admissionregistration.k8s.io/v1), or 1.34 or 1.35 "
        "with the MutatingAdmissionPolicy feature gate and admissionregistration.k8s.io/v1beta1 on; kyverno needs "
        "Kyverno with its policies.kyverno.io/v1 MutatingPolicy CRD; kyverno_legacy needs Kyverno's kyverno.io/v1 "
        "ClusterPolicy CRD. Install one of them; or set sweep_schedule to sweep on a schedule in the cluster, which "
        "needs no engine; or set policy=false to only sweep.", policy_engine="auto")


def _metadata(opts, name=None):
    return {"name": name or opts["policy_name"],
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_POLICY: opts["policy_name"]},
            "annotations": {"nodeops.io/description": DESCRIPTION % (opts["ttl_seconds"], opts["opt_out_label"])}}


def _has_key(field, key):
    # Label and annotation keys hold only [A-Za-z0-9-_./], so a single-quoted CEL literal is safe.
    return "(has(object.metadata.%s) && '%s' in object.metadata.%s)" % (field, key, field)


def match_conditions(opts):
    """The CEL conditions a new Job must meet to gain the TTL, shared by native and Kyverno. Pure."""
    conditions = [
        {"name": "no-owner-references",
         "expression": "!has(object.metadata.ownerReferences) || size(object.metadata.ownerReferences) == 0"},
        {"name": "no-ttl-of-its-own", "expression": "!has(object.spec.ttlSecondsAfterFinished)"},
        {"name": "not-opted-out", "expression": "!" + _has_key("labels", opts["opt_out_label"])},
    ]
    if opts["skip_gitops_managed"]:
        markers = ([_has_key("annotations", a) for a in GITOPS_ANNOTATIONS]
                   + [_has_key("labels", label) for label in GITOPS_LABELS])
        conditions.append({"name": "not-gitops-managed", "expression": "!(%s)" % " || ".join(markers)})
    return conditions


def namespace_selector(opts):
    """include/exclude_namespaces as a selector on the label every namespace carries. Pure."""
    exprs = []
    if opts["include_namespaces"]:
        exprs.append({"key": "kubernetes.io/metadata.name", "operator": "In",
                      "values": list(opts["include_namespaces"])})
    if opts["exclude_namespaces"]:
        exprs.append({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                      "values": list(opts["exclude_namespaces"])})
    return {"matchExpressions": exprs} if exprs else {}


def _cel_mutation(opts):
    return [{"patchType": "JSONPatch", "jsonPatch": {
        "expression": '[JSONPatch{op: "add", path: "/spec/ttlSecondsAfterFinished", value: %d}]' % opts["ttl_seconds"]}}]


JOB_CREATE = {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["jobs"]}


def build_native(opts, api_version=None):
    """A MutatingAdmissionPolicy and its binding in ``api_version`` (v1 unless given; v1beta1 has the same
    fields): the apiserver itself adds the TTL. Pure."""
    api = api_version or NATIVE_API_VERSIONS[0]
    if api not in NATIVE_API_VERSIONS:
        raise ValueError("native policy apiVersion %r: expected one of %s" % (api, ", ".join(NATIVE_API_VERSIONS)))
    policy = {
        "apiVersion": api, "kind": "MutatingAdmissionPolicy", "metadata": _metadata(opts),
        "spec": {
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "Never",
            "matchConstraints": {"resourceRules": [dict(JOB_CREATE)]},
            "matchConditions": match_conditions(opts),
            "mutations": _cel_mutation(opts),
        },
    }
    binding = {
        "apiVersion": api, "kind": "MutatingAdmissionPolicyBinding", "metadata": _metadata(opts),
        "spec": {"policyName": opts["policy_name"], "matchResources": {"namespaceSelector": namespace_selector(opts)}},
    }
    return [policy, binding]


def build_kyverno(opts):
    """Kyverno's MutatingPolicy (policies.kyverno.io/v1), the same CEL as native. Pure."""
    return [{
        "apiVersion": ENGINES["kyverno"][0], "kind": "MutatingPolicy", "metadata": _metadata(opts),
        "spec": {
            "failurePolicy": "Ignore",
            "evaluation": {"admission": {"enabled": True}, "mutateExisting": {"enabled": False}},
            "matchConstraints": {"resourceRules": [dict(JOB_CREATE)], "namespaceSelector": namespace_selector(opts)},
            "matchConditions": match_conditions(opts),
            "mutations": _cel_mutation(opts),
        },
    }]


def build_legacy(opts):
    """Kyverno's deprecated kyverno.io/v1 ClusterPolicy, for Kyverno releases before MutatingPolicy. Pure."""
    match = {"kinds": ["batch/v1/Job"], "operations": ["CREATE"]}
    if opts["include_namespaces"]:
        match["namespaces"] = list(opts["include_namespaces"])
    excludes = [{"resources": {"selector": {"matchExpressions": [
        {"key": opts["opt_out_label"], "operator": "Exists"}]}}}]
    if opts["exclude_namespaces"]:
        excludes.append({"resources": {"namespaces": list(opts["exclude_namespaces"])}})
    if opts["skip_gitops_managed"]:
        for annotation in GITOPS_ANNOTATIONS:
            excludes.append({"resources": {"annotations": {annotation: "?*"}}})
        for label in GITOPS_LABELS:
            excludes.append({"resources": {"selector": {"matchExpressions": [{"key": label, "operator": "Exists"}]}}})
    meta = _metadata(opts)
    meta["annotations"] = {
        "policies.kyverno.io/title": "TTL for ownerless Jobs",
        "policies.kyverno.io/subject": "Job",
        "policies.kyverno.io/description": DESCRIPTION % (opts["ttl_seconds"], opts["opt_out_label"]),
    }
    return [{
        "apiVersion": ENGINES["kyverno_legacy"][0],
        "kind": "ClusterPolicy",
        "metadata": meta,
        "spec": {
            "background": False,
            # Kyverno 1.19 refuses the deprecated spec.failurePolicy; this is its replacement.
            "webhookConfiguration": {"failurePolicy": "Ignore"},
            "rules": [{
                "name": RULE_NAME,
                "match": {"any": [{"resources": match}]},
                "exclude": {"any": excludes},
                "preconditions": {"all": [{
                    "key": "{{ length(request.object.metadata.ownerReferences || `[]`) }}",
                    "operator": "Equals", "value": 0}]},
                "mutate": {"patchStrategicMerge": {"spec": {"+(ttlSecondsAfterFinished)": opts["ttl_seconds"]}}},
            }],
        },
    }]


BUILDERS = {"native": build_native, "kyverno": build_kyverno, "kyverno_legacy": build_legacy}


def build_policy(opts, engine, api_version=None):
    """The objects that add the TTL with ``engine`` (for native, in ``api_version``: v1 unless given). Pure."""
    if engine == "native":
        return build_native(opts, api_version)
    return BUILDERS[engine](opts)


def ours(item, policy_name):
    """Whether a listed object belongs to this policy name (older releases set only managed-by) and was
    created by us: a label alone is anyone's to set (``apply.created_by_us``)."""
    meta = item.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or not created_by_us(item):
        return False
    if LABEL_POLICY in labels:
        return labels[LABEL_POLICY] == policy_name
    return meta.get("name") == policy_name
