# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ownerless Jobs: the TTL policy for each admission engine (pure builders), which Jobs a sweep takes (pure),
and the sweep.

The policy adds ``spec.ttlSecondsAfterFinished`` at admission to new Jobs
without ownerReferences, unless the field is set. Three engines can do it: the
apiserver itself (a MutatingAdmissionPolicy, Kubernetes 1.36+), Kyverno's
MutatingPolicy, and Kyverno's deprecated ClusterPolicy. The sweep handles the Jobs
that already exist: it lists them a page at a time, so memory does not grow
with their number, and writes with bounded concurrency.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.nodeops.kubernetes.plugins.module_utils.errors import (
    ApiError,
    InvalidInput,
    NotFound,
    PolicyEngineUnavailable,
    WatchExpired,
)
from ansible_collections.nodeops.kubernetes.plugins.module_utils.plan import LABEL_MANAGED_BY, MANAGED_BY

DEFAULT_POLICY_NAME = "nodeops-dangling-job-ttl"
DEFAULT_EXCLUDED_NAMESPACES = ["kube-system", "kyverno"]
DEFAULT_OPT_OUT_LABEL = "nodeops.io/keep-job"
# Markers of Jobs that a GitOps tool or Helm owns without an ownerReference.
GITOPS_ANNOTATIONS = ("argocd.argoproj.io/tracking-id", "helm.sh/hook")
GITOPS_LABELS = ("argocd.argoproj.io/instance", "app.kubernetes.io/instance")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def validate(params):
    """Check the options; return them as a plain dict. Raises InvalidInput before any request."""
    ttl = params.get("ttl_seconds")
    if ttl is None or ttl < 0:
        raise InvalidInput("ttl_seconds", ttl, "a number of seconds of at least 0")
    for key in ("include_namespaces", "exclude_namespaces"):
        for ns in params.get(key) or []:
            if not isinstance(ns, str) or len(ns) > 63 or not NAMESPACE.match(ns):
                raise InvalidInput(key, ns, "namespace names (DNS-1123 labels: lowercase letters, digits, '-')")
    label = params.get("opt_out_label")
    if not label or not LABEL_KEY.match(label):
        raise InvalidInput("opt_out_label", label, "a label key such as 'nodeops.io/keep-job'")
    name = params.get("policy_name") or DEFAULT_POLICY_NAME
    if len(name) > 63 or not NAMESPACE.match(name):
        raise InvalidInput("policy_name", name, "a DNS-1123 label of at most 63 characters (it is also a label value)")
    engine = params.get("policy_engine") or "auto"
    if engine not in ENGINE_CHOICES:
        raise InvalidInput("policy_engine", engine, "one of " + ", ".join(ENGINE_CHOICES))
    for key, low in (("sweep_page_size", 1), ("sweep_concurrency", 1), ("sweep_max_names", 0)):
        if params.get(key) is not None and params[key] < low:
            raise InvalidInput(key, params[key], "a number of at least %d" % low)
    return {
        "ttl_seconds": ttl,
        "include_namespaces": sorted(set(params.get("include_namespaces") or [])),
        "exclude_namespaces": sorted(set(params.get("exclude_namespaces") or [])),
        "opt_out_label": label,
        "skip_gitops_managed": params.get("skip_gitops_managed", True) is not False,
        "policy_name": name,
        "policy_engine": engine,
    }


# Where each engine's objects live: (apiVersion, kinds, the resource discovery must list).
ENGINES = {
    "native": ("admissionregistration.k8s.io/v1", ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"),
               "mutatingadmissionpolicies"),
    "kyverno": ("policies.kyverno.io/v1", ("MutatingPolicy",), "mutatingpolicies"),
    "kyverno_legacy": ("kyverno.io/v1", ("ClusterPolicy",), "clusterpolicies"),
}
ENGINE_ORDER = ("native", "kyverno", "kyverno_legacy")
ENGINE_CHOICES = ("auto",) + ENGINE_ORDER
# Which policy name an object belongs to: switching engines finds the old objects by it.
LABEL_POLICY = "nodeops.io/dangling-job-ttl"
RULE_NAME = "add-ttl-to-ownerless-jobs"
DESCRIPTION = ("Jobs created without ownerReferences are never garbage collected. This adds "
               "spec.ttlSecondsAfterFinished=%d when it is not set, so the TTL controller deletes them "
               "after they finish. Opt out with the label %s.")


def choose_engine(requested, served):
    """(engine, why) for ``policy_engine``. ``served`` maps each engine to whether its API is served. Pure.

    Raises PolicyEngineUnavailable when the engine asked for (or, with auto, every engine) is missing.
    """
    needs = {
        "native": "the apiserver serves admissionregistration.k8s.io/v1 mutatingadmissionpolicies "
                  "(Kubernetes 1.36 or newer)",
        "kyverno": "Kyverno's policies.kyverno.io/v1 MutatingPolicy CRD is served (Kyverno 1.15 or newer)",
        "kyverno_legacy": "Kyverno's kyverno.io/v1 ClusterPolicy CRD is served",
    }
    if requested != "auto":
        if served.get(requested):
            return requested, "asked for; " + needs[requested]
        raise PolicyEngineUnavailable(
            "policy_engine=%s cannot be used here: it needs %s, and this cluster does not. Use "
            "policy_engine=auto to take what the cluster has, or policy=false to only sweep." % (
                requested, needs[requested]), policy_engine=requested)
    for engine in ENGINE_ORDER:
        if served.get(engine):
            return engine, "auto: " + needs[engine]
    raise PolicyEngineUnavailable(
        "policy_engine=auto found no way to add the TTL at admission. There are three: native needs "
        "Kubernetes 1.36 or newer (MutatingAdmissionPolicy in admissionregistration.k8s.io/v1); kyverno needs "
        "Kyverno with its policies.kyverno.io/v1 MutatingPolicy CRD; kyverno_legacy needs Kyverno's kyverno.io/v1 "
        "ClusterPolicy CRD. Install one of them, or set policy=false to only sweep.", policy_engine="auto")


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


def build_native(opts):
    """A MutatingAdmissionPolicy and its binding: the apiserver itself adds the TTL. Pure."""
    api = ENGINES["native"][0]
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


def build_policy(opts, engine):
    """The objects that add the TTL with ``engine``. Pure."""
    return BUILDERS[engine](opts)


def ours(item, policy_name):
    """Whether a listed object belongs to this policy name (older releases set only managed-by)."""
    meta = item.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        return False
    if LABEL_POLICY in labels:
        return labels[LABEL_POLICY] == policy_name
    return meta.get("name") == policy_name


def _parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def finished_at(job):
    """When the Job reached Complete or Failed, or None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            stamp = cond.get("lastTransitionTime") or (job.get("status") or {}).get("completionTime")
            return _parse_time(stamp) if stamp else None
    return None


def sweep_verdict(job, now, opts):
    """Why a Job is spared, or None if the sweep takes it. Pure."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    ns = meta.get("namespace")
    if meta.get("ownerReferences"):
        return "owned"
    if meta.get("deletionTimestamp"):
        return "being deleted"
    if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
        return "has a TTL"   # not dangling: the TTL controller will remove it
    if opts["include_namespaces"] and ns not in opts["include_namespaces"]:
        return "namespace not included"
    if ns in opts["exclude_namespaces"]:
        return "namespace excluded"
    if opts["opt_out_label"] in labels:
        return "opted out"
    if opts["skip_gitops_managed"] and (any(a in annotations for a in GITOPS_ANNOTATIONS)
                                        or any(label in labels for label in GITOPS_LABELS)):
        return "gitops-managed"
    done = finished_at(job)
    if done is None:
        return "not finished"
    if (now - done).total_seconds() <= opts["ttl_seconds"]:
        return "finished recently"
    return None


class Sweep:
    """One sweep over the cluster's Jobs. Counters are kept, Jobs are not: memory stays flat."""

    def __init__(self, client, opts, action, check_mode, page_size=500, concurrency=10, max_names=100, now=None):
        self.client = client
        self.opts = opts
        self.action = action
        self.check_mode = check_mode
        self.page_size = page_size
        self.concurrency = concurrency
        self.max_names = max_names
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        self.counts, self.spared, self.names, self.errors = {}, {}, [], []
        self.stats = {"pages": 0, "restarts": 0, "examined": 0}
        self._lock = threading.Lock()
        self._pending = []

    def run(self):
        # With include_namespaces only those namespaces are listed (less to read, less RBAC needed).
        paths = ([self.client.group_path("batch/v1", "jobs", ns) for ns in self.opts["include_namespaces"]]
                 or ["/apis/batch/v1/jobs"])
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            for path in paths:
                self._list(path)
            self._drain()
        finally:
            self._pool.shutdown(wait=True)
        total = sum(self.counts.values())
        return {"action": self.action, "total": total, "per_namespace": self.counts, "names": self.names,
                "names_truncated": total > len(self.names), "spared": self.spared, "errors": self.errors,
                "stats": self.stats}

    def _list(self, path):
        query = {"limit": self.page_size}
        while True:
            try:
                page = self.client.get(path, query, timeout=60)
            except WatchExpired:
                # The continue token expired (410): finish the writes in flight, then list again. The
                # Jobs already handled are gone (or carry a TTL) and are not taken twice.
                self._drain()
                self.stats["restarts"] += 1
                query = {"limit": self.page_size}
                continue
            self.stats["pages"] += 1
            for job in page.get("items") or []:
                self._consider(job)
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return
            query = {"limit": self.page_size, "continue": cont}

    def _consider(self, job):
        self.stats["examined"] += 1
        why = sweep_verdict(job, self.now, self.opts)
        if why:
            self.spared[why] = self.spared.get(why, 0) + 1
            return
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        self.counts[ns] = self.counts.get(ns, 0) + 1
        if len(self.names) < self.max_names:
            self.names.append("%s/%s" % (ns, name))
        if self.check_mode:
            return
        self._pending.append(self._pool.submit(self._write, ns, name))
        if len(self._pending) >= self.concurrency * 4:
            self._drain()   # bounded: a few pages of work in flight at most

    def _drain(self):
        for future in self._pending:
            future.result()
        self._pending = []

    def _write(self, ns, name):
        path = self.client.group_path("batch/v1", "jobs", ns, name)
        try:
            if self.action == "delete":
                self.client.delete(path, propagation="Background")
            else:
                self.client.merge_patch(path, {"spec": {"ttlSecondsAfterFinished": self.opts["ttl_seconds"]}})
        except NotFound:
            pass   # gone already: nothing to sweep
        except ApiError as exc:
            with self._lock:
                self.errors.append("%s/%s: %s" % (ns, name, exc.msg))


def sweep(client, opts, action, check_mode, **options):
    """Delete (or set the TTL of) finished ownerless Jobs. Returns counts per namespace and a capped name list."""
    return Sweep(client, opts, action, check_mode, **options).run()
